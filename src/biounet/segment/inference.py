"""Overlap-tile inference (the paper's Figure 2): segment an image, or a box of it, at full resolution.

The geometry (the tile grid fixed to the image, mirrored borders, blending) is :mod:`biounet.segment.tiling`;
this module runs it, with the optional test-time augmentation, and builds the predictors. The
network is reached only through a *predictor*: a function from a (N, C, h, w) float32 tile batch
to (N, K, h', w') class scores (then any affinity scores: ``num_classes`` and ``offsets`` say which
channels are which), so the same tiler drives a PyTorch model or an exported one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from biounet.core.errors import ConfigError
from biounet.data.affinities import Offsets, check_offsets, untransform_affinities
from biounet.data.symmetry import DIHEDRAL, transform, untransform
from biounet.segment.tiling import (
    MAX_TILE,
    Box,
    Predictor,
    Reader,
    plan_tiles,
    predict_box,
    transform_box,
    untransform_box,
)

if TYPE_CHECKING:  # the tiler itself runs without PyTorch
    import torch

__all__ = ["Predictor", "segment", "segment_box", "torch_predictor", "class_predictor", "describe_predictor"]


def _transformed_reader(read: Reader, tshape: tuple[int, int], k: int, flip: bool) -> Reader:
    """A reader of the transformed image (of ``tshape``) from a reader of the image."""

    def read_transformed(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        (a, b, c, d), _ = untransform_box((y0, y1, x0, x1), tshape, k, flip)
        return np.ascontiguousarray(transform(read(a, b, c, d), k, flip))

    return read_transformed


def _region_cache(read: Reader) -> Reader:
    """A reader that keeps the bounding box of everything read so far: the 8 symmetries of TTA ask
    for nearly the same region of the image (each through its own tile grid), so after the first
    one or two reads of a box the others are slices of memory, not reads of the volume."""
    held: list = [None, None]  # (y0, y1, x0, x1) and its pixels

    def read_cached(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        box = held[0]
        if box is None or not (box[0] <= y0 and y1 <= box[1] and box[2] <= x0 and x1 <= box[3]):
            if box is not None:  # grow to the union, so later requests fall inside
                y0_, y1_, x0_, x1_ = min(box[0], y0), max(box[1], y1), min(box[2], x0), max(box[3], x1)
            else:
                y0_, y1_, x0_, x1_ = y0, y1, x0, x1
            held[0], held[1] = (y0_, y1_, x0_, x1_), read(y0_, y1_, x0_, x1_)
            box = held[0]
        return held[1][:, y0 - box[0] : y1 - box[0], x0 - box[2] : x1 - box[2]]

    return read_cached


def segment_box(
    read: Reader,
    shape: tuple[int, int],
    box: Box,
    predictor: Predictor,
    depth: int = 4,
    padding: str = "valid",
    tile: int | None = None,
    batch_size: int = 4,
    tta: bool = False,
    softmax: bool = True,
    max_tile: int = MAX_TILE,
    *,
    num_classes: int | None = None,
    offsets: Sequence[Sequence[int]] = (),
) -> np.ndarray:
    """Per-class probabilities (K, y1 - y0, x1 - x0) of ``box`` of an image of ``shape`` (H, W) that
    ``read`` gives in [-1, 1]: the same values as the box of :func:`segment` of the whole image,
    whichever box is asked (up to floating-point rounding), with or without ``tta``.

    ``tta`` averages the probabilities over the 8 flips/rotations of the square (each one
    inverted before averaging), as the paper did for its submission.

    A model with affinity channels (``offsets``, after its ``num_classes`` class channels; see
    :func:`biounet.segment.tiling.predict_box`) gives (K + C, ...): the class probabilities, then the
    affinities (sigmoid), one channel per offset. Under ``tta`` an affinity channel is mapped to the channel
    its offset becomes (:func:`biounet.data.affinities.untransform_affinities`); where that is the negative
    of an offset, the edge is read at its other end, one offset away, so the box is predicted grown by the
    largest offset (within the image) and cropped: a block's affinities are those of the whole image. An
    edge that leaves the image is averaged over the symmetries that keep its channel the same way round
    (the identity always does).
    """
    offs = check_offsets(offsets) if offsets else ()
    if tta and offs:
        return _affinity_tta(
            read, shape, box, predictor, (depth, padding, tile, max_tile), batch_size, softmax, num_classes, offs
        )
    variants = DIHEDRAL if tta else [(0, False)]
    if tta:
        read = _region_cache(read)
    total = None
    for k, flip in variants:
        tbox, tshape = transform_box(box, shape, k, flip)
        plan = plan_tiles(tshape[0], tshape[1], depth, padding, tile, max_tile)
        tread = _transformed_reader(read, tshape, k, flip)
        y = predict_box(
            tread, tshape, tbox, predictor, plan, batch_size, softmax, num_classes=num_classes, offsets=offs
        )
        y = untransform(y, k, flip)
        total = y.copy() if total is None else total + y
    assert total is not None  # there is at least one variant
    return np.ascontiguousarray(total / len(variants), dtype=np.float32)


def _affinity_tta(
    read: Reader,
    shape: tuple[int, int],
    box: Box,
    predictor: Predictor,
    geometry: tuple[int, str, int | None, int],
    batch_size: int,
    softmax: bool,
    num_classes: int | None,
    offsets: Offsets,
) -> np.ndarray:
    """:func:`segment_box` with ``tta`` for a model with affinity channels: the box grown by the largest
    offset, the 8 symmetries averaged (an affinity where it has a value), then cropped to the box."""
    depth, padding, tile, max_tile = geometry
    reach = max(abs(v) for o in offsets for v in o)
    y0, y1, x0, x1 = box
    grown = (max(0, y0 - reach), min(shape[0], y1 + reach), max(0, x0 - reach), min(shape[1], x1 + reach))
    read = _region_cache(read)
    classes = total = aff_sum = aff_count = None
    for k, flip in DIHEDRAL:
        tbox, tshape = transform_box(grown, shape, k, flip)
        plan = plan_tiles(tshape[0], tshape[1], depth, padding, tile, max_tile)
        tread = _transformed_reader(read, tshape, k, flip)
        y = predict_box(
            tread, tshape, tbox, predictor, plan, batch_size, softmax, num_classes=num_classes, offsets=offsets
        )
        classes = y.shape[0] - len(offsets)
        cls = untransform(y[:classes], k, flip)
        aff = untransform_affinities(y[classes:], offsets, (k, flip), fill=np.nan)
        known = np.isfinite(aff)
        if total is None:
            total, aff_sum, aff_count = cls.copy(), np.zeros_like(aff), np.zeros(aff.shape, np.float32)
        else:
            total += cls
        aff_sum += np.where(known, aff, np.float32(0))
        aff_count += known
    assert total is not None and aff_sum is not None and aff_count is not None  # 8 variants ran
    out = np.concatenate([total / len(DIHEDRAL), aff_sum / aff_count])  # the identity gives every edge a value
    crop = out[:, y0 - grown[0] : y1 - grown[0], x0 - grown[2] : x1 - grown[2]]
    return np.ascontiguousarray(crop, dtype=np.float32)


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
    *,
    num_classes: int | None = None,
    offsets: Sequence[Sequence[int]] = (),
) -> np.ndarray:
    """Per-class probabilities (K, H, W) of one (C, H, W) image in [-1, 1], at full resolution; with
    affinity ``offsets``, (K + C, H, W): the class probabilities, then the affinities (see
    :func:`segment_box`). A network trained with ``--context`` takes the image with its neighbouring
    sections (:func:`biounet.data.context.with_context`)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3:
        raise ConfigError(f"image must be (C, H, W), got shape {image.shape}")
    _, h, w = image.shape
    plan_tiles(h, w, depth, padding, tile, max_tile)  # an empty image or a bad tile: the plan's own message

    def read(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return image[:, y0:y1, x0:x1]

    return segment_box(
        read,
        (h, w),
        (0, h, 0, w),
        predictor,
        depth,
        padding,
        tile,
        batch_size,
        tta,
        softmax,
        max_tile,
        num_classes=num_classes,
        offsets=offsets,
    )


def torch_predictor(
    model: torch.nn.Module, device: torch.device | str | None = None, precision: str = "fp32", compile: bool = False
) -> Predictor:
    """A predictor running a PyTorch model under inference mode and the given autocast precision
    (with ``compile``, through ``torch.compile``: each new batch shape compiles once)."""
    import torch

    from biounet.core.device import autocast, compiled, memory_format, tune_for_fixed_shapes

    device = torch.device(device or next(model.parameters()).device)
    tune_for_fixed_shapes(device)
    fmt = memory_format(device, precision)
    # Module.to takes memory_format; torch's overloads omit it
    model = model.to(device).to(memory_format=fmt).eval()  # type: ignore[call-overload]
    net = compiled(model, compile)
    channels = getattr(model, "in_channels", None)

    def predict(batch: np.ndarray) -> np.ndarray:
        if channels is not None and batch.shape[1] != channels:
            raise ConfigError(
                f"the model takes {channels} input channels, got tiles of {batch.shape[1]}: a model trained with "
                f"--context takes each image with its neighbouring sections (biounet.data.context.with_context)"
            )
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(device).contiguous(memory_format=fmt)
            with autocast(device, precision):
                y = net(x)
            return y.float().cpu().numpy()

    predict.device, predict.precision = str(device), precision  # type: ignore[attr-defined]
    return predict


def class_predictor(predictor: Predictor, num_classes: int) -> Predictor:
    """The class scores of ``predictor``: its first ``num_classes`` channels, without a model's affinity
    channels (what scoring the classes needs: no affinity is computed, or mapped under TTA)."""

    def predict(batch: np.ndarray) -> np.ndarray:
        return np.asarray(predictor(batch))[:, :num_classes]

    for name in ("device", "precision"):
        if hasattr(predictor, name):
            setattr(predict, name, getattr(predictor, name))
    return predict


def describe_predictor(predictor: Predictor) -> dict[str, str]:
    """The device and precision a predictor runs in, for reports."""
    return {
        "device": str(getattr(predictor, "device", "unknown")),
        "precision": str(getattr(predictor, "precision", "unknown")),
    }
