"""napari reader of biounet's outputs: the TIFF files of ``biounet predict`` and its OME-Zarr stores.

- ``<stem>_membrane.tif`` (float32 membrane probability) and ``<stem>_probs.tif`` (per-class
  probabilities) open as Image layers, ``<stem>_mask.tif`` and ``<stem>_labels.tif`` (uint32 cells) as
  Labels layers, placed by the pixel size their metadata declares (ImageJ or OME-TIFF);
- ``<stem>.ome.zarr`` written by the block-wise path (:mod:`biounet.io.omezarr`) opens lazily, as Dask
  arrays of every pyramid level: the membrane probability as a multiscale Image layer (float32 in
  [0, 1], whatever its stored type), ``labels/mask`` and ``labels/cells`` as multiscale Labels layers,
  scaled and translated as the store's OME-NGFF metadata says.

Other files and folders are left to other readers (:func:`get_reader` answers None).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from biounet.core.errors import DataError
from biounet.data.readers import read_image_file
from biounet.io.omezarr import known_unit

LayerData = tuple[Any, dict[str, Any], str]
# the file name endings of `biounet predict`'s outputs -> the layer type they open as
TIFF_OUTPUTS = {"_membrane": "image", "_probs": "image", "_mask": "labels", "_labels": "labels"}
_TIFF = re.compile(r"^(?P<stem>.+?)(?P<kind>_membrane|_probs|_mask|_labels)\.tiff?$", re.IGNORECASE)
STORE_SUFFIX = ".ome.zarr"


def _store_attrs(path: Path) -> dict[str, Any] | None:
    """The root attributes of a Zarr group (v3 or v2) as plain JSON, or None if ``path`` is not one."""
    try:
        if (path / "zarr.json").is_file():
            meta = json.loads((path / "zarr.json").read_text(encoding="utf-8"))
            return dict(meta.get("attributes", {})) if meta.get("node_type") == "group" else None
        if (path / ".zattrs").is_file():
            return dict(json.loads((path / ".zattrs").read_text(encoding="utf-8")))
    except (OSError, ValueError, AttributeError):
        return None
    return None


def is_output(path: str | Path) -> bool:
    """Whether ``path`` is a biounet output this reader opens (by name; a store also by its metadata)."""
    path = Path(path)
    if path.name.lower().endswith(STORE_SUFFIX) and path.is_dir():
        attrs = _store_attrs(path)
        return attrs is not None and isinstance(attrs.get("biounet"), dict)
    return bool(_TIFF.match(path.name)) and path.is_file()


def get_reader(path: str | Path | Sequence[str | Path]) -> Callable[[Any], list[LayerData]] | None:
    """npe2 reader hook: :func:`read_outputs` when every path is a biounet output, else None."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or not all(is_output(p) for p in paths):
        return None
    return read_outputs


def read_outputs(path: str | Path | Sequence[str | Path]) -> list[LayerData]:
    """The layers of one or more biounet outputs (see the module's docstring)."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    layers: list[LayerData] = []
    for p in map(Path, paths):
        layers += read_store(p) if p.name.lower().endswith(STORE_SUFFIX) else [read_tiff(p)]
    return layers


# --- TIFF files of `biounet predict` ---------------------------------------------------------------


def _ome_pixel_size(xml: str) -> tuple[dict[str, float], str | None]:
    """{"x": ..., "y": ..., "z": ...} and the unit from an OME-XML header (empty when absent)."""
    pixels = ElementTree.fromstring(xml).find(".//{*}Pixels")
    if pixels is None:
        return {}, None
    sizes = {a: float(v) for a in "xyz" if (v := pixels.get(f"PhysicalSize{a.upper()}")) is not None}
    return sizes, pixels.get("PhysicalSizeXUnit", "µm")  # the OME schema's default unit


def tiff_pixel_size(path: Path) -> tuple[dict[str, float], str | None]:
    """The pixel size a TIFF declares (ImageJ: resolution, spacing and unit; OME-TIFF: PhysicalSize*),
    as {"x", "y"[, "z"]} and a unit; ({}, None) when it declares none. Read from the header only."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_ome and tif.ome_metadata:
                return _ome_pixel_size(tif.ome_metadata)
            meta = (tif.imagej_metadata if tif.is_imagej else None) or {}
            x, y = tif.pages.first.resolution  # pixels per unit
    except (OSError, ValueError, ElementTree.ParseError, tifffile.TiffFileError):
        return {}, None  # the pixels' reader says what is wrong with the file
    unit, spacing = meta.get("unit"), meta.get("spacing")
    if not isinstance(unit, str) or unit in ("", "pixel", "pixels") or not (x > 0 and y > 0):
        return {}, None
    sizes = {"x": 1 / x, "y": 1 / y}
    if isinstance(spacing, (int, float)) and spacing > 0:
        sizes["z"] = float(spacing)
    return sizes, unit


def _placement(path: Path, ndim: int) -> dict[str, Any]:
    """``scale`` (and ``units``) of a layer of ``ndim`` spatial axes (z, y, x) from the TIFF's header."""
    sizes, unit = tiff_pixel_size(path)
    if not sizes:
        return {}
    scale = tuple(sizes.get(a, 1.0) for a in "zyx")[-ndim:]  # an OME-TIFF may declare some axes only
    name = known_unit((unit or "").replace("\\u00B5", "µ"))
    return {"scale": scale, **({"units": (name,) * ndim} if name else {})}


def read_tiff(path: Path) -> LayerData:
    """One TIFF output of ``biounet predict`` as a layer (read whole: ``predict`` wrote it from memory)."""
    match = _TIFF.match(path.name)
    if match is None:
        raise DataError(f"{path} is not an output of biounet predict (*_membrane.tif, *_mask.tif, *_labels.tif)")
    kind = match.group("kind").lower()
    pixels = read_image_file(path)
    kwargs: dict[str, Any] = {"name": path.name.rsplit(".", 1)[0]}
    if kind == "_probs":  # (Z, C, Y, X), or (C, Y, X) for one slice: one layer per class
        kwargs |= {"channel_axis": pixels.ndim - 3, "contrast_limits": (0.0, 1.0)}
        kwargs |= _placement(path, pixels.ndim - 1)
        return pixels.astype(np.float32, copy=False), kwargs, "image"
    kwargs |= _placement(path, pixels.ndim)
    if kind == "_membrane":
        kwargs |= {"colormap": "magma", "contrast_limits": (0.0, 1.0)}
        return pixels.astype(np.float32, copy=False), kwargs, "image"
    if not np.issubdtype(pixels.dtype, np.integer):
        raise DataError(f"{path} holds {pixels.dtype} values; a biounet mask or labels file holds integers")
    return pixels, kwargs, TIFF_OUTPUTS[kind]


# --- OME-Zarr stores of the block-wise path --------------------------------------------------------


def _multiscale(attrs: dict[str, Any], where: str) -> dict[str, Any]:
    """The first ``multiscales`` entry of a group's attributes (NGFF 0.5 nests them under "ome")."""
    entries = attrs.get("ome", attrs).get("multiscales")
    if not isinstance(entries, list) or not entries or not entries[0].get("datasets"):
        raise DataError(f"{where} has no OME-NGFF multiscales metadata; it is damaged: predict it again")
    return dict(entries[0])


def _placement_ngff(multiscale: dict[str, Any]) -> dict[str, Any]:
    """``scale``, ``translate``, ``units`` and ``axis_labels`` of level 0 from NGFF metadata."""
    placed: dict[str, Any] = {}
    for transform in multiscale["datasets"][0].get("coordinateTransformations", []):
        if transform.get("type") == "scale":
            placed["scale"] = tuple(transform["scale"])
        elif transform.get("type") == "translation":
            placed["translate"] = tuple(transform["translation"])
    axes = multiscale.get("axes", [])
    if axes and all(isinstance(a, dict) for a in axes):
        placed["axis_labels"] = tuple(str(a.get("name")) for a in axes)
        units = [known_unit(a.get("unit")) for a in axes]
        if all(units):
            placed["units"] = tuple(units)
    return placed


def _levels(group: Path, multiscale: dict[str, Any]) -> list[Any]:
    """Every pyramid level of ``group`` as a Dask array: nothing is read until napari shows a part."""
    import dask.array as da
    import zarr

    return [da.from_zarr(zarr.open_array(group / d["path"], mode="r")) for d in multiscale["datasets"]]


def _layer(group: Path, attrs: dict[str, Any], kwargs: dict[str, Any], kind: str) -> LayerData:
    multiscale = _multiscale(attrs, str(group))
    levels = _levels(group, multiscale)
    if kind == "image" and levels[0].dtype == np.uint8:  # stored as round(p x 255): shown as probability
        levels = [level.astype(np.float32) / np.float32(255.0) for level in levels]
    data = levels if len(levels) > 1 else levels[0]
    return data, {**kwargs, "multiscale": len(levels) > 1, **_placement_ngff(multiscale)}, kind


def read_store(path: Path) -> list[LayerData]:
    """The membrane probability and the label images of a biounet OME-Zarr store, lazily."""
    import warnings

    attrs = _store_attrs(path)
    if attrs is None or not isinstance(attrs.get("biounet"), dict):
        raise DataError(f"{path} is not an OME-Zarr store written by biounet predict")
    stem = path.name[: -len(STORE_SUFFIX)]
    if not attrs["biounet"].get("complete", False):
        warnings.warn(
            f"{path} is incomplete (its prediction is running or was stopped): blocks not yet written show "
            f"as 0 and only the full resolution may be there; run the same biounet predict again to finish it",
            stacklevel=2,
        )
    image = {"name": f"{stem} membrane", "colormap": "magma", "contrast_limits": (0.0, 1.0)}
    try:
        layers = [_layer(path, attrs, image, "image")]
        label_attrs = _store_attrs(path / "labels") or {}
        for name in label_attrs.get("ome", label_attrs).get("labels", []):
            group = path / "labels" / str(name)
            layers.append(_layer(group, _store_attrs(group) or {}, {"name": f"{stem} {name}"}, "labels"))
    except DataError:
        raise
    except (OSError, ValueError, KeyError) as exc:  # zarr's and dask's errors for a damaged store
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise DataError(
            f"cannot read {path} ({type(exc).__name__}: {first}); it is damaged: predict it again"
        ) from None
    return layers
