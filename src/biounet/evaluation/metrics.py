"""Segmentation metrics: the reference's soft dice, plain per-class overlap scores, and the ISBI
2012 challenge's pixel error, V_rand and V_info computed as its Fiji code computes them.

Inputs: ``probs`` (K, H, W) float class probabilities (class 0 = membrane, 1 = cell for ISBI)
and ``mask`` (H, W) integer class indices with IGNORE (-1) for pixels left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from biounet.core.errors import ConfigError
from biounet.data.readers import IGNORE

REFERENCE_SIZE = 388  # the reference scores images resized to its network's output size

# The reported metrics, declared once: the order in which reports, tables and logs list them.
# Per image at full resolution (averaged over the images):
IMAGE_METRICS = ("dice_coeff", "dice_coeff_388", "pixel_mismatch")
# The ISBI 2012 challenge's measures of a stack (two classes only), each at its best threshold:
CHALLENGE_METRICS = ("pixel_error", "v_rand", "v_info")
REPORTED_METRICS = ("dice_coeff", "dice_coeff_388", "pixel_error", "pixel_mismatch", "v_rand", "v_info")
# What a validation line shows, and what the validation panel of loss.png plots (higher is better):
VALIDATION_SHOWN = tuple(k for k in REPORTED_METRICS if k != "pixel_mismatch")
CURVE_METRICS = ("dice_coeff", "v_rand", "v_info")
# Per class, over the labelled pixels of each image (averaged over the images): the report's ``per_class``.
CLASS_METRICS = ("dice", "iou", "precision", "recall")
assert set(REPORTED_METRICS) == set(IMAGE_METRICS) | set(CHALLENGE_METRICS)


def _check(probs: np.ndarray, mask: np.ndarray) -> None:
    if probs.ndim != 3 or mask.shape != probs.shape[1:]:
        raise ConfigError(
            f"probabilities {probs.shape} and mask {mask.shape} do not match: expected (K, H, W) and (H, W)"
        )


def one_hot(mask: np.ndarray, classes: int) -> np.ndarray:
    """(H, W) class indices -> (K, H, W) float32 one-hot; ignored pixels are all zero."""
    out = np.zeros((classes, *mask.shape), np.float32)
    for k in range(classes):
        out[k] = mask == k
    return out


def dice_coeff(probs: np.ndarray, mask: np.ndarray) -> float:
    """The reference's soft dice of one image: 2 <p, y> / (<p, p> + <y, y>) over all class channels.

    ``p`` is the softmax output, ``y`` the one-hot mask; ignored pixels are left out.
    """
    _check(probs, mask)
    keep = mask != IGNORE
    p = probs[:, keep].astype(np.float64)
    y = one_hot(mask[keep][None], probs.shape[0])[:, 0].astype(np.float64)
    return float(2.0 * (p * y).sum() / ((p * p).sum() + (y * y).sum() + 1e-6))


def resize_bilinear(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of the last two axes with half-pixel centres and no antialiasing.

    This is what OpenCV's ``cv2.resize(..., INTER_LINEAR)`` and PyTorch's
    ``interpolate(mode="bilinear", align_corners=False)`` compute.
    """

    def weights(n_in: int, n_out: int) -> np.ndarray:
        pos = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
        pos = np.clip(pos, 0, n_in - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        frac = pos - lo
        w = np.zeros((n_out, n_in), np.float64)
        w[np.arange(n_out), lo] += 1 - frac
        w[np.arange(n_out), hi] += frac
        return w

    wy, wx = weights(a.shape[-2], size[0]), weights(a.shape[-1], size[1])
    return (wy @ a.astype(np.float64) @ wx.T).astype(np.float32)


def dice_coeff_388(probs: np.ndarray, mask: np.ndarray, size: int = REFERENCE_SIZE) -> float:
    """``dice_coeff`` at the reference's resolution: probabilities and one-hot mask resized to
    size x size (bilinear, no antialiasing), the mask then thresholded at 0.5, as the reference
    does with its 512 -> 388 resize. Ignored pixels are not supported here (the reference has none).
    """
    _check(probs, mask)
    if (mask == IGNORE).any():
        raise ConfigError("dice_coeff_388 needs a fully labelled mask; it has ignored pixels")
    p = resize_bilinear(probs, (size, size))
    y = (resize_bilinear(one_hot(mask, probs.shape[0]), (size, size)) > 0.5).astype(np.float64)
    return float(2.0 * (p * y).sum() / ((p * p).sum() + (y * y).sum() + 1e-6))


def hard_scores(probs: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """Per-class dice and IoU of the arg-max segmentation, and the plain pixel mismatch.

    A class absent from both prediction and mask scores 1 (nothing to get wrong).
    """
    _check(probs, mask)
    keep = mask != IGNORE
    pred = probs.argmax(0)[keep]
    true = mask[keep]
    dice, iou = [], []
    for k in range(probs.shape[0]):
        p, t = pred == k, true == k
        inter, total, union = (p & t).sum(), p.sum() + t.sum(), (p | t).sum()
        dice.append(float(2 * inter / total) if total else 1.0)
        iou.append(float(inter / union) if union else 1.0)
    return {"dice": dice, "iou": iou, "pixel_mismatch": float((pred != true).mean()) if true.size else 0.0}


def class_scores(probs: np.ndarray, mask: np.ndarray) -> dict[str, list[float | None]]:
    """Per class k (a list each): ``dice``, ``iou``, ``precision`` and ``recall`` of the arg-max segmentation
    over the labelled pixels (IGNORE left out), and ``pixels``, the labelled pixels of class k. A score whose
    denominator is 0 (class k neither labelled nor predicted there; precision: not predicted; recall: not
    labelled) is None: it has nothing to say, rather than a perfect 1."""
    _check(probs, mask)
    keep = mask != IGNORE
    pred, true = probs.argmax(0)[keep], mask[keep]
    out: dict[str, list[float | None]] = {name: [] for name in (*CLASS_METRICS, "pixels")}
    for k in range(probs.shape[0]):
        p, t = pred == k, true == k
        tp, fp, fn = int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum())
        for name, num, den in (
            ("dice", 2 * tp, 2 * tp + fp + fn),
            ("iou", tp, tp + fp + fn),
            ("precision", tp, tp + fp),
            ("recall", tp, tp + fn),
        ):
            out[name].append(num / den if den else None)
        out["pixels"].append(tp + fn)
    return out


def mean_class_scores(rows: Sequence[Mapping[str, Sequence[float | None]]]) -> dict[str, dict[str, float | None]]:
    """Images' :func:`class_scores` -> by class index (a string, "0", as JSON keys are: a report reads the same
    before and after a JSON file), each score's mean over the images where it is defined (None where it is
    nowhere) and the labelled pixels of the class summed over the images."""
    classes = len(rows[0]["dice"]) if rows else 0
    out: dict[str, dict[str, float | None]] = {}
    for k in range(classes):
        scores: dict[str, float | None] = {}
        for name in CLASS_METRICS:
            defined = [v for r in rows if (v := r[name][k]) is not None]
            scores[name] = float(np.mean(defined)) if defined else None
        scores["pixels"] = sum(r["pixels"][k] or 0 for r in rows)
        out[str(k)] = scores
    return out


def per_class_table(per_class: Mapping[str, Mapping[str, float | None]]) -> str:
    """The per-class scores of a report as a table: a row per class, a column per score ('-': undefined)."""
    lines = ["per class      " + " ".join(f"{name:>9s}" for name in (*CLASS_METRICS, "pixels"))]
    for k, scores in per_class.items():
        cells = [f"{v:9.4f}" if v is not None else f"{'-':>9s}" for v in (scores[n] for n in CLASS_METRICS)]
        lines.append(f"  class {k:<7}" + " ".join(cells) + f" {int(scores['pixels'] or 0):>9d}")
    return "\n".join(lines)
