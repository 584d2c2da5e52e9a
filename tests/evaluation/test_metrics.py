import numpy as np
import pytest
import torch

from biounet.evaluation.metrics import (
    class_scores,
    dice_coeff,
    dice_coeff_388,
    hard_scores,
    mean_class_scores,
    one_hot,
    per_class_table,
    resize_bilinear,
)


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


def test_class_scores_of_three_classes_hand_computed_leave_ignored_pixels_out():
    # truth  0 0 1 1 2 -    prediction  0 1 1 1 0 2   (- ignored: its wrong prediction never counts)
    mask = np.array([[0, 0, 1, 1, 2, -1]])
    probs = one_hot(np.array([[0, 1, 1, 1, 0, 2]]), 3)
    s = class_scores(probs, mask)
    # class 0: tp 1, fp 1 (the 2 predicted 0), fn 1; class 1: tp 2, fp 1, fn 0; class 2: tp 0, fp 0, fn 1
    assert s["dice"] == pytest.approx([2 / 4, 4 / 5, 0.0])
    assert s["iou"] == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert s["precision"][:2] == pytest.approx([1 / 2, 2 / 3]) and s["precision"][2] is None  # never predicted
    assert s["recall"] == pytest.approx([1 / 2, 1.0, 0.0])
    assert s["pixels"] == [2, 2, 1]


def test_mean_class_scores_average_the_images_where_a_score_is_defined():
    """A class neither labelled nor predicted in an image has no score there (not a perfect 1): the mean is
    over the other images, None where it is nowhere defined; the labelled pixels add up."""
    first = class_scores(one_hot(np.array([[0, 1, 1]]), 3), np.array([[0, 1, 0]]))  # class 2 absent
    second = class_scores(one_hot(np.array([[0, 0, 2]]), 3), np.array([[0, 0, 2]]))  # class 1 absent, all right
    means = mean_class_scores([first, second])
    assert list(means) == ["0", "1", "2"]  # as a JSON file has them
    assert means["0"]["dice"] == pytest.approx((2 / 3 + 1.0) / 2) and means["1"]["dice"] == pytest.approx(2 / 3)
    assert means["2"]["dice"] == 1.0 and means["2"]["recall"] == 1.0 and means["1"]["recall"] == 1.0
    assert [means[k]["pixels"] for k in "012"] == [4, 1, 1]
    assert mean_class_scores([class_scores(one_hot(np.zeros((1, 2), int), 2), np.array([[0, 0]]))])["1"] == {
        "dice": None,
        "iou": None,
        "precision": None,
        "recall": None,
        "pixels": 0,
    }


def test_per_class_table_has_a_row_per_class_and_a_dash_where_undefined():
    table = per_class_table({"0": {"dice": 0.5, "iou": 1 / 3, "precision": None, "recall": 1.0, "pixels": 12}})
    header, row = table.splitlines()
    assert header.split() == ["per", "class", "dice", "iou", "precision", "recall", "pixels"]
    assert row.split() == ["class", "0", "0.5000", "0.3333", "-", "1.0000", "12"]
