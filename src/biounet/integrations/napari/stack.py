"""An image layer's pixels segmented slice by slice: what the napari widget runs in its worker thread.

No napari and no Qt here: the checks of a layer's data (a 2D image or a (Z, Y, X) stack, grey or RGB,
NumPy or lazy), the memory its results need, and a generator that segments one slice at a time with
biounet's own functions (:func:`biounet.segment.inference.segment`, :func:`biounet.instances.methods.instance_labels`,
the cells measured by :func:`biounet.instances.measure.measure_objects`), yielding after every slice so that the
caller can show progress and stop between slices.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from biounet.core.config import TrainConfig
from biounet.core.errors import ConfigError, DataError
from biounet.core.system import available_ram_bytes
from biounet.data.context import context_indices
from biounet.data.readers import scale_image
from biounet.instances.measure import measure_objects
from biounet.instances.methods import instance_labels, method_params
from biounet.models import open_model
from biounet.segment.inference import Predictor, class_predictor, segment
from biounet.segment.objects import intensities

# the results must fit in this share of the memory available when a run starts
MEMORY_SHARE = 0.5


@dataclass(frozen=True)
class Slices:
    """A 2D image (Y, X) or a stack (Z, Y, X), each optionally with a last RGB(A) axis, read one slice
    at a time: ``data`` is any array-like that slices like NumPy (NumPy, Dask, Zarr), never loaded whole."""

    data: Any
    rgb: bool
    name: str

    @property
    def stacked(self) -> bool:
        return len(self.data.shape) - self.rgb == 3

    @property
    def shape(self) -> tuple[int, ...]:
        """The results' shape: the layer's without its colour axis."""
        return tuple(int(n) for n in self.data.shape[: len(self.data.shape) - self.rgb])

    @property
    def count(self) -> int:
        return self.shape[0] if self.stacked else 1

    def read(self, z: int) -> np.ndarray:
        """Slice ``z`` as a NumPy array (Y, X) or (Y, X, C): only that slice is read (a Dask or Zarr
        array computes or loads just its chunks)."""
        return np.asarray(self.data[z] if self.stacked else self.data)


def image_slices(data: Any, rgb: bool, name: str) -> Slices:
    """Check a layer's data before anything is read: numeric pixels, a 2D image or a (Z, Y, X) stack
    (plus a colour axis when ``rgb``), not empty. DataError names what is wrong and what to do."""
    shape, dtype = tuple(getattr(data, "shape", ())), getattr(data, "dtype", None)
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        dtype = np.dtype(object)
    if not (dtype.kind == "b" or np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise DataError(f"layer {name!r} holds {dtype} values; biounet segments integer or float pixels")
    spatial = len(shape) - bool(rgb)
    if spatial not in (2, 3):
        colour = " plus its colour axis" if rgb else ""
        raise DataError(
            f"layer {name!r} has {spatial} dimensions{colour} (shape {shape}); biounet segments a 2D image "
            f"(Y, X) or a stack of slices (Z, Y, X): take a 3D or 2D part of it first (right-click "
            f"the layer in the layer list > Split Stack, or slice the array in the console)"
        )
    if min(shape) < 1:
        raise DataError(f"layer {name!r} is empty (shape {shape}); it holds no pixels to segment")
    return Slices(data, bool(rgb), name)


def check_channels(slices: Slices, cfg: TrainConfig, model: str) -> None:
    """Refuse a layer whose colour does not fit the model: RGB for a grey model, grey for an RGB one."""
    if slices.rgb and cfg.in_channels == 1:
        raise DataError(
            f"layer {slices.name!r} is an RGB image, but the model {model} segments grey images (1 channel): "
            f"convert the layer to grey first (right-click it in the layer list > Split RGB) or choose an RGB model"
        )
    if not slices.rgb and cfg.in_channels != 1:
        raise DataError(
            f"layer {slices.name!r} is a grey image, but the model {model} takes {cfg.in_channels} channels "
            f"(an RGB model): open an RGB image or choose a grey model such as isbi2012-membranes"
        )


def check_memory(slices: Slices, cells: bool, available: int | None = None) -> None:
    """Refuse a volume whose results (float32 membrane probability, uint32 cells) do not fit in memory."""
    voxels = int(np.prod(np.asarray(slices.shape, dtype=np.float64)))
    need = voxels * (4 + (4 if cells else 0))
    available = available_ram_bytes() if available is None else available
    if need > MEMORY_SHARE * available:
        raise DataError(
            f"the results for layer {slices.name!r} ({' x '.join(map(str, slices.shape))} voxels) need "
            f"{need / 2**30:.1f} GiB of memory, more than half of the {available / 2**30:.1f} GiB available: "
            f"segment it block by block on the command line (`biounet predict VOLUME --format ome-zarr --model "
            f"MODEL --out DIR`) and open the resulting OME-Zarr store here"
        )


@dataclass(frozen=True)
class Segmentation:
    """The results, each of the layer's shape without its colour axis, and the cells' measurements."""

    membrane: np.ndarray  # float32 membrane probability in [0, 1] (1 = membrane)
    cells: np.ndarray | None  # uint32 cell instances per slice (0 = membrane/background), or None
    # a row per cell (biounet.instances.measure.COLUMNS; "label": its id in ``cells``), or None without cells
    objects: list[dict[str, object]] | None = None


def segment_slices(
    slices: Slices,
    predictor: Predictor,
    cfg: TrainConfig,
    tta: bool = False,
    method: str | None = None,
    tile: int | None = None,
    batch_size: int = 4,
    calibration: tuple[tuple[float, float] | None, str] = (None, "pixel"),
) -> Generator[int, None, Segmentation]:
    """Segment ``slices`` one slice at a time; yields the number of slices done after each one (stop
    iterating to cancel: nothing is kept), returns the :class:`Segmentation`. ``method`` names an
    instance method of :mod:`biounet.instances.methods` for the cells (None: membrane probability only):
    their ids run on through a stack (no two slices share one) and each is measured on the layer's own
    pixels, in the unit of ``calibration`` ((y, x) pixel size, unit; None: pixels)."""
    if cfg.classes != 2:
        raise ConfigError(
            f"the model has {cfg.classes} classes; the napari widget shows membrane probabilities of 2-class "
            f"models: run `biounet predict` for the per-class probabilities"
        )
    if method is not None:
        method_params(method)  # an unknown method fails before the first slice
    check_memory(slices, method is not None)
    shape = (slices.count, *slices.shape[-2:])
    membrane = np.empty(shape, np.float32)
    cells = np.zeros(shape, np.uint32) if method is not None else None
    objects: list[dict[str, object]] = []
    top = 0  # the largest cell id so far: the next slice's ids follow it
    classes = class_predictor(predictor, cfg.classes)  # membrane and cells read the class channels only
    for z in range(slices.count):
        # with --context the network sees the neighbouring slices too (mirrored at the stack's ends)
        sections = context_indices(z, slices.count, cfg.context)
        raw = slices.read(z)  # read once: the network's input and the cells' intensities
        image = np.concatenate(
            [scale_image(raw if s == z else slices.read(s), cfg.in_channels, _where(slices, s)) for s in sections]
        )
        probs = segment(image, classes, cfg.depth, cfg.padding, tile, batch_size, tta)
        membrane[z] = probs[0]
        if cells is not None and method is not None:
            found = instance_labels(probs[1], method)
            cells[z] = np.where(found > 0, found.astype(np.uint32) + top, 0)
            top = max(top, int(cells[z].max()))
            pixels = intensities(raw, alpha=True)
            objects += measure_objects(cells[z], pixels, *calibration, origin=(z if slices.stacked else 0, 0, 0))
        yield z + 1
    found_objects = objects if cells is not None else None
    if not slices.stacked:
        return Segmentation(membrane[0], None if cells is None else cells[0], found_objects)
    return Segmentation(membrane, cells, found_objects)


def _where(slices: Slices, z: int) -> str:
    return f"layer {slices.name!r} slice {z}" if slices.stacked else f"layer {slices.name!r}"


def segment_layer(
    slices: Slices,
    model: str | Path,
    tta: bool = False,
    method: str | None = None,
    device: str = "auto",
    kind: str | None = None,
    calibration: tuple[tuple[float, float] | None, str] = (None, "pixel"),
) -> Generator[int, None, Segmentation]:
    """Open ``model`` (a built-in name, a checkpoint or run folder, an exported file or package: anything
    :func:`biounet.models.open_model` opens) and segment ``slices`` with it (see :func:`segment_slices`)."""
    predictor, cfg, _ = open_model(model, device, "auto", 0, kind=kind)
    check_channels(slices, cfg, str(model))
    return (yield from segment_slices(slices, predictor, cfg, tta, method, calibration=calibration))
