"""The ISBI 2012 challenge's measures, as Fiji's trainableSegmentation.metrics computes them."""

# --- the challenge's measures (as Fiji's trainableSegmentation.metrics computes them) ---

import math

import numpy as np
import pytest

from biounet.evaluation.challenge import (
    SPLIT_MERGE,
    THRESHOLDS,
    challenge_scores,
    challenge_thresholds,
    split_merge,
    thinned_segmentation,
    truth_segmentation,
    v_info_score,
    v_rand_score,
)


def _two_cells():
    """A 10x21 mask: two 10x10 cells (class 1) split by a one-pixel membrane (class 0) at column 10."""
    mask = np.ones((10, 21), np.int64)
    mask[:, 10] = 0
    return mask


def test_thresholds_are_the_java_loop_with_its_floating_point_end():
    assert len(THRESHOLDS) == 11
    assert THRESHOLDS[3] == 0.30000000000000004 and THRESHOLDS[-1] == 0.9999999999999999
    assert challenge_thresholds(0.0, 1.0, 0.1) == THRESHOLDS


def test_perfect_segmentation_scores_one():
    mask = _two_cells()
    s = challenge_scores([mask.astype(np.float32)], [mask])
    assert s["v_rand"] == pytest.approx(1.0) and s["v_info"] == pytest.approx(1.0)
    assert s["pixel_error"] == pytest.approx(0.0)
    # a cell probability of exactly 1.0 is still cell at the last threshold, 0.9999999999999999
    assert s["v_rand_per_threshold"][-1] == pytest.approx(1.0)


def test_a_merge_hand_computed():
    mask = _two_cells()
    merged = np.ones_like(mask, dtype=np.float32)  # the membrane between the cells is missing
    s = challenge_scores([merged], [mask], thresholds=(0.5,))
    # n = 200, a = (1/2, 1/2), b = (1): sumA2 = 1/2, sumB2 = sumAB2 = 1/2 ... tp = n^2/2,
    # fp = n^2 (1 - 1/2), fn = 0: P = 1/2, R = 1, F = 2/3
    assert s["v_rand"] == pytest.approx(2 / 3)
    # H(B) = 0: the Java sets precision 1, recall 0
    assert s["v_info"] == 0.0
    # 10 membrane pixels of 210 called cell: F = 2 * 200 / (2 * 200 + 10)
    assert s["pixel_error"] == pytest.approx(1 - 400 / 410)


def test_a_split_with_boundary_singletons_hand_computed():
    mask = _two_cells()
    prob = mask.astype(np.float32)
    prob[5, :10] = 0.0  # a one-pixel line splits the left cell into 50 + 40 pixels
    truth = truth_segmentation(mask == 1)
    seg = thinned_segmentation(prob > 0.5)
    assert (seg[5, :10] == 0).all()  # the line's pixels stay boundary: 10 singletons
    n, singles = 200, 10
    b = np.array([50, 40, 100]) / n
    sum_b2 = (b**2).sum() + (singles / n) / n  # = sumAB2: every proposal segment lies in one cell
    sum_a2 = 2 * (100 / n) ** 2
    assert v_rand_score(truth, seg) == pytest.approx(2 * sum_b2 / (sum_a2 + sum_b2), rel=1e-12)
    h_a = math.log(2)
    h_b = -(b * np.log(b)).sum() + (singles / n) * math.log(n)
    recall = h_a / h_b  # precision 1: H(A|B) = 0
    assert v_info_score(truth, seg) == pytest.approx(2 * recall / (1 + recall), rel=1e-12)


def test_split_and_merge_parts_name_the_kind_of_error():
    mask = _two_cells()
    truth = truth_segmentation(mask == 1)
    merged = split_merge(truth, thinned_segmentation(np.ones_like(mask, bool)))
    # a merge: nothing is split (both split parts 1), the merge parts carry the error
    assert merged["v_rand_split"] == pytest.approx(1.0) and merged["v_rand_merge"] == pytest.approx(0.5)
    # a proposal of one segment splits nothing: its V_info (0 by the challenge's special case) is all merge
    assert merged["v_info_split"] == 1.0 and merged["v_info_merge"] == pytest.approx(0.0)
    prob = mask.astype(np.float32)
    prob[5, :10] = 0.0
    seg = thinned_segmentation(prob > 0.5)
    split = split_merge(truth, seg)
    assert split["v_rand_merge"] == pytest.approx(1.0) and split["v_info_merge"] == pytest.approx(1.0)
    assert split["v_rand_split"] < 1 and split["v_info_split"] < 1
    # V_rand and V_info are the harmonic means of their parts
    for name, score in (("v_rand", v_rand_score(truth, seg)), ("v_info", v_info_score(truth, seg))):
        s_, m_ = split[f"{name}_split"], split[f"{name}_merge"]
        assert score == pytest.approx(2 * s_ * m_ / (s_ + m_), rel=1e-12)
    assert set(split) == set(SPLIT_MERGE)
    # challenge_scores gives the same parts per slice, at V_rand's threshold
    stack = challenge_scores([prob], [mask], thresholds=(0.5,), parts=True)
    assert all(stack[f"{k}_per_image"] == [pytest.approx(v)] for k, v in split.items())
    assert all(np.isnan(v) for v in split_merge(np.zeros((3, 3), int), np.ones((3, 3), int)).values())


def test_each_remaining_boundary_pixel_is_its_own_segment():
    truth = np.ones((1, 5), np.int64)  # one true cell of 5 pixels
    seg = thinned_segmentation(np.array([[1, 0, 1, 0, 1]], bool))
    assert seg.tolist()[0][1] == 0 and seg.tolist()[0][3] == 0 and len(set(seg[0, ::2])) == 3
    # b = (1/5, 1/5, 1/5) and two singletons: sumB2 = sumAB2 = 3/25 + 2/25, sumA2 = 1 -> F = 1/3
    # (the two boundary pixels as one segment would give 2 (7/25) / (32/25) = 0.4375)
    assert v_rand_score(truth, seg) == pytest.approx(1 / 3)
    # one true segment: H(A) = 0, so the Java's V_info is 0 whatever the proposal
    assert v_info_score(truth, seg) == 0.0


def test_ground_truth_membrane_is_left_out_not_thinned():
    mask = np.array([[1, 1, 0, 1, 1]])
    truth = truth_segmentation(mask == 1)
    assert truth.tolist() == [[1, 1, 0, 2, 2]]
    # proposal: one segment over everything; the membrane pixel is not counted (n = 4):
    # a = (1/2, 1/2), b = (1) -> 2/3 (with the pixel counted it would be 18/34)
    assert v_rand_score(truth, np.ones((1, 5), np.int64)) == pytest.approx(2 / 3)
    # a thick true membrane (columns 4-6) and a proposal whose one-pixel membrane lies on its
    # edge (column 4): every true cell pixel is in one proposal segment -> perfect
    mask = np.ones((6, 11), np.int64)
    mask[:, 4:7] = 0
    prob = np.ones((6, 11), np.float32)
    prob[:, 4] = 0.0
    s = challenge_scores([prob], [mask], thresholds=(0.5,))
    assert s["v_rand"] == pytest.approx(1.0) and s["v_info"] == pytest.approx(1.0)


def test_thinning_follows_the_java_flooding_order():
    # odd width: the dam is the middle column
    cells = np.ones((6, 11), bool)
    cells[:, 4:7] = False
    seg = thinned_segmentation(cells)
    assert (seg[:, 5] == 0).all() and (seg[:, 4] == seg[0, 0]).all() and (seg[:, 6] == seg[0, 10]).all()
    # even width: the dam is the pixel taken later from the queue (right column, lower row)
    cells = np.ones((6, 10), bool)
    cells[:, 4:6] = False
    seg = thinned_segmentation(cells)
    assert (seg[:, 5] == 0).all() and (seg[:, 4] == seg[0, 0]).all()
    seg = thinned_segmentation(cells.T.copy())
    assert (seg[5] == 0).all() and (seg[4] == seg[0, 0]).all()
    # a lone boundary pixel inside a cell is flooded by that cell: no singleton
    cells = np.ones((5, 5), bool)
    cells[2, 2] = False
    assert (thinned_segmentation(cells) == 1).all()
    # boundary touching no cell becomes a segment of its own (a new minimum)
    assert (thinned_segmentation(np.zeros((3, 4), bool)) == 1).all()


def test_scores_per_threshold_of_a_small_stack():
    mask = _two_cells()
    a = mask.astype(np.float32)
    a[:, 10] = np.float32(0.3)  # cell above 0.30000000000000004 in double precision
    b = np.where(mask == 1, 0.75, 0.65).astype(np.float32)
    s = challenge_scores([a, b], [mask, mask])
    merge, ok = 2 / 3, 1.0
    # slice a: merged while the threshold is below 0.3f (also at 0.30000000000000004), then right
    # slice b: merged below 0.65, right at 0.7, all boundary (one segment) from 0.8
    per_a = [merge] * 4 + [ok] * 7
    per_b = [merge] * 7 + [ok] + [merge] * 3
    expected = [(x + y) / 2 for x, y in zip(per_a, per_b)]
    assert s["v_rand_per_threshold"] == pytest.approx(expected)
    assert s["v_rand"] == pytest.approx(1.0) and s["v_rand_threshold"] == 0.7
    assert s["v_rand_per_image"] == pytest.approx([1.0, 1.0])
    info_a = [0.0] * 4 + [1.0] * 7
    info_b = [0.0] * 7 + [1.0] + [0.0] * 3
    assert s["v_info_per_threshold"] == pytest.approx([(x + y) / 2 for x, y in zip(info_a, info_b)])
    # a stack threshold, not the best per slice: slice a alone is best from 0.4 on
    alone = challenge_scores([a], [mask])
    assert alone["v_rand_threshold"] == 0.4


def test_the_maximum_keeps_the_first_best_threshold_and_skips_nan():
    from biounet.evaluation.challenge import first_best

    assert first_best([0.5, float("nan"), 0.7, 0.7]) == (0.7, 2)
    assert first_best([float("nan")] * 3) == (0.0, 0)
