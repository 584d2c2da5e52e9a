"""Instance maps scored as the challenge scored them (one-pixel boundaries) and object by object."""

import numpy as np
import pytest
from scipy import ndimage

from biounet.core.errors import DataError
from biounet.evaluation.challenge import challenge_scores, truth_segmentation
from biounet.instances.scoring import boundary_map, object_scores

SIDE, WALL = 20, 3


def cell_mask() -> np.ndarray:
    """(H, W) class mask of 2 x 3 square cells (1) behind 3-pixel membranes (0)."""
    mask = np.zeros((2 * SIDE + 3 * WALL, 3 * SIDE + 4 * WALL), np.int64)
    for k in range(6):
        y0, x0 = WALL + (k // 3) * (SIDE + WALL), WALL + (k % 3) * (SIDE + WALL)
        mask[y0 : y0 + SIDE, x0 : x0 + SIDE] = 1
    return mask


def challenge(labels: np.ndarray, mask: np.ndarray) -> dict:
    return challenge_scores([1.0 - boundary_map(labels)], [mask], thresholds=(0.5,))


def test_boundary_map_of_a_perfect_instance_map_scores_one():
    mask = cell_mask()
    cells = truth_segmentation(mask == 1)  # the challenge's true segments: membranes are 0
    assert np.array_equal(boundary_map(cells), (mask == 0).astype(np.uint8))
    scores = challenge(cells, mask)
    assert scores["v_rand"] == 1.0 and scores["v_info"] == 1.0 and scores["pixel_error"] == 0.0
    merged = cells.copy()  # cells 1 and 2 one instance, their membrane included: the merge costs V_rand
    merged[WALL : WALL + SIDE, WALL : 2 * (WALL + SIDE)] = 1
    assert challenge(merged, mask)["v_rand"] < 0.9


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


def test_bad_instance_maps_are_refused():
    with pytest.raises(DataError, match="integer instance map"):
        boundary_map(np.zeros((4, 4)))
    with pytest.raises(DataError, match="do not match"):
        object_scores(np.zeros((4, 4), int), np.zeros((4, 5), int))
