"""napari sample data: biounet's synthetic EM-like images (:mod:`biounet.data.synthetic`), made on the
spot with a fixed seed, so that the widget can be tried without any data."""

from __future__ import annotations

from typing import Any

import numpy as np

from biounet.data.synthetic import synthetic_em_image

SAMPLE_SEED = 2012


def synthetic_image(size: int = 256) -> list[tuple[Any, dict[str, Any], str]]:
    """One (size, size) uint8 synthetic EM image as an Image layer."""
    image, _ = synthetic_em_image(np.random.default_rng(SAMPLE_SEED), size)
    return [(image, {"name": "synthetic EM image"}, "image")]


def synthetic_stack(slices: int = 4, size: int = 128) -> list[tuple[Any, dict[str, Any], str]]:
    """A (slices, size, size) uint8 stack of independent synthetic EM images as an Image layer."""
    stack = np.stack([synthetic_em_image(np.random.default_rng([SAMPLE_SEED, z]), size)[0] for z in range(slices)])
    return [(stack, {"name": "synthetic EM stack"}, "image")]
