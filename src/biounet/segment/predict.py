"""Write predictions: segment image files and stacks into membrane probabilities, masks, cell
instances, their table of objects and overlays, each written atomically. No PyTorch: the predictor may
be an exported model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from biounet.core.config import TrainConfig
from biounet.core.errors import ConfigError, DataError
from biounet.data.affinities import offsets_for
from biounet.data.context import with_context
from biounet.data.readers import IMAGE_SUFFIXES, is_channels_last, read_image_file, scale_image
from biounet.instances.measure import ObjectTally
from biounet.instances.methods import check_inputs, instance_labels
from biounet.io.fileio import atomic_write, write_png
from biounet.io.metadata import PixelSize, imagej_unit, ome_unit, read_pixel_size
from biounet.segment.inference import Predictor, segment
from biounet.segment.objects import calibration, objects_path, write_objects


def list_inputs(inputs: list[str]) -> list[Path]:
    """Files to segment: each input is an image file, a multi-page TIFF, or a folder of them.

    Outputs are named after the input's stem, so two inputs of one stem (``a/x.png b/x.png``,
    ``x.png x.tif``) are refused rather than one overwriting the other's outputs; a file given
    twice is segmented once.
    """
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"folder {p} holds no PNG or TIFF images")
            files.extend(found)
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                raise DataError(f"{p} is not a PNG or TIFF image")
            files.append(p)
        else:
            raise DataError(f"input {p} does not exist")
    unique: dict[Path, Path] = {}
    stems: dict[str, Path] = {}
    for f in files:
        key = f.resolve()
        if key in unique:
            continue
        if f.stem in stems:
            raise ConfigError(
                f"inputs {stems[f.stem]} and {f} would both write {f.stem}_*.tif into the output "
                f"folder; segment them into separate --out folders, or rename one"
            )
        unique[key], stems[f.stem] = f, f
    return list(unique.values())


def read_slices(path: Path) -> list[np.ndarray]:
    """The raw slices of an image file or a multi-page TIFF, as stored: (H, W) or (H, W, C) each."""
    pixels = read_image_file(path)
    if pixels.ndim not in (2, 3, 4):
        raise DataError(
            f"{path} holds an array of shape {pixels.shape}; expected an image (H, W) or (H, W, C), "
            f"or a stack of them (Z, H, W)"
        )
    is_tiff = path.suffix.lower() in (".tif", ".tiff")
    colour = is_channels_last(pixels) and pixels.shape[0] > 4  # a (Z, H, W) stack of up to 4 slices is not colour
    single = not is_tiff or pixels.ndim == 2 or colour  # a PNG is one image; a TIFF may be a stack
    return [pixels] if single else list(pixels)


def scale_slices(slices: list[np.ndarray], in_channels: int, name: str) -> np.ndarray:
    """(Z, C, H, W) float32 in [-1, 1]: the network's input from :func:`read_slices`' raw slices."""
    return np.stack([scale_image(s, in_channels, f"{name} slice {z}") for z, s in enumerate(slices)])


def read_stack(path: Path, in_channels: int) -> np.ndarray:
    """(Z, C, H, W) float32 in [-1, 1] from an image file or a multi-page TIFF."""
    return scale_slices(read_slices(path), in_channels, path.name)


def overlay(image: np.ndarray, membrane: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: the grey image with predicted membrane (probability > 0.5) in colour."""
    grey = ((image[0] + 1) * 127.5).clip(0, 255).astype(np.uint8)
    rgb = np.stack([grey] * 3, -1).astype(np.float32)
    on = membrane > 0.5
    rgb[on] = 0.45 * rgb[on] + 0.55 * np.array([255, 40, 160], np.float32)
    return rgb.astype(np.uint8)


def _write_tiff(path: Path, array: np.ndarray, axes: str, pixel_size: PixelSize | None = None) -> None:
    """One output TIFF, written atomically, whose axes Fiji and napari read: an ImageJ hyperstack for the
    types ImageJ holds (uint8, uint16, float32), an OME-TIFF for others (uint32 labels). ``axes`` names
    ``array``'s dimensions in ImageJ's order (e.g. ZYX, ZCYX); readers drop an axis of length 1, so one
    slice reads as (Y, X). ``pixel_size`` (the input's calibration) is carried over when given."""
    import tifffile

    meta: dict[str, Any] = {"axes": axes}
    options: dict[str, Any] = {"ome": True}
    if array.dtype in (np.uint8, np.uint16, np.float32):
        options = {"imagej": True, "resolution": None}
        if pixel_size and (unit := imagej_unit(pixel_size.unit)):
            meta["unit"], options["resolution"] = unit, (1 / pixel_size.x, 1 / pixel_size.y)
            if pixel_size.z:
                meta["spacing"] = pixel_size.z
    elif pixel_size and (unit := ome_unit(pixel_size.unit)):
        sizes = {"X": pixel_size.x, "Y": pixel_size.y} | ({"Z": pixel_size.z} if pixel_size.z else {})
        for axis, size in sizes.items():
            meta[f"PhysicalSize{axis}"], meta[f"PhysicalSize{axis}Unit"] = size, unit
    write = partial(tifffile.imwrite, data=array, metadata=meta, photometric="minisblack", **options)
    atomic_write(path, write)


def segment_outputs(
    image: np.ndarray,
    predictor: Predictor,
    depth: int,
    padding: str,
    tile: int | None = None,
    batch_size: int = 4,
    tta: bool = False,
    *,
    num_classes: int = 2,
    offsets: Sequence[Sequence[int]] = (),
) -> tuple[np.ndarray, np.ndarray | None]:
    """(class probabilities (K, H, W), affinities (C, H, W) or None) of one (C_in, H, W) image: the
    output of :func:`segment` split after the model's ``num_classes`` classes, when it predicts
    affinities for ``offsets`` (channel K + j for offsets[j]); without offsets, (probabilities, None)."""
    if not len(offsets):
        return segment(image, predictor, depth, padding, tile, batch_size, tta), None
    # segment refuses a predictor whose channels are not num_classes + len(offsets)
    out = segment(image, predictor, depth, padding, tile, batch_size, tta, num_classes=num_classes, offsets=offsets)
    return out[:num_classes], out[num_classes:]


def _segment_stack(
    stack: np.ndarray,
    predictor: Predictor,
    cfg: TrainConfig,
    settings: dict[str, Any],
    labels: str | None,
    label_params: dict[str, Any],
    progress: Callable[[int], None] | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(Z, K, H, W) class probabilities of every slice of a (Z, C, H, W) stack (each with its neighbouring
    sections for a network trained with ``--context``), and (Z, H, W) uint32 instances by ``labels`` (None
    without, or for more than two classes), each slice's affinities dropped once its instances are made."""
    offsets = offsets_for(cfg.affinities)
    slices, cells = [], []
    for z in range(len(stack)):
        img = with_context(stack, z, cfg.context)  # a network trained with --context takes neighbouring sections
        probs, aff = segment_outputs(
            img, predictor, cfg.depth, cfg.padding, **settings, num_classes=cfg.classes, offsets=offsets
        )
        slices.append(probs)
        if labels and probs.shape[0] == 2:
            cells.append(instance_labels(probs[1], labels, affinities=aff, offsets=offsets, **label_params))
        if progress:
            progress(1)
    return np.stack(slices), (np.stack(cells) if cells else None)


def _outputs(
    f: Path, out_dir: Path, stack: np.ndarray, probs: np.ndarray, inst: np.ndarray | None, overlays: bool
) -> dict[Path, Callable[[Path], object]]:
    """The image outputs of input ``f``, each a writer of its file (atomic) by its path."""
    tiff = partial(_write_tiff, pixel_size=read_pixel_size(f))
    outputs: dict[Path, Callable[[Path], object]] = {}
    if probs.shape[1] == 2:
        membrane = probs[:, 0].astype(np.float32)
        outputs[out_dir / f"{f.stem}_membrane.tif"] = partial(tiff, array=membrane, axes="ZYX")
    else:
        outputs[out_dir / f"{f.stem}_probs.tif"] = partial(tiff, array=probs.astype(np.float32), axes="ZCYX")
    # two classes: the labels' convention (255 = cell, 0 = membrane), cut where membrane > 0.5
    hard = np.where(probs[:, 0] > 0.5, 0, 255) if probs.shape[1] == 2 else probs.argmax(1)
    outputs[out_dir / f"{f.stem}_mask.tif"] = partial(tiff, array=hard.astype(np.uint8), axes="ZYX")
    if inst is not None:
        outputs[out_dir / f"{f.stem}_labels.tif"] = partial(tiff, array=inst, axes="ZYX")
    if overlays and probs.shape[1] == 2:
        for z, (img, pr) in enumerate(zip(stack, probs)):
            name = f"{f.stem}_overlay.png" if len(stack) == 1 else f"{f.stem}_overlay_{z:03d}.png"
            outputs[out_dir / name] = partial(write_png, pixels=overlay(img, pr[0]))
    return outputs


def _objects_writer(
    f: Path, raw: list[np.ndarray], inst: np.ndarray, tally: ObjectTally, log: Callable[[str], object]
) -> Callable[[Path], object]:
    """The writer of input ``f``'s table of objects (:mod:`biounet.segment.objects`), counting into ``tally``."""
    size = read_pixel_size(f)
    scale, unit = calibration((size.y, size.x) if size else None, size.unit if size else None, str(f), log)
    slices = ((z, cells, pixels) for z, (cells, pixels) in enumerate(zip(inst, raw)))
    return partial(write_objects, slices=slices, pixel_size=scale, unit=unit, alpha=True, tally=tally)


def predict_files(
    files: list[Path],
    predictor: Predictor,
    cfg: TrainConfig,
    out_dir: str | Path,
    tile: int | None = None,
    batch_size: int = 4,
    tta: bool = False,
    labels: str | None = None,
    overlays: bool = False,
    log: Callable[[str], object] = print,
    progress: Callable[[int], None] | None = None,
    label_params: dict[str, Any] | None = None,
    measure: bool = False,
) -> list[Path]:
    """Segment every file and write the outputs (atomically); returns the paths written. ``labels``
    names an instance method (:mod:`biounet.instances.methods`), run with ``label_params``; with
    ``measure`` its cells are measured into ``<stem>_objects.csv`` (:mod:`biounet.segment.objects`)."""
    out_dir = Path(out_dir)
    if labels:  # before any slice is segmented: a method that reads affinities needs a model that predicts them
        check_inputs([labels], offsets_for(cfg.affinities))
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    settings = {"tile": tile, "batch_size": batch_size, "tta": tta}
    for f in files:
        raw = read_slices(f)
        stack = scale_slices(raw, cfg.in_channels, f.name)
        probs, inst = _segment_stack(stack, predictor, cfg, settings, labels, label_params or {}, progress)
        outputs = _outputs(f, out_dir, stack, probs, inst, overlays)
        tally = ObjectTally()
        if measure and inst is not None:  # last: the table of the labels written before it
            outputs[objects_path(out_dir, f.stem)] = _objects_writer(f, raw, inst, tally, log)
        for path, write in outputs.items():
            write(path)
            written.append(path)
        counted = f" ({tally.summary()})" if measure and inst is not None else ""
        listed = ", ".join(p.name for p in outputs if "overlay" not in p.name)
        log(f"{f}: {len(stack)} slice(s) -> {listed}{counted}")
    return written
