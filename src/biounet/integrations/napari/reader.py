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

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from biounet.core.errors import DataError
from biounet.data.readers import read_image_file
from biounet.io.metadata import known_unit, read_pixel_size, read_zarr_attrs

LayerData = tuple[Any, dict[str, Any], str]
# the file name endings of `biounet predict`'s outputs -> the layer type they open as
TIFF_OUTPUTS = {"_membrane": "image", "_probs": "image", "_mask": "labels", "_labels": "labels"}
_TIFF = re.compile(r"^(?P<stem>.+?)(?P<kind>_membrane|_probs|_mask|_labels)\.tiff?$", re.IGNORECASE)
STORE_SUFFIX = ".ome.zarr"


def is_output(path: str | Path) -> bool:
    """Whether ``path`` is a biounet output this reader opens (by name; a store also by its metadata)."""
    path = Path(path)
    if path.name.lower().endswith(STORE_SUFFIX) and path.is_dir():
        attrs = read_zarr_attrs(path)
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


def _placement(path: Path, ndim: int) -> dict[str, Any]:
    """``scale`` (and ``units``) of a layer of ``ndim`` spatial axes (z, y, x) from the TIFF's header."""
    size = read_pixel_size(path)
    if size is None:
        return {}
    scale = (size.z or 1.0, size.y, size.x)[-ndim:]  # no slice spacing declared: 1
    name = known_unit(size.unit)
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

    attrs = read_zarr_attrs(path)
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
        label_attrs = read_zarr_attrs(path / "labels") or {}
        for name in label_attrs.get("ome", label_attrs).get("labels", []):
            group = path / "labels" / str(name)
            layers.append(_layer(group, read_zarr_attrs(group) or {}, {"name": f"{stem} {name}"}, "labels"))
    except DataError:
        raise
    except (OSError, ValueError, KeyError) as exc:  # zarr's and dask's errors for a damaged store
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise DataError(
            f"cannot read {path} ({type(exc).__name__}: {first}); it is damaged: predict it again"
        ) from None
    return layers
