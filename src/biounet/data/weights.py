"""Pixel weights for the loss: the paper's border weight map and class balancing.

w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2)) on background pixels, where d1 and d2
are the distances to the nearest and second-nearest cell (connected component of non-zero
classes) and w_c balances class frequencies (Ronneberger et al. 2015, eq. 2).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage

from biounet.data.readers import IGNORE


def class_weights(masks: Iterable[np.ndarray], classes: int) -> np.ndarray:
    """(classes,) inverse class frequencies over ``masks``, normalised so that a pixel weighs 1 on average."""
    counts = np.zeros(classes, np.float64)
    for m in masks:
        counts += np.bincount(m[m != IGNORE].ravel().astype(np.int64), minlength=classes)[:classes]
    counts = np.maximum(counts, 1.0)
    return (counts.sum() / (classes * counts)).astype(np.float32)


def border_weight_map(mask: np.ndarray, w0: float, sigma: float) -> np.ndarray:
    """(H, W) float32 border term w0 * exp(-(d1 + d2)^2 / (2 sigma^2)) on background (class 0) pixels.

    Distances are computed in a window around each cell: beyond ``4 sigma`` per distance the
    term is below w0 * exp(-32) and is treated as zero.
    """
    cells, n = ndimage.label(mask > 0)
    out = np.zeros(mask.shape, np.float32)
    if n < 2:
        return out
    reach = int(np.ceil(8 * sigma))
    far = np.float32(2 * reach)
    d1 = np.full(mask.shape, far, np.float32)
    d2 = np.full(mask.shape, far, np.float32)
    for label, box in enumerate(ndimage.find_objects(cells), start=1):
        if box is None:
            continue
        win = tuple(slice(max(s.start - reach, 0), min(s.stop + reach, dim)) for s, dim in zip(box, mask.shape))
        dist = ndimage.distance_transform_edt(cells[win] != label).astype(np.float32)
        a, b = d1[win], d2[win]
        # keep the two smallest distances per pixel
        d2[win] = np.where(dist < a, a, np.minimum(b, dist))
        d1[win] = np.minimum(a, dist)
    background = mask == 0
    out[background] = w0 * np.exp(-((d1[background] + d2[background]) ** 2) / (2 * sigma**2))
    return out


def weight_maps(
    masks: list[np.ndarray], classes: int, w0: float, sigma: float, balance: bool
) -> list[np.ndarray] | None:
    """Per-image (H, W) float32 loss weights, or None when every pixel weighs 1."""
    if not w0 and not balance:
        return None
    wc = class_weights(masks, classes) if balance else np.ones(classes, np.float32)
    return [weight_map(m, wc, w0, sigma) for m in masks]


def weight_map(mask: np.ndarray, wc: np.ndarray, w0: float, sigma: float) -> np.ndarray:
    """One image's (H, W) float32 loss weights: its class weights ``wc`` (classes,) plus the border term
    (w0 0: none), 0 on ignored pixels."""
    w = wc[np.clip(mask, 0, len(wc) - 1)]
    if w0:
        w = w + border_weight_map(mask, w0, sigma)
    w[mask == IGNORE] = 0.0
    return w.astype(np.float32)
