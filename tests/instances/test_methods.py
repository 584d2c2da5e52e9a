"""Instance methods on small synthetic maps: the faint gap that thresholding merges is split by the
graph methods, touching objects are separated, and instance maps score as the challenge scores them."""

import numpy as np
import pytest
from scipy import ndimage

from biounet.core.errors import ConfigError, DataError
from biounet.evaluation.challenge import challenge_scores, truth_segmentation
from biounet.instances.methods import METHODS, boundary_map, instance_labels, method_params, object_scores, parse_params

SIDE, WALL = 36, 3
GAP_ROWS = slice(15, 21)  # six rows of the membrane between cells 1 (top left) and 2 (top middle)


def cell_grid(gap: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(cell probability, true cells): 2 x 3 square cells behind 3-pixel membranes, with noise and an
    organelle (cell probability 0.55) in each cell, so that the superpixels over-segment every cell.
    The membrane between cells 1 and 2 fades to ``gap`` over six pixels."""
    rng = np.random.default_rng(seed)
    h, w = 2 * SIDE + 3 * WALL, 3 * SIDE + 4 * WALL
    truth = np.zeros((h, w), np.int64)
    for k in range(6):
        y0, x0 = WALL + (k // 3) * (SIDE + WALL), WALL + (k % 3) * (SIDE + WALL)
        truth[y0 : y0 + SIDE, x0 : x0 + SIDE] = k + 1
    prob = np.clip(np.where(truth > 0, 0.95, 0.05) + rng.normal(0, 0.03, (h, w)), 0, 1)
    yy, xx = np.mgrid[:h, :w]
    for k in range(1, 7):
        ys, xs = np.nonzero(truth == k)
        cy, cx = ys.mean() + rng.integers(-5, 6), xs.mean() + rng.integers(-5, 6)
        prob[(yy - cy) ** 2 + (xx - cx) ** 2 < 25] = 0.55
    prob[GAP_ROWS, WALL + SIDE : 2 * WALL + SIDE] = gap
    return prob, truth


def cell_ids(labels: np.ndarray, truth: np.ndarray) -> list[int]:
    """The label of each true cell, asserting that it covers the whole cell (no split)."""
    out = []
    for k in range(1, truth.max() + 1):
        ids = np.unique(labels[truth == k])
        assert len(ids) == 1, f"true cell {k} is split into {ids}"
        out.append(int(ids[0]))
    return out


def assert_ids(labels: np.ndarray) -> None:
    assert labels.dtype == np.uint32
    ids = np.unique(labels[labels > 0])
    assert ids.tolist() == list(range(1, len(ids) + 1))


def challenge(labels: np.ndarray, truth: np.ndarray) -> dict:
    """The challenge's measures of an instance map: its boundary map scored without a sweep."""
    return challenge_scores([1.0 - boundary_map(labels)], [(truth > 0).astype(np.int64)], thresholds=(0.5,))


@pytest.mark.parametrize("gap", [0.6, 0.95])
def test_graph_methods_split_a_faint_gap_that_thresholding_merges(gap):
    prob, truth = cell_grid(gap)
    thresholded = ndimage.label(prob > 0.5)[0]
    assert thresholded[truth == 1][0] == thresholded[truth == 2][0]  # the gap merges cells 1 and 2
    assert challenge(thresholded, truth)["v_rand"] < 0.9
    for method, params in [
        ("multicut", {}),
        ("multicut", {"solver": "kernighan-lin"}),
        ("multicut", {"weighting": "length"}),
        ("gasp", {}),
        ("gasp", {"linkage": "mutex_watershed"}),
    ]:
        labels = instance_labels(prob, method, **params)
        assert_ids(labels)
        assert len(set(cell_ids(labels, truth))) == 6, (method, params)  # one id per cell, 1 and 2 apart
        scores = challenge(labels, truth)
        assert scores["v_rand"] == pytest.approx(1.0) and scores["v_info"] == pytest.approx(1.0)


def test_todays_watershed_splits_a_dim_gap_but_merges_a_missing_one():
    # its cores (p > 0.9) stay apart across a gap of 0.6; a gap as bright as the cells joins them
    dim = instance_labels(cell_grid(0.6)[0])
    ids = cell_ids(dim, cell_grid(0.6)[1])
    assert ids[0] != ids[1]
    prob, truth = cell_grid(0.95)
    merged = instance_labels(prob, "watershed")
    assert_ids(merged)
    assert cell_ids(merged, truth)[0] == cell_ids(merged, truth)[1]
    assert np.array_equal(instance_labels(prob), merged)  # watershed is the default


def test_a_cell_that_is_one_superpixel_stays_one_cell():
    # one disc with a membrane dot inside: a single superpixel, a graph without edges (length
    # weighting divided by the longest edge of none before the fix)
    yy, xx = np.mgrid[:96, :96]
    prob = np.zeros((96, 96), np.float32)
    prob[(yy - 48) ** 2 + (xx - 48) ** 2 < 40**2] = 1.0
    prob[(yy - 48) ** 2 + (xx - 60) ** 2 < 9] = 0.0
    prob = ndimage.gaussian_filter(prob, 1.0)
    inside = (yy - 48) ** 2 + (xx - 48) ** 2 < 35**2
    for weighting in ("none", "length"):
        labels = instance_labels(prob, "multicut", beta=0.4, weighting=weighting)
        assert len(np.unique(labels[inside & (labels > 0)])) == 1, weighting


def test_boundary_bias_moves_the_cut():
    prob = cell_grid(0.95)[0]
    # higher beta: more cuts. At 0.9 the 4 superpixels of each cell stay apart; at 0.05 cells merge
    for method in ("multicut", "gasp"):
        counts = [int(instance_labels(prob, method, beta=b).max()) for b in (0.05, 0.5, 0.9)]
        assert counts[0] < 6 and counts[1] == 6 and counts[2] > 6, (method, counts)


def touching_discs() -> tuple[np.ndarray, np.ndarray]:
    """(foreground probability, true objects): two discs that touch, a 16-pixel speck, a 9 x 9 square."""
    yy, xx = np.mgrid[:64, :100]
    truth = np.zeros((64, 100), np.int64)
    truth[(yy - 32) ** 2 + (xx - 30) ** 2 < 15**2] = 1
    truth[(yy - 32) ** 2 + (xx - 56) ** 2 < 13**2] = 2
    truth[4:8, 90:94] = 3
    truth[52:61, 80:89] = 4
    rng = np.random.default_rng(0)
    prob = np.clip(np.where(truth > 0, 0.9, 0.1) + rng.normal(0, 0.05, truth.shape), 0, 1)
    return prob, truth


def test_objects_splits_touching_discs_and_drops_specks():
    prob, truth = touching_discs()
    assert ndimage.label(prob > 0.5)[0][truth == 1][0] == ndimage.label(prob > 0.5)[0][truth == 2][0]
    labels = instance_labels(prob, "objects", min_size=50)
    assert_ids(labels)
    assert labels.max() == 3  # two discs and the square; the speck is under 50 pixels
    assert (labels[truth == 3] == 0).all()
    scores = object_scores(labels, truth)
    assert scores["matched"] == 3 and scores["true_objects"] == 4 and scores["f1"] == pytest.approx(6 / 7)
    assert scores["matched_iou"] > 0.85
    assert instance_labels(prob, "objects", min_size=10).max() == 4  # the speck kept
    assert instance_labels(prob, "objects").max() == 2  # default 100: the square (81 pixels) goes too


def test_objects_keeps_an_elongated_object_whole():
    yy, xx = np.mgrid[:64, :100]
    prob = np.where(((yy - 32) / 10.0) ** 2 + ((xx - 50) / 40.0) ** 2 < 1, 0.95, 0.05)
    assert instance_labels(prob, "objects").max() == 1


def test_empty_and_full_maps():
    for method in METHODS:
        empty = instance_labels(np.zeros((20, 30)), method)
        assert empty.dtype == np.uint32 and empty.shape == (20, 30)
        if method != "watershed":
            full = instance_labels(np.ones((20, 30), np.float32), method)
            assert full.min() == 1 and full.max() == 1, method  # one object, no background
    assert instance_labels(np.zeros((20, 30)), "multicut").max() == 0


def test_boundary_map_of_a_perfect_instance_map_scores_one():
    prob, truth = cell_grid(0.95)
    cells = truth_segmentation(truth > 0)  # the challenge's true segments: membranes are 0
    assert np.array_equal(boundary_map(cells), (truth == 0).astype(np.uint8))
    scores = challenge(cells, truth)
    assert scores["v_rand"] == 1.0 and scores["v_info"] == 1.0 and scores["pixel_error"] == 0.0
    merged = cells.copy()  # cells 1 and 2 one instance, their membrane included: the merge costs V_rand
    merged[WALL : WALL + SIDE, WALL : 2 * (WALL + SIDE)] = 1
    assert challenge(merged, truth)["v_rand"] < 0.9


def test_boundary_map_is_one_pixel_between_touching_labels():
    labels = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 3, 0]])
    # the left/upper pixel of each pair of different labels; a label beside background stays cell
    expected = np.array([[0, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 1]], np.uint8)
    assert np.array_equal(boundary_map(labels), expected)
    # no two labels touch across the remaining cell pixels
    assert ndimage.label(boundary_map(labels) == 0, [[0, 1, 0], [1, 1, 1], [0, 1, 0]])[1] == 3


def test_object_scores_hand_made_cases():
    truth = np.zeros((10, 20), np.int64)
    truth[1:5, 1:6], truth[1:5, 8:13], truth[6:9, 14:19] = 1, 2, 3  # 20, 20 and 15 pixels
    perfect = object_scores(truth * 7, truth)  # ids need not match
    assert perfect["f1"] == 1.0 and perfect["matched_iou"] == 1.0 and perfect["foreground_iou"] == 1.0
    missed = object_scores(np.where(truth == 3, 0, truth), truth)
    assert missed["f1"] == pytest.approx(2 * 2 / (3 + 2)) and missed["recall"] == pytest.approx(2 / 3)
    assert missed["precision"] == 1.0 and missed["matched_iou"] == 1.0
    assert missed["foreground_iou"] == pytest.approx(40 / 55)
    split = truth.copy()
    split[1:5, 1:3] = 4  # object 1 split 8 | 12 pixels: the 12-pixel part matches at IoU 0.6
    s = object_scores(split, truth)
    assert s["matched"] == 3 and s["predicted_objects"] == 4 and s["f1"] == pytest.approx(2 * 3 / 7)
    assert s["matched_iou"] == pytest.approx((0.6 + 1 + 1) / 3) and s["foreground_iou"] == 1.0
    nothing = object_scores(np.zeros_like(truth), np.zeros_like(truth))
    assert nothing["f1"] == 1.0 and nothing["foreground_iou"] == 1.0
    assert object_scores(np.zeros_like(truth), truth)["f1"] == 0.0


def test_object_scores_matches_one_to_one():
    truth = np.zeros((4, 10), np.int64)
    truth[:, :5], truth[:, 5:] = 1, 2
    pred = np.ones((4, 10), np.int64)  # one object over both: IoU 0.5 with each, matched once
    s = object_scores(pred, truth, iou=0.5)
    assert s["matched"] == 1 and s["f1"] == pytest.approx(2 / 3)
    assert object_scores(pred, truth, iou=0.51)["matched"] == 0


def test_unknown_method_and_parameters_are_refused():
    prob = cell_grid(0.6)[0]
    with pytest.raises(ConfigError, match="unknown instance method 'mc'.*watershed, multicut, gasp, objects"):
        instance_labels(prob, "mc")
    with pytest.raises(ConfigError, match="no parameter bta; its parameters: boundary_threshold"):
        instance_labels(prob, "multicut", bta=0.4)
    with pytest.raises(ConfigError, match="watershed has no parameter beta; its parameters: none"):
        instance_labels(prob, "watershed", beta=0.4)
    for method, params, message in [
        ("multicut", {"beta": 1.0}, "out of range; it must be in \\(0, 1\\)"),
        ("multicut", {"solver": "ilp"}, "not one of gaec, kernighan-lin"),
        ("multicut", {"weighting": "area"}, "not one of none, length"),
        ("gasp", {"linkage": "quantile"}, "not one of average, single"),
        ("objects", {"min_size": 2.5}, "not an integer"),
        ("objects", {"min_size": -1}, "at least 0"),
        ("objects", {"threshold": "high"}, "not a number"),
        ("objects", {"sigma_seeds": True}, "not a number"),
    ]:
        with pytest.raises(ConfigError, match=message):
            method_params(method, **params)


def test_parameters_resolve_and_parse():
    assert method_params("watershed") == {}
    settings = method_params("multicut", beta=0.4, min_size=np.int64(20))
    assert settings["beta"] == 0.4 and settings["min_size"] == 20 and settings["solver"] == "gaec"
    assert set(settings) == set(METHODS["multicut"].defaults)
    parsed = parse_params("gasp", ["beta=0.3", "linkage=complete", "min_size=25"])
    assert parsed["beta"] == 0.3 and parsed["linkage"] == "complete" and parsed["min_size"] == 25
    assert isinstance(parse_params("objects", ["sigma_seeds=1"])["sigma_seeds"], float)
    for items, message in [(["beta"], "not KEY=VALUE"), (["min_size=2.5"], "not a whole number"), (["x=1"], "no para")]:
        with pytest.raises(ConfigError, match=message):
            parse_params("multicut", items)


def test_bad_probability_maps_are_refused():
    for bad, message in [
        (np.zeros((2, 8, 8)), "one \\(H, W\\) cell probability map"),
        (np.full((8, 8), np.nan), "NaN"),
        (np.full((8, 8), 2.0), "outside \\[0, 1\\]"),
        (np.full((8, 8), "a"), "dtype"),
    ]:
        with pytest.raises(DataError, match=message):
            instance_labels(bad, "multicut")
    with pytest.raises(DataError, match="integer instance map"):
        boundary_map(np.zeros((4, 4)))
    with pytest.raises(DataError, match="do not match"):
        object_scores(np.zeros((4, 4), int), np.zeros((4, 5), int))
