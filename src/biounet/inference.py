"""Overlap-tile inference (the paper's Figure 2): segment an image of any size at full resolution.

The image is cut into tiles whose outputs cover it; the input borders are extended by mirroring,
so every output pixel sees the network's full context. For the unpadded ("valid") U-Net the
output tiles abut exactly; for the same-padding U-Net tiles overlap by half and are blended with
a smooth window, so no seam shows. The network is reached only through a *predictor*: a function
from a (N, C, h, w) float32 tile batch to (N, K, h', w') class scores, so the same tiler drives a
PyTorch model or an exported one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .errors import ConfigError
from .geometry import is_valid_output, output_size, valid_margin

if TYPE_CHECKING:  # the tiler itself runs without PyTorch
    import torch

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


def _best_valid_side(size: int, depth: int, max_tile: int) -> int:
    """Output side that covers ``size`` with the fewest input pixels along one axis."""
    m = valid_margin(depth)
    best, best_cost = None, math.inf
    for out in range(1, max(size, 1) + 2**depth + 1):
        if out + 2 * m > max_tile and best is not None:
            break
        if not is_valid_output(out, depth):
            continue
        cost = math.ceil(size / out) * (out + 2 * m)
        if cost < best_cost:
            best, best_cost = out, cost
    assert best is not None  # the loop spans 2**depth consecutive sides, so one of them is valid
    return best


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
            return TilePlan((tile, tile), (out, out), (out, out), m)
        oh, ow = _best_valid_side(height, depth, max_tile), _best_valid_side(width, depth, max_tile)
        return TilePlan((oh + 2 * m, ow + 2 * m), (oh, ow), (oh, ow), m)
    if padding != "same":
        raise ConfigError(f"padding must be 'valid' or 'same', got {padding!r}")
    step = 2**depth
    if tile is None:
        tile = min(max_tile, 512)
    if tile % step:
        raise ConfigError(f"--tile {tile} must be a multiple of {step} for a same-padding U-Net of depth {depth}")
    return TilePlan((tile, tile), (tile, tile), (tile // 2, tile // 2), tile // 4)


def _blend_window(h: int, w: int) -> np.ndarray:
    """A smooth, strictly positive (h, w) weight: 1 in the middle, small at the tile edges."""

    def ramp(n):
        x = (np.arange(n) + 0.5) / n
        return np.clip(np.sin(np.pi * x), 1e-3, None)

    return np.outer(ramp(h), ramp(w)).astype(np.float32)


def _softmax(scores: np.ndarray, axis: int = 1) -> np.ndarray:
    scores = scores - scores.max(axis=axis, keepdims=True)
    e = np.exp(scores)
    return e / e.sum(axis=axis, keepdims=True)


def sliding_window(
    image: np.ndarray, predictor: Predictor, plan: TilePlan, batch_size: int = 4, softmax: bool = True
) -> np.ndarray:
    """Run ``predictor`` over tiles of ``image`` (C, H, W) -> (K, H, W) float32 scores/probabilities."""
    if image.ndim != 3:
        raise ConfigError(f"image must be (C, H, W), got shape {image.shape}")
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    _, H, W = image.shape
    (th, tw), (oh, ow), (sh, sw) = plan.in_tile, plan.out_tile, plan.stride
    same = (th, tw) == (oh, ow)
    pad = plan.margin
    if same:  # overlapping tiles cover the image plus a mirrored band of ``pad`` on every side
        ny = max(1, math.ceil((H + 2 * pad - oh) / sh) + 1)
        nx = max(1, math.ceil((W + 2 * pad - ow) / sw) + 1)
    else:  # abutting output tiles; each input tile adds ``pad`` of context on every side
        ny, nx = math.ceil(H / oh), math.ceil(W / ow)
    # tile (iy, ix) reads padded input [iy*sh, iy*sh + th) and fills output [iy*sh, iy*sh + oh) of
    # a canvas whose origin is the image's top-left corner (valid) or ``pad`` above and left of it (same)
    extent_h, extent_w = (ny - 1) * sh + oh, (nx - 1) * sw + ow
    bottom = extent_h - H + (pad if not same else -pad)
    right = extent_w - W + (pad if not same else -pad)
    padded = np.pad(image, ((0, 0), (pad, bottom), (pad, right)), mode="symmetric" if min(H, W) == 1 else "reflect")
    origins = [(iy * sh, ix * sw) for iy in range(ny) for ix in range(nx)]
    window = _blend_window(oh, ow) if same else None
    acc, norm = None, None
    for start in range(0, len(origins), batch_size):
        chunk = origins[start : start + batch_size]
        batch = np.stack([padded[:, y : y + th, x : x + tw] for y, x in chunk]).astype(np.float32, copy=False)
        scores = np.asarray(predictor(batch), dtype=np.float32)
        if scores.ndim != 4 or scores.shape[0] != len(chunk) or scores.shape[2:] != (oh, ow):
            raise ConfigError(
                f"the predictor returned shape {scores.shape} for a batch of shape {batch.shape}; "
                f"expected ({len(chunk)}, K, {oh}, {ow})"
            )
        if softmax:
            scores = _softmax(scores)
        if acc is None:
            acc = np.zeros((scores.shape[1], extent_h, extent_w), np.float32)
            norm = np.zeros((extent_h, extent_w), np.float32) if same else None
        for (y, x), s in zip(chunk, scores):
            if norm is not None:  # same padding
                acc[:, y : y + oh, x : x + ow] += s * window
                norm[y : y + oh, x : x + ow] += window
            else:
                acc[:, y : y + oh, x : x + ow] = s
    assert acc is not None  # there is at least one tile
    if norm is not None:  # same padding
        out = acc[:, pad : pad + H, pad : pad + W] / norm[pad : pad + H, pad : pad + W]
    else:
        out = acc[:, :H, :W]
    return np.ascontiguousarray(out, dtype=np.float32)


# The 8 symmetries of the square: (rotations by 90 degrees, then an optional horizontal flip).
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


def segment(
    image: np.ndarray,
    predictor: Predictor,
    depth: int = 4,
    padding: str = "valid",
    tile: int | None = None,
    batch_size: int = 4,
    tta: bool = False,
    softmax: bool = True,
    max_tile: int = MAX_TILE,
) -> np.ndarray:
    """Per-class probabilities (K, H, W) of one (C, H, W) image in [-1, 1], at full resolution.

    ``tta`` averages the probabilities over the 8 flips/rotations of the square (each one
    inverted before averaging), as the paper did for its submission.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[None]
    variants = DIHEDRAL if tta else [(0, False)]
    total = None
    for k, flip in variants:
        x = np.ascontiguousarray(transform(image, k, flip))
        plan = plan_tiles(x.shape[1], x.shape[2], depth, padding, tile, max_tile)
        y = untransform(sliding_window(x, predictor, plan, batch_size, softmax), k, flip)
        total = y.copy() if total is None else total + y
    assert total is not None  # there is at least one variant
    return np.ascontiguousarray(total / len(variants), dtype=np.float32)


def torch_predictor(
    model: torch.nn.Module, device: torch.device | str | None = None, precision: str = "fp32", compile: bool = False
) -> Predictor:
    """A predictor running a PyTorch model under inference mode and the given autocast precision
    (with ``compile``, through ``torch.compile``: each new batch shape compiles once)."""
    import torch

    from .device import autocast, compiled, memory_format, tune_for_fixed_shapes

    device = torch.device(device or next(model.parameters()).device)
    tune_for_fixed_shapes(device)
    fmt = memory_format(device, precision)
    # Module.to takes memory_format; torch's overloads omit it
    model = model.to(device).to(memory_format=fmt).eval()  # type: ignore[call-overload]
    net = compiled(model, compile)

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(device).contiguous(memory_format=fmt)
            with autocast(device, precision):
                y = net(x)
            return y.float().cpu().numpy()

    predict.device, predict.precision = str(device), precision  # type: ignore[attr-defined]
    return predict


def describe_predictor(predictor: Predictor) -> dict[str, str]:
    """The device and precision a predictor runs in, for reports."""
    return {
        "device": str(getattr(predictor, "device", "unknown")),
        "precision": str(getattr(predictor, "precision", "unknown")),
    }
