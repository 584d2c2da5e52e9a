"""Overlap-tile geometry on a grid fixed to the image (the paper's Figure 2), for whole images and blocks.

An image of any size is covered by network tiles laid on one grid per image: along each axis the
output tiles start at ``k * stride`` (valid padding) or ``k * stride - pad`` (same padding), counted
from the image's first pixel, whatever part of the image is being segmented. So a block of a big
volume is segmented by exactly the tiles that segment it when the whole slice is segmented at once,
and a pixel's probability does not depend on how the work was cut.

For the unpadded ("valid") U-Net each tile reads ``margin`` pixels of context around its output;
its stride is the output side rounded down to a multiple of 2**depth (the network's pooling step),
so every tile starts on the same pooling phase and neighbouring outputs overlap by the few pixels
the rounding removes (the later tile's values are kept: they are the same values up to rounding).
For the same-padding U-Net tiles overlap by half and are blended with a smooth window. Pixels
outside the image are its mirror image (:mod:`biounet.data.mirror`, as training tiles see them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from biounet.core.errors import ConfigError
from biounet.data.mirror import Box, Reader, read_mirrored
from biounet.model.geometry import is_valid_output, output_or_none, output_size, valid_margin

Predictor = Callable[[np.ndarray], np.ndarray]
MAX_TILE = 1024  # largest input tile side chosen automatically (memory grows with its area)
MAX_TILE_SIDE = 8192  # largest input tile side accepted at all


@dataclass(frozen=True)
class TilePlan:
    """How an image is tiled: input and output tile sides (h, w), the stride and the margin."""

    in_tile: tuple[int, int]
    out_tile: tuple[int, int]
    stride: tuple[int, int]
    margin: int  # context pixels on each side of an output tile (valid) or blend overlap (same)

    @property
    def same(self) -> bool:
        return self.in_tile == self.out_tile


def _best_valid_side(size: int, depth: int, max_tile: int) -> int:
    """Output side that covers ``size`` with the fewest input pixels along one axis."""
    m = valid_margin(depth)
    best, best_cost = None, math.inf
    for out in range(1, max(size, 1) + 2**depth + 1):
        if out + 2 * m > max_tile and best is not None:
            break
        if not is_valid_output(out, depth):
            continue
        cost = _starts_count(size, out, _valid_stride(out, depth)) * (out + 2 * m)
        if cost < best_cost:
            best, best_cost = out, cost
    assert best is not None  # the loop spans 2**depth consecutive sides, so one of them is valid
    return best


def _valid_stride(out: int, depth: int) -> int:
    """The output side rounded down to the pooling step (at least one step)."""
    step = 2**depth
    return max(step, out - out % step)


def _starts_count(length: int, out: int, stride: int, lead: int = 0) -> int:
    return max(1, math.ceil((length + 2 * lead - out) / stride) + 1)


def plan_tiles(
    height: int, width: int, depth: int = 4, padding: str = "valid", tile: int | None = None, max_tile: int = MAX_TILE
) -> TilePlan:
    """Tile geometry for a (height, width) image.

    ``tile`` (input side) fixes the tile; by default, per axis, the valid output size that covers
    the image with the fewest input pixels (a 512x512 slice: one 700x700 tile, 516x516 out).
    """
    if height < 1 or width < 1:
        raise ConfigError(f"cannot segment an empty image of {height}x{width} pixels")
    if tile is not None and not 1 <= tile <= MAX_TILE_SIDE:
        raise ConfigError(
            f"--tile {tile}: a tile side must be between 1 and {MAX_TILE_SIDE} pixels; omit --tile "
            f"to let biounet choose"
        )
    if padding == "valid":
        m = valid_margin(depth)
        if tile is not None:
            out = output_size(tile, depth)
            if out < 2**depth:  # tiles on the pooling step would leave gaps between their outputs
                bigger = next(
                    t for t in range(tile + 1, tile + 2 ** (depth + 2)) if (output_or_none(t, depth) or 0) >= 2**depth
                )
                raise ConfigError(
                    f"--tile {tile} gives {out}-pixel outputs, fewer than the network's {2**depth}-pixel "
                    f"step; use --tile {bigger} or more"
                )
            return TilePlan((tile, tile), (out, out), (_valid_stride(out, depth),) * 2, m)
        oh, ow = _best_valid_side(height, depth, max_tile), _best_valid_side(width, depth, max_tile)
        return TilePlan((oh + 2 * m, ow + 2 * m), (oh, ow), (_valid_stride(oh, depth), _valid_stride(ow, depth)), m)
    if padding != "same":
        raise ConfigError(f"padding must be 'valid' or 'same', got {padding!r}")
    step = 2**depth
    if tile is None:
        tile = min(max_tile, 512)
    if tile % step:
        raise ConfigError(f"--tile {tile} must be a multiple of {step} for a same-padding U-Net of depth {depth}")
    return TilePlan((tile, tile), (tile, tile), (tile // 2, tile // 2), tile // 4)


def tile_starts(length: int, plan: TilePlan, axis: int) -> list[int]:
    """Where the output tiles start along ``axis`` (0: y, 1: x) of an image ``length`` pixels long."""
    out, stride = plan.out_tile[axis], plan.stride[axis]
    lead = plan.margin if plan.same else 0  # same padding: the grid starts in the mirrored band
    return [k * stride - lead for k in range(_starts_count(length, out, stride, lead))]


def blend_window(h: int, w: int) -> np.ndarray:
    """A smooth, strictly positive (h, w) weight: 1 in the middle, small at the tile edges."""

    def ramp(n):
        x = (np.arange(n) + 0.5) / n
        return np.clip(np.sin(np.pi * x), 1e-3, None)

    return np.outer(ramp(h), ramp(w)).astype(np.float32)


def softmax(scores: np.ndarray, axis: int = 1) -> np.ndarray:
    scores = scores - scores.max(axis=axis, keepdims=True)
    e = np.exp(scores)
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(scores: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), without overflow for large negative scores."""
    return np.exp(-np.logaddexp(np.float32(0), -scores)).astype(scores.dtype, copy=False)


def class_count(channels: int, num_classes: int | None, n_offsets: int) -> int:
    """How many of a predictor's ``channels`` are classes (the first ones): ``num_classes``, or, when None,
    all but the ``n_offsets`` affinity channels; a ConfigError when the channels do not add up."""
    classes = channels - n_offsets if num_classes is None else num_classes
    if classes < 1 or classes + n_offsets != channels:
        raise ConfigError(
            f"the predictor returned {channels} channels, but the model was described with "
            f"{num_classes if num_classes is not None else 'its'} classes and {n_offsets} affinity offsets; pass "
            f"the num_classes and offsets of the model's own configuration (cfg.classes, offsets_for(cfg.affinities))"
        )
    return classes


def probabilities(scores: np.ndarray, classes: int) -> np.ndarray:
    """(N, K + C, h, w) scores -> the softmax over the first ``classes`` channels, the sigmoid of the others."""
    if classes == scores.shape[1]:
        return softmax(scores)
    return np.concatenate([softmax(scores[:, :classes]), sigmoid(scores[:, classes:])], axis=1)


def _covering(starts: list[int], lo: int, hi: int, reach: int) -> list[int]:
    """The tiles whose values land in [lo, hi): a valid tile's last few pixels are overwritten by the
    next tile (``reach`` = its stride), a blended same-padding tile counts over its whole side."""
    return [s for i, s in enumerate(starts) if s < hi and (s + reach > lo or i == len(starts) - 1)]


def predict_box(
    read: Reader,
    shape: tuple[int, int],
    box: Box,
    predictor: Predictor,
    plan: TilePlan,
    batch_size: int = 4,
    apply_softmax: bool = True,
    *,
    num_classes: int | None = None,
    offsets: Sequence[Sequence[int]] = (),
) -> np.ndarray:
    """(K + C, y1 - y0, x1 - x0) float32 scores/probabilities of ``box`` of an image of ``shape``,
    computed by the image's tiles that cover the box (:func:`tile_starts`). The predictor's channels are
    ``num_classes`` K class scores (None: all but the affinity channels), then one affinity score per
    offset of ``offsets`` (C of them; none by default); ``apply_softmax``: the softmax over the class
    channels, the sigmoid of each affinity channel (:func:`probabilities`)."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    y0, y1, x0, x1 = box
    (oh, ow), (th, tw) = plan.out_tile, plan.in_tile
    ys = _covering(tile_starts(shape[0], plan, 0), y0, y1, oh if plan.same else plan.stride[0])
    xs = _covering(tile_starts(shape[1], plan, 1), x0, x1, ow if plan.same else plan.stride[1])
    ctx = 0 if plan.same else plan.margin
    cy, cx = ys[0], xs[0]  # the canvas's origin in image coordinates
    inputs = read_mirrored(read, shape, (cy - ctx, ys[-1] - ctx + th, cx - ctx, xs[-1] - ctx + tw))
    origins = [(y - cy, x - cx) for y in ys for x in xs]
    window = blend_window(oh, ow) if plan.same else None
    acc = norm = None
    for start in range(0, len(origins), batch_size):
        chunk = origins[start : start + batch_size]
        batch = np.stack([inputs[:, y : y + th, x : x + tw] for y, x in chunk]).astype(np.float32, copy=False)
        scores = np.asarray(predictor(batch), dtype=np.float32)
        if scores.ndim != 4 or scores.shape[0] != len(chunk) or scores.shape[2:] != (oh, ow):
            raise ConfigError(
                f"the predictor returned shape {scores.shape} for a batch of shape {batch.shape}; "
                f"expected ({len(chunk)}, K, {oh}, {ow})"
            )
        classes = class_count(scores.shape[1], num_classes, len(offsets))
        if apply_softmax:
            scores = probabilities(scores, classes)
        if acc is None:
            acc = np.zeros((scores.shape[1], ys[-1] - cy + oh, xs[-1] - cx + ow), np.float32)
            norm = np.zeros(acc.shape[1:], np.float32) if window is not None else None
        for (y, x), s in zip(chunk, scores):
            if norm is not None:  # same padding
                acc[:, y : y + oh, x : x + ow] += s * window
                norm[y : y + oh, x : x + ow] += window
            else:
                acc[:, y : y + oh, x : x + ow] = s
    assert acc is not None  # there is at least one tile
    out: np.ndarray = acc[:, y0 - cy : y1 - cy, x0 - cx : x1 - cx]
    if norm is not None:
        out = out / norm[y0 - cy : y1 - cy, x0 - cx : x1 - cx]
    return np.ascontiguousarray(out, dtype=np.float32)


# The 8 symmetries of the square: (rotations by 90 degrees, then an optional horizontal flip).
def _rotate_box(box: Box, shape: tuple[int, int], turns: int) -> tuple[Box, tuple[int, int]]:
    y0, y1, x0, x1 = box
    h, w = shape
    for _ in range(turns % 4):  # np.rot90 by one turn sends pixel (y, x) to (w - 1 - x, y)
        y0, y1, x0, x1 = w - x1, w - x0, y0, y1
        h, w = w, h
    return (y0, y1, x0, x1), (h, w)


def transform_box(box: Box, shape: tuple[int, int], k: int, flip: bool) -> tuple[Box, tuple[int, int]]:
    """Where :func:`transform` takes a box of an image of ``shape``; returns (box, transformed shape)."""
    (y0, y1, x0, x1), (h, w) = _rotate_box(box, shape, k)
    return ((y0, y1, w - x1, w - x0) if flip else (y0, y1, x0, x1)), (h, w)


def untransform_box(box: Box, shape: tuple[int, int], k: int, flip: bool) -> tuple[Box, tuple[int, int]]:
    """Invert :func:`transform_box`: ``box`` of the transformed image of ``shape`` -> (box, original shape)."""
    y0, y1, x0, x1 = box
    if flip:
        x0, x1 = shape[1] - x1, shape[1] - x0
    return _rotate_box((y0, y1, x0, x1), shape, 4 - k)
