"""Segmentation metrics: the reference's soft dice and plain per-class overlap scores.

Inputs: ``probs`` (K, H, W) float class probabilities (class 0 = membrane, 1 = cell for ISBI)
and ``mask`` (H, W) integer class indices with IGNORE (-1) for pixels left out.
"""

from __future__ import annotations

import numpy as np

from .data.readers import IGNORE
from .errors import ConfigError

REFERENCE_SIZE = 388  # the reference scores images resized to its network's output size


def _check(probs: np.ndarray, mask: np.ndarray) -> None:
    if probs.ndim != 3 or mask.shape != probs.shape[1:]:
        raise ConfigError(f"probabilities {probs.shape} and mask {mask.shape} do not match: expected "
                          f"(K, H, W) and (H, W)")


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


def hard_scores(probs: np.ndarray, mask: np.ndarray) -> dict[str, list[float]]:
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


# --- The ISBI 2012 challenge's measures -------------------------------------------------------
# The challenge scored a cell-probability map (1 = cell, 0 = membrane, the labels' polarity)
# against the labels at thresholds 0.0, 0.1, ..., 1.0 and kept the best (Arganda-Carreras et
# al. 2015, Front. Neuroanat. 9:142; the Fiji script "Segmentation evaluation after border
# thinning"). One threshold serves the whole stack: the one with the best mean over images.
THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(11))
THIN_PAD = 32  # mirrored margin while thinning: enough for membranes up to 64 px thick


def thinned_segmentation(cells: np.ndarray) -> np.ndarray:
    """Label cells after thinning the boundaries to one pixel.

    cells: (H, W) bool, True inside cells. The boundary (False) is skeletonised (8-connected
    one-pixel lines keep their topology); the cells are the 4-connected components of what is
    left, numbered from 1; boundary pixels are 0. The boundary is mirrored beyond the image edges
    while thinning, so a membrane that meets an edge still reaches it (a skeleton's free ends
    shrink by about half the membrane's width).
    """
    from skimage.measure import label
    from skimage.morphology import skeletonize

    pad = THIN_PAD
    mirrored = np.pad(~cells, pad, mode="symmetric")
    boundary = skeletonize(mirrored)[pad:-pad, pad:-pad]
    return label(~boundary, connectivity=1)


def _joint(true_seg: np.ndarray, test_seg: np.ndarray):
    """Foreground-restricted joint distribution p_ij (scipy sparse) and its marginals.

    Pixels on the true boundary (label 0) are left out; each boundary pixel of the proposal is
    a segment of its own, so the proposal's boundary neither merges nor splits cells.
    """
    from skimage.metrics import contingency_table

    keep = true_seg != 0
    t = true_seg[keep].astype(np.int64)
    s = test_seg[keep].astype(np.int64)
    singles = s == 0
    s[singles] = s.max(initial=0) + 1 + np.arange(singles.sum())
    if t.size == 0:
        return None
    p = contingency_table(t, s, normalize=True)  # rows: true segments, columns: proposal
    return p, np.asarray(p.sum(axis=1)).ravel(), np.asarray(p.sum(axis=0)).ravel()


def v_rand_score(true_seg: np.ndarray, test_seg: np.ndarray) -> float:
    """Foreground-restricted Rand F-score: 2 sum p_ij^2 / (sum s_i^2 + sum t_j^2); 1 is perfect.

    The joint probabilities of the paper's definition count a pixel paired with itself;
    scikit-image's ``adapted_rand_error`` leaves those pairs out, a difference of the order of
    (pixels) / (pixels in a segment)^2: below 1e-3 on 512x512 EM slices.
    """
    joint = _joint(true_seg, test_seg)
    if joint is None:
        return 1.0
    p, t, s = joint
    return float(2.0 * p.multiply(p).sum() / ((s**2).sum() + (t**2).sum()))


def v_info_score(true_seg: np.ndarray, test_seg: np.ndarray) -> float:
    """Foreground-restricted information theoretic score 2 I(S;T) / (H(S) + H(T)); 1 is perfect.

    (scikit-image's ``variation_of_information`` gives the conditional entropies H(S|T), H(T|S);
    this is the normalised mutual information built from the same table.)
    """
    joint = _joint(true_seg, test_seg)
    if joint is None:
        return 1.0
    p, t, s = joint

    def entropy(x):
        x = x[x > 0]
        return float(-(x * np.log(x)).sum())

    h_t, h_s, h_ts = entropy(t), entropy(s), entropy(p.data)
    if h_t + h_s == 0:
        return 1.0  # one segment each, identical
    return float(2.0 * (h_t + h_s - h_ts) / (h_t + h_s))


def pixel_fscore(cell_prob: np.ndarray, mask: np.ndarray, threshold: float) -> float:
    """F-score of the cell pixels (probability > threshold) against the cell class of the mask."""
    keep = mask != IGNORE
    pred = cell_prob[keep] > threshold
    true = mask[keep] == 1
    tp = float((pred & true).sum())
    denom = float(pred.sum() + true.sum())
    return 2 * tp / denom if denom else 1.0


def challenge_scores(cell_probs: list[np.ndarray], masks: list[np.ndarray],
                     thresholds: tuple[float, ...] = THRESHOLDS) -> dict:
    """The challenge's measures over a stack, each at the one threshold best for the whole stack.

    cell_probs: per image (H, W) cell probability; masks: per image (H, W) classes (1 = cell).
    Returns ``pixel_error`` (1 - maximal pixel F-score), ``v_rand`` and ``v_info`` (maximal
    scores), their thresholds, and per-image values at those thresholds.
    """
    if len(cell_probs) != len(masks) or not masks:
        raise ConfigError(f"need equally many probability maps and masks, got {len(cell_probs)} and {len(masks)}")
    true_segs = [thinned_segmentation(m == 1) for m in masks]
    table = {"pixel": [], "v_rand": [], "v_info": []}
    for t in thresholds:
        segs = [thinned_segmentation(p > t) for p in cell_probs]
        table["pixel"].append([pixel_fscore(p, m, t) for p, m in zip(cell_probs, masks)])
        table["v_rand"].append([v_rand_score(ts, s) for ts, s in zip(true_segs, segs)])
        table["v_info"].append([v_info_score(ts, s) for ts, s in zip(true_segs, segs)])
    out: dict = {}
    for key, name in (("pixel", "pixel_error"), ("v_rand", "v_rand"), ("v_info", "v_info")):
        means = [float(np.mean(row)) for row in table[key]]
        best = int(np.argmax(means))
        per_image = table[key][best]
        if key == "pixel":
            out[name] = 1.0 - means[best]
            out[f"{name}_per_image"] = [1.0 - v for v in per_image]
        else:
            out[name] = means[best]
            out[f"{name}_per_image"] = per_image
        out[f"{name}_threshold"] = thresholds[best]
    return out
