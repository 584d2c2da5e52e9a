"""An image's mirrored extension beyond its borders: the context overlap-tile gives the pixels at an edge
(the paper's Figure 2), for training tiles (:mod:`biounet.data.tiles`) and for inference tiles
(:mod:`biounet.segment.tiling`) alike, so that the network sees the same border in both.

The rule is ``numpy.pad(mode="reflect")``'s: mirrored about the edge pixel, which is not repeated, and
again about the far edge for as long as the extension reaches (a 1-pixel axis repeats its pixel).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# reads the in-bounds box [y0, y1) x [x0, x1) of an image -> (C, y1 - y0, x1 - x0)
Reader = Callable[[int, int, int, int], np.ndarray]
Box = tuple[int, int, int, int]  # y0, y1, x0, x1, half-open


def reflect_indices(start: int, stop: int, n: int) -> np.ndarray:
    """Pixel indices in [0, n) for positions start..stop-1 of the mirrored extension of an axis."""
    i = np.arange(start, stop)
    if n == 1:
        return np.zeros_like(i)
    period = 2 * (n - 1)
    i = np.mod(i, period)
    return np.where(i < n, i, period - i)


def read_mirrored(read: Reader, shape: tuple[int, int], box: Box) -> np.ndarray:
    """The box of the image's mirrored extension, reading only the in-bounds box that it mirrors."""
    iy = reflect_indices(box[0], box[1], shape[0])
    ix = reflect_indices(box[2], box[3], shape[1])
    y0, x0 = int(iy.min()), int(ix.min())
    data = read(y0, int(iy.max()) + 1, x0, int(ix.max()) + 1)
    if 0 <= box[0] and box[1] <= shape[0] and 0 <= box[2] and box[3] <= shape[1]:
        return data
    return data[:, iy - y0][:, :, ix - x0]


def mirror_pad(image: np.ndarray, margin: int) -> np.ndarray:
    """(C, H, W) -> (C, H + 2 margin, W + 2 margin): the image inside its mirrored extension, as a new
    C-contiguous array of the image's type (value for value ``numpy.pad(mode="reflect")``)."""
    h, w = image.shape[-2:]
    rows, cols = reflect_indices(-margin, h + margin, h), reflect_indices(-margin, w + margin, w)
    return np.ascontiguousarray(image[..., rows, :][..., cols])
