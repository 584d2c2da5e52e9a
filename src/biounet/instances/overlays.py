"""Pictures of instance segmentations for people: each cell in its own colour over the grey image,
and the proposal beside the ground truth for the slices that a report points at (written by
:func:`biounet.io.fileio.write_png`)."""

from __future__ import annotations

import numpy as np

from biounet.core.errors import DataError


def grey(image: np.ndarray) -> np.ndarray:
    """(H, W) or (1, H, W) image, any range -> (H, W) uint8 stretched to its own min..max."""
    a = np.asarray(image, np.float32)
    a = a[0] if a.ndim == 3 else a
    if a.ndim != 2:
        raise DataError(f"an overlay needs one (H, W) image, got shape {np.shape(image)}")
    lo, hi = float(a.min(initial=0.0)), float(a.max(initial=0.0))
    return (255 * (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)).astype(np.uint8)


def instance_overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8: the grey image with every instance (label > 0) tinted in its own colour,
    the pixels between instances (0) left grey, and where two instances touch a dark line (a
    partition such as multicut's has no gaps); colours are fixed by ``seed`` and the label id."""
    g = grey(image)
    labels = np.asarray(labels)
    if labels.shape != g.shape:
        raise DataError(f"labels {labels.shape} and image {g.shape} differ in shape")
    rng = np.random.default_rng(seed)
    palette = rng.integers(40, 256, size=(int(labels.max(initial=0)) + 1, 3)).astype(np.float32)
    rgb = np.repeat(g[..., None], 3, axis=-1).astype(np.float32)
    inside = labels > 0
    rgb[inside] = (1 - alpha) * rgb[inside] + alpha * palette[labels[inside]]
    touch = np.zeros(labels.shape, bool)
    right = (labels[:, 1:] != labels[:, :-1]) & (labels[:, 1:] > 0) & (labels[:, :-1] > 0)
    down = (labels[1:] != labels[:-1]) & (labels[1:] > 0) & (labels[:-1] > 0)
    touch[:, 1:] |= right
    touch[1:] |= down
    rgb[touch] *= 0.25
    return rgb.clip(0, 255).astype(np.uint8)


def side_by_side(*panels: np.ndarray, gap: int = 8) -> np.ndarray:
    """(H, W, 3) panels of one height -> one picture with white gaps between them."""
    if not panels or len({p.shape[0] for p in panels}) != 1:
        raise DataError("side_by_side needs panels of one height")
    spacer = np.full((panels[0].shape[0], gap, 3), 255, np.uint8)
    parts: list[np.ndarray] = []
    for p in panels:
        parts += [p, spacer]
    return np.concatenate(parts[:-1], axis=1)
