"""Synthetic EM-like images with exact membrane labels, for the offline demo and fast tests.

Cells are the Voronoi regions of random seeds; membranes are the pixels near a boundary between
two cells, with a thickness that varies along the membrane. The image has textured cell
interiors, dark organelle-like blobs inside cells (labelled cell: hard negatives), dark
membranes, blur and noise. It never stands in for real data where real data is the point.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from biounet.io.fileio import write_png


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    n = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return n / (n.std() + 1e-8)


def synthetic_em_image(
    rng: np.random.Generator, size: int = 256, cell_diameter: float = 40.0
) -> tuple[np.ndarray, np.ndarray]:
    """One (size, size) uint8 image and its uint8 label (255 = cell, 0 = membrane, as ISBI)."""
    n_cells = max(4, int(size * size / (cell_diameter**2)))
    seeds = rng.uniform(-0.1 * size, 1.1 * size, size=(n_cells, 2))
    # jitter the sampling grid so that membranes wiggle instead of being straight lines
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    wobble = 3.0
    pts = np.stack(
        [yy + wobble * _smooth_noise(rng, (size, size), 6), xx + wobble * _smooth_noise(rng, (size, size), 6)], -1
    ).reshape(-1, 2)
    dist, _ = cKDTree(seeds).query(pts, k=2)
    gap = (dist[:, 1] - dist[:, 0]).reshape(size, size)  # 2x distance to the boundary, roughly
    thickness = 2.0 + 1.5 * (_smooth_noise(rng, (size, size), 10) + 1.0).clip(0, 3)
    membrane = gap < thickness

    interior = 0.62 + 0.06 * _smooth_noise(rng, (size, size), 2) + 0.05 * _smooth_noise(rng, (size, size), 12)
    image = np.where(membrane, 0.22 + 0.05 * _smooth_noise(rng, (size, size), 1.5), interior)
    # organelles: dark blobs inside cells that are not membrane
    n_blobs = int(n_cells * 0.6)
    centres = rng.uniform(0, size, size=(n_blobs, 2))
    radii = rng.uniform(2.0, 5.0, size=n_blobs)
    blob_dist, blob_idx = cKDTree(centres).query(np.stack([yy.ravel(), xx.ravel()], -1), k=1)
    blobs = (blob_dist.reshape(size, size) < radii[blob_idx].reshape(size, size)) & ~membrane
    image = np.where(blobs, 0.35 + 0.04 * _smooth_noise(rng, (size, size), 1), image)
    image = ndimage.gaussian_filter(image, rng.uniform(0.8, 1.4))
    image = image + rng.normal(0, 0.04, image.shape)
    image = (image.clip(0, 1) * 255).round().astype(np.uint8)
    label = np.where(membrane, 0, 255).astype(np.uint8)
    return image, label


def write_synthetic_dataset(folder: str | Path, count: int = 12, size: int = 256, seed: int = 0) -> Path:
    """Write ``count`` image/mask pairs as PNG under ``folder/images`` and ``folder/masks``."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for k in range(count):
        image, label = synthetic_em_image(np.random.default_rng([seed, k]), size)
        write_png(folder / "images" / f"synthetic-{k:02d}.png", image)
        write_png(folder / "masks" / f"synthetic-{k:02d}.png", label)
    return folder
