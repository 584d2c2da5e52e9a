"""Instance maps scored: the one-pixel boundary map the ISBI 2012 challenge scores, and object-level
scores (matched F1, IoU) for sparse objects. No PyTorch.
"""

from __future__ import annotations

import numpy as np

from biounet.core.errors import ConfigError, DataError
from biounet.instances.labels import relabel


def boundary_map(labels: np.ndarray) -> np.ndarray:
    """(H, W) instances -> (H, W) uint8 one-pixel boundary map (1 = boundary) for the challenge's scoring.

    Background (0) is boundary. Of two 4-neighbours with different nonzero labels the left (or upper)
    one is boundary, so lines are one pixel wide and no two labels touch across the cell pixels
    (0); a labelled pixel beside background stays cell. The challenge scores ``1 - boundary_map``
    as a cell probability at any threshold in (0, 1): ``challenge.challenge_scores([1 - b], [mask],
    thresholds=(0.5,))``, no sweep.
    """
    a = np.asarray(labels)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer):
        raise DataError(f"boundary_map takes an (H, W) integer instance map, got {a.dtype} of shape {a.shape}")
    edge = a == 0
    right = (a[:, :-1] != a[:, 1:]) & (a[:, :-1] != 0) & (a[:, 1:] != 0)
    down = (a[:-1] != a[1:]) & (a[:-1] != 0) & (a[1:] != 0)
    edge[:, :-1] |= right
    edge[:-1] |= down
    return edge.astype(np.uint8)


def _ious(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """(true index, predicted index, IoU) of every overlapping pair of objects (indices from 0),
    and the numbers of true and predicted objects."""
    t, p = relabel(truth).ravel().astype(np.int64), relabel(pred).ravel().astype(np.int64)
    n_true, n_pred = int(t.max(initial=0)), int(p.max(initial=0))
    both = (t > 0) & (p > 0)
    pairs, inter = np.unique(t[both] * (n_pred + 1) + p[both], return_counts=True)
    ti, pi = pairs // (n_pred + 1), pairs % (n_pred + 1)
    size_t, size_p = np.bincount(t, minlength=n_true + 1), np.bincount(p, minlength=n_pred + 1)
    iou = inter / (size_t[ti] + size_p[pi] - inter)
    return ti - 1, pi - 1, iou, n_true, n_pred


def object_scores(pred: np.ndarray, truth: np.ndarray, iou: float = 0.5) -> dict[str, float]:
    """Object-level scores of an instance map against true instances (both (H, W) integer, 0 = background).

    Objects are matched one to one (Hungarian, most total IoU) among pairs with IoU >= ``iou``.
    ``f1`` = 2 matched / (true + predicted objects), ``precision``, ``recall``; ``matched_iou`` the
    mean IoU of the matched pairs (0 without a match); ``foreground_iou`` the IoU of pred > 0 and
    truth > 0. With no object on either side every score is 1 (nothing to get wrong).
    """
    from scipy.optimize import linear_sum_assignment

    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape or pred.ndim != 2:
        raise DataError(f"instance maps {pred.shape} and {truth.shape} do not match: expected two (H, W) arrays")
    for name, a in (("predicted", pred), ("true", truth)):
        if not np.issubdtype(a.dtype, np.integer) or (a.size and a.min() < 0):
            raise DataError(f"the {name} instance map must hold non-negative integer ids, got {a.dtype}")
    if not 0 < iou <= 1:
        raise ConfigError(f"object_scores iou={iou} must be in (0, 1]")
    ti, pi, overlap, n_true, n_pred = _ious(pred, truth)
    keep = overlap >= iou
    ti, pi, overlap = ti[keep], pi[keep], overlap[keep]
    rows, cols = np.unique(ti), np.unique(pi)
    matrix = np.zeros((len(rows), len(cols)))
    matrix[np.searchsorted(rows, ti), np.searchsorted(cols, pi)] = overlap
    r, c = linear_sum_assignment(matrix, maximize=True)
    matched_ious = matrix[r, c][matrix[r, c] > 0]
    matched = len(matched_ious)
    fg_union = int(((pred > 0) | (truth > 0)).sum())
    return {
        "f1": 2 * matched / (n_true + n_pred) if n_true + n_pred else 1.0,
        "precision": matched / n_pred if n_pred else 1.0,
        "recall": matched / n_true if n_true else 1.0,
        "matched_iou": float(matched_ious.mean()) if matched else (1.0 if n_true + n_pred == 0 else 0.0),
        "foreground_iou": int(((pred > 0) & (truth > 0)).sum()) / fg_union if fg_union else 1.0,
        "true_objects": float(n_true),
        "predicted_objects": float(n_pred),
        "matched": float(matched),
    }
