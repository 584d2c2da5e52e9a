import numpy as np
import pytest
import torch

from biounet.evaluation.metrics import dice_coeff, dice_coeff_388, hard_scores, one_hot, resize_bilinear


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
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(a)[None], size=(388, 388), mode="bilinear", align_corners=False, antialias=False
    )[0].numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-4)  # float32 vs float64 accumulation
