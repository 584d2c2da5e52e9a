"""The 8 symmetries of the square (4 quarter turns, each with or without a mirror of the last axis):
test-time augmentation averages over them, and affinity channels are mapped through them. No torch."""

from __future__ import annotations

import numpy as np

DIHEDRAL = [(k, flip) for flip in (False, True) for k in range(4)]


def transform(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Apply one symmetry to the last two axes."""
    a = np.rot90(a, k, axes=(-2, -1))
    return a[..., ::-1] if flip else a


def untransform(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Invert :func:`transform`."""
    if flip:
        a = a[..., ::-1]
    return np.rot90(a, -k, axes=(-2, -1))
