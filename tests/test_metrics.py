import numpy as np
import pytest
import torch

from biounet.metrics import dice_coeff, dice_coeff_388, hard_scores, one_hot, resize_bilinear


def test_perfect_prediction_scores_one():
    mask = np.random.default_rng(0).integers(0, 2, (40, 30))
    probs = one_hot(mask, 2)
    assert dice_coeff(probs, mask) == pytest.approx(1.0, abs=1e-6)
    halves = np.zeros((40, 40), np.int64)
    halves[:, 20:] = 1
    assert dice_coeff_388(one_hot(halves, 2), halves, size=20) == pytest.approx(1.0, abs=1e-6)
    scores = hard_scores(probs, mask)
    assert scores["dice"] == [1.0, 1.0] and scores["iou"] == [1.0, 1.0] and scores["pixel_mismatch"] == 0.0


def test_dice_coeff_hand_computed():
    mask = np.array([[0, 1]])
    probs = np.array([[[0.5, 0.25]], [[0.5, 0.75]]])  # (K=2, H=1, W=2)
    inter = 0.5 + 0.75
    norm = (0.25 + 0.25 + 0.0625 + 0.5625) + 2
    assert dice_coeff(probs, mask) == pytest.approx(2 * inter / norm, rel=1e-6)
    # an ignored pixel is left out
    assert dice_coeff(probs, np.array([[0, -1]])) == pytest.approx(2 * 0.5 / (0.5 + 1), rel=1e-6)


def test_hard_scores_hand_computed():
    mask = np.array([[0, 0, 1, 1]])
    probs = one_hot(np.array([[0, 1, 1, 1]]), 2)
    s = hard_scores(probs, mask)
    assert s["pixel_mismatch"] == 0.25
    assert s["dice"] == pytest.approx([2 / 3, 2 * 2 / 5])
    assert s["iou"] == pytest.approx([1 / 2, 2 / 3])


def test_resize_matches_torch_bilinear_without_antialiasing():
    a = np.random.default_rng(1).random((2, 512, 512)).astype(np.float32)
    ours = resize_bilinear(a, (388, 388))
    ref = torch.nn.functional.interpolate(torch.from_numpy(a)[None], size=(388, 388), mode="bilinear",
                                          align_corners=False, antialias=False)[0].numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-4)  # float32 vs float64 accumulation


# --- the challenge's measures ---

from biounet.metrics import challenge_scores, thinned_segmentation, v_info_score, v_rand_score  # noqa: E402


def _two_cells():
    """A 10x21 mask: two 10x10 cells (class 1) split by a one-pixel membrane (class 0) at column 10."""
    mask = np.ones((10, 21), np.int64)
    mask[:, 10] = 0
    return mask


def test_perfect_segmentation_scores_one():
    mask = _two_cells()
    s = challenge_scores([mask.astype(np.float32)], [mask])
    assert s["v_rand"] == pytest.approx(1.0) and s["v_info"] == pytest.approx(1.0)
    assert s["pixel_error"] == pytest.approx(0.0)


def test_one_removed_membrane_lowers_v_rand_by_the_computed_amount():
    mask = _two_cells()
    merged = np.ones_like(mask, dtype=np.float32)  # the membrane between the cells is missing
    s = challenge_scores([merged], [mask], thresholds=(0.5,))
    # p_ij = t_j = (1/2, 1/2), s = (1): V_rand = 2 * 0.5 / (1 + 0.5) = 2/3
    assert s["v_rand"] == pytest.approx(2 / 3)
    # one proposal segment carries no information about the two true ones
    assert s["v_info"] == pytest.approx(0.0)
    # 10 membrane pixels of 210 called cell: F = 2 * 200 / (210 + 200)
    assert s["pixel_error"] == pytest.approx(1 - 400 / 410)


def test_thinning_keeps_cells_apart_and_the_best_threshold_is_reported():
    mask = np.ones((30, 30), np.int64)
    mask[:, 12:17] = 0  # a thick membrane
    seg = thinned_segmentation(mask == 1)
    assert seg.max() == 2 and (seg == 0).sum() == 30  # thinned to one column, two cells
    prob = np.where(mask == 1, 0.65, 0.35).astype(np.float32)
    s = challenge_scores([prob], [mask])
    assert s["v_rand"] == pytest.approx(1.0)
    assert 0.35 <= s["v_rand_threshold"] < 0.65


def test_v_rand_and_v_info_agree_with_scikit_image():
    from skimage.metrics import adapted_rand_error, variation_of_information

    rng = np.random.default_rng(3)
    # blocky segmentations of EM-like scale: 16x16 blocks of 32x32 pixels
    true = np.kron(rng.integers(0, 9, (16, 16)), np.ones((32, 32), np.int64))  # 0 = boundary, left out
    test = np.kron(rng.integers(1, 9, (16, 16)), np.ones((32, 32), np.int64))  # no proposal boundary
    are, _, _ = adapted_rand_error(true, test, ignore_labels=(0,))
    assert v_rand_score(true, test) == pytest.approx(1 - are, rel=1e-3)
    keep = true != 0
    # scikit-image returns (H(test | true), H(true | test)) in bits
    _, h_true_given_test = variation_of_information(true[keep], test[keep])

    def entropy_bits(labels):
        _, counts = np.unique(labels, return_counts=True)
        p = counts / counts.sum()
        return -(p * np.log2(p)).sum()

    h_t, h_s = entropy_bits(true[keep]), entropy_bits(test[keep])
    mutual = h_t - h_true_given_test
    assert v_info_score(true, test) == pytest.approx(2 * mutual / (h_t + h_s), rel=1e-9)
