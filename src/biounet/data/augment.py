"""Augmentations on (image, mask, weight) tiles, all drawn from a passed-in generator.

Geometry moves image, mask and weight map together: the image is interpolated linearly, the
mask by nearest neighbour (it stays a label image, ignore value included), the weight map
linearly.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

CV_MAX_SIDE = 32767  # OpenCV's remap takes images up to this side


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run and how strong they are (see TrainConfig for the meaning)."""

    flip: bool = True
    rotate90: bool = True
    elastic: bool = True
    elastic_sigma: float = 10.0
    elastic_grid: int = 3
    brightness: float = 0.1
    contrast: float = 0.1


@lru_cache(maxsize=16)
def _cubic_matrix(size: int, grid: int) -> np.ndarray:
    """(size, grid) weights that interpolate ``grid`` control points cubically onto ``size`` pixels.

    Control points sit evenly from the first to the last pixel; each column is the cubic
    spline through a unit impulse at one control point.
    """
    positions = np.linspace(0, grid - 1, size)
    eye = np.eye(grid)
    order = min(3, grid - 1)
    return np.stack(
        [ndimage.map_coordinates(eye[j], positions[None], order=order, mode="nearest") for j in range(grid)], axis=1
    ).astype(np.float32)


def elastic_displacement(rng: np.random.Generator, shape: tuple[int, int], sigma: float, grid: int = 3) -> np.ndarray:
    """(2, H, W) smooth displacement field in pixels: the paper's elastic deformation.

    Displacements drawn from N(0, sigma^2) on a coarse ``grid`` x ``grid`` lattice spanning the
    tile are interpolated bicubically to every pixel (a separable product: cheap at any size).
    The products are elementwise NumPy, not BLAS: in many DataLoader workers a threaded BLAS
    would start a thread pool per worker and oversubscribe the cores.
    """
    coarse = rng.normal(0.0, sigma, size=(2, grid, grid)).astype(np.float32)
    rows, cols = _cubic_matrix(shape[0], grid), _cubic_matrix(shape[1], grid)
    along_rows = np.einsum("hi,cij->chj", rows, coarse, optimize=False)  # (2, H, grid)
    out = along_rows[:, :, 0, None] * cols[None, None, :, 0]
    for j in range(1, grid):
        out += along_rows[:, :, j, None] * cols[None, None, :, j]
    return out


@lru_cache(maxsize=1)
def _cv2():
    """OpenCV, imported at the first warp (reading and inference never need it), with one thread:
    tiles are prepared in DataLoader workers, one per core, and a thread pool in each would
    oversubscribe the cores (the same reason the elastic field avoids BLAS)."""
    import cv2

    cv2.setNumThreads(1)
    return cv2


def _warp_plane(plane: np.ndarray, rows: np.ndarray, cols: np.ndarray, order: int) -> np.ndarray:
    if max(plane.shape) >= CV_MAX_SIDE:  # beyond OpenCV's limit: SciPy, slower (4.3x per batch of tiles here)
        return ndimage.map_coordinates(plane, np.stack([rows, cols]), order=order, mode="mirror", prefilter=False)
    cv2 = _cv2()
    if order == 0:  # labels (ignore value -1 included) as int16, which remap carries exactly
        if plane.dtype != np.int16 and plane.size and (plane.min() < -(2**15) or plane.max() >= 2**15):
            raise ValueError("label values must fit in int16 for the nearest-neighbour warp")
        out = cv2.remap(
            plane.astype(np.int16, copy=False), cols, rows, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101
        )
        return out.astype(plane.dtype, copy=False)
    out = cv2.remap(
        plane.astype(np.float32, copy=False), cols, rows, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    return out.astype(plane.dtype, copy=False)


def warp(array: np.ndarray, coords: np.ndarray, order: int) -> np.ndarray:
    """Sample (C, H, W) or (H, W) ``array`` at (2, h, w) ``coords`` (row, column), bilinearly
    (``order`` 1) or by nearest neighbour (0); outside, the image is mirrored about its edge
    pixels (d c b | a b c d | c b a).

    OpenCV's remap does the sampling: a batch of 16 augmented 572x572 tiles took 0.15 s here
    against 0.66 s with SciPy's map_coordinates (the bench's augmentation probe). OpenCV 4 rounds
    sample positions to 1/32 pixel, far below what the deformation moves.
    """
    rows = np.ascontiguousarray(coords[0], dtype=np.float32)
    cols = np.ascontiguousarray(coords[1], dtype=np.float32)
    if array.ndim == 2:
        return _warp_plane(array, rows, cols, order)
    return np.stack([_warp_plane(a, rows, cols, order) for a in array])


def flip_rotate(arrays: list[np.ndarray], rng: np.random.Generator, cfg: AugmentConfig) -> list[np.ndarray]:
    """One of the square's 8 symmetries (as enabled), applied alike to every array's last two axes."""
    k = int(rng.integers(4)) if cfg.rotate90 else 0
    flip_v = bool(rng.integers(2)) if cfg.flip else False
    flip_h = bool(rng.integers(2)) if cfg.flip else False
    out = []
    for a in arrays:
        if k:
            a = np.rot90(a, k, axes=(-2, -1))
        if flip_v:
            a = a[..., ::-1, :]
        if flip_h:
            a = a[..., :, ::-1]
        out.append(np.ascontiguousarray(a))
    return out


def intensity(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Random contrast (scale about 0) and brightness (shift) in the [-1, 1] image range."""
    if cfg.contrast:
        image = image * np.float32(rng.uniform(1 - cfg.contrast, 1 + cfg.contrast))
    if cfg.brightness:
        image = image + np.float32(rng.uniform(-cfg.brightness, cfg.brightness))
    return image.astype(np.float32, copy=False)
