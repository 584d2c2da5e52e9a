"""What an image file says about itself: a TIFF's pixel size and unit (ImageJ or OME metadata), the names
each format gives a length unit, and a Zarr group's attributes. Headers only: no pixel is read.

One rule set for every reader of a calibration (``predict`` carrying it to its outputs, lazy volumes, the
napari reader), so that a file means the same thing to all of them.
"""

from __future__ import annotations

import json
import math
import warnings
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, TypeGuard

import numpy as np

from biounet.core.errors import DataError

TIFF_SUFFIXES = (".tif", ".tiff")
# every spelling of micrometre met in headers: ImageJ's own, ASCII, the micro sign and the Greek mu, and the
# micro sign as Fiji escapes it; all read as "micron", the one ImageJ's ASCII-only header can hold
MICRON_SPELLINGS = frozenset({"micron", "um", "µm", "μm", "\\u00B5m", "\\u00b5m"})
# units that say "not calibrated": ImageJ's default and OME's non-physical lengths
UNCALIBRATED = frozenset({"", "pixel", "pixels", "reference frame"})
OME_DEFAULT_UNIT = "µm"  # the OME schema's default for PhysicalSizeX/Y/Z
# length units by their name here: (power of ten of a metre, OME symbol, OME-NGFF name)
_LENGTHS = {
    "pm": (-12, "pm", "picometer"),
    "Å": (-10, "Å", "angstrom"),
    "nm": (-9, "nm", "nanometer"),
    "micron": (-6, "µm", "micrometer"),
    "mm": (-3, "mm", "millimeter"),
    "cm": (-2, "cm", "centimeter"),
    "m": (0, "m", "meter"),
}
_BY_NGFF_NAME = {ngff: name for name, (_, _, ngff) in _LENGTHS.items()}


class PixelSize(NamedTuple):
    """An image's calibration: pixel width and height, slice spacing (None when not declared), unit."""

    x: float
    y: float
    z: float | None
    unit: str


def unit_name(unit: str) -> str:
    """The name of a unit here: ``micron`` for any micrometre spelling, ``nm`` for ``nanometer`` (OME-NGFF
    names become symbols), any other unit as given."""
    return "micron" if unit in MICRON_SPELLINGS else _BY_NGFF_NAME.get(unit, unit)


def imagej_unit(unit: str) -> str | None:
    """The unit as ImageJ's header holds it (ASCII only): micrometre spellings -> ``micron``; None for any
    other non-ASCII unit (the ImageJ writer cannot encode it)."""
    name = unit_name(unit)
    return name if name.isascii() else None


def ome_unit(unit: str) -> str | None:
    """The OME schema's symbol of a length unit (``micron`` -> ``µm``); None for one it does not name."""
    entry = _LENGTHS.get(unit_name(unit))
    return entry[1] if entry else None


def known_unit(unit: str | None) -> str | None:
    """The OME-NGFF name of a spatial unit ("nm" -> "nanometer", "µm" -> "micrometer"); None for an
    unknown one (e.g. "pixel")."""
    if not unit:
        return None
    from ome_zarr.axes import KNOWN_SPATIAL_UNITS  # here: ome_zarr takes seconds to import

    entry = _LENGTHS.get(unit_name(unit))
    name = entry[2] if entry else unit
    return name if name in KNOWN_SPATIAL_UNITS else None


def _positive(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if _positive(value) else None


def _in_unit(value: float, unit: str, target: str) -> float:
    """``value`` of ``unit`` in ``target`` when both are lengths of known size, else as it is."""
    if unit == target or unit not in _LENGTHS or target not in _LENGTHS:
        return value
    return value * 10.0 ** (_LENGTHS[unit][0] - _LENGTHS[target][0])


def _ome_pixel_size(xml: str) -> PixelSize | None:
    """From the first image's PhysicalSizeX/Y/Z, in the unit of the first axis declared; an axis not declared
    is 1.0 (x, y) or None (z). None when no axis is declared."""
    try:
        pixels = ElementTree.fromstring(xml).find(".//{*}Pixels")
    except ElementTree.ParseError:
        return None
    if pixels is None:
        return None
    units = {axis: pixels.get(f"PhysicalSize{axis}Unit") for axis in "XYZ"}
    # an axis without a unit of its own has the one the file names for another (writers often name X's
    # only, meaning it for all), else the schema's default
    named = next((unit for unit in units.values() if unit), OME_DEFAULT_UNIT)
    declared: dict[str, tuple[float, str]] = {}
    for axis in "XYZ":
        value, unit = _number(pixels.get(f"PhysicalSize{axis}")), unit_name(units[axis] or named)
        if value is not None and unit not in UNCALIBRATED:
            declared[axis.lower()] = (value, unit)
    if not declared:
        return None
    target = next(iter(declared.values()))[1]
    sizes = {axis: _in_unit(value, unit, target) for axis, (value, unit) in declared.items()}
    return PixelSize(sizes.get("x", 1.0), sizes.get("y", 1.0), sizes.get("z"), target)


def _imagej_pixel_size(meta: dict[str, Any], resolution: tuple[float, float]) -> PixelSize | None:
    """From ImageJ's unit, spacing and the page's resolution (pixels per unit; tifffile parsed the numbers)."""
    unit, spacing = meta.get("unit"), meta.get("spacing")
    x, y = resolution
    if not isinstance(unit, str) or unit in UNCALIBRATED or not (_positive(x) and _positive(y)):
        return None
    # ImageJ's header is ASCII: a raw non-ASCII unit other than µm cannot be carried over, so none is
    if (name := imagej_unit(unit)) is None:
        return None
    return PixelSize(1 / x, 1 / y, float(spacing) if _positive(spacing) else None, name)


def tiff_pixel_size(tif: Any) -> PixelSize | None:
    """The calibration an open ``tifffile.TiffFile`` declares: OME-XML's PhysicalSize* first, else ImageJ's
    resolution, spacing and unit (what Fiji writes); None when it declares none (no unit, ``pixel``)."""
    with warnings.catch_warnings():  # tifffile warns about metadata it cannot parse: then there is none
        warnings.simplefilter("ignore")
        if tif.is_ome and tif.ome_metadata and (size := _ome_pixel_size(tif.ome_metadata)) is not None:
            return size
        if not len(tif.pages):  # a damaged file: the pixels' reader says what is wrong with it
            return None
        meta = (tif.imagej_metadata if tif.is_imagej else None) or {}
        return _imagej_pixel_size(meta, tif.pages.first.resolution)


def read_pixel_size(path: str | Path) -> PixelSize | None:
    """The calibration a TIFF file declares (:func:`tiff_pixel_size`); None for another file or one whose
    header cannot be read (the pixels' reader says what is wrong with it)."""
    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        return None
    import tifffile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with tifffile.TiffFile(path) as tif:
                return tiff_pixel_size(tif)
    except (OSError, ValueError):  # tifffile's TiffFileError is a ValueError
        return None


def read_zarr_attrs(path: str | Path) -> dict[str, Any] | None:
    """The attributes of the Zarr group at ``path`` (v3: zarr.json; v2: .zattrs beside .zgroup, {} without
    one), read as plain JSON: no zarr call, which could write. None when ``path`` is not a group (an
    array, a plain folder) or its metadata is unreadable."""
    path = Path(path)
    try:
        if (path / "zarr.json").is_file():
            meta = json.loads((path / "zarr.json").read_text(encoding="utf-8"))
            is_group = isinstance(meta, dict) and meta.get("node_type") == "group"
            attrs = meta.get("attributes", {}) if is_group else None
        elif (path / ".zgroup").is_file():
            zattrs = path / ".zattrs"
            attrs = json.loads(zattrs.read_text(encoding="utf-8")) if zattrs.is_file() else {}
        else:
            return None
    except (OSError, ValueError):  # a damaged file, or one that is not UTF-8 (UnicodeDecodeError)
        return None
    return dict(attrs) if isinstance(attrs, dict) else None


def declared_shape(source: str | Path | BinaryIO, fmt: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and pixel type the header of a TIFF (``fmt`` "tiff") or another image (``fmt`` "png", or
    "image" for whatever PIL recognises) declares, nothing decoded; ``source`` is a path or a binary file
    object. A TIFF without pages, or one whose first page lists fewer strips than it declares, is a
    DataError."""
    if fmt == "tiff":
        import tifffile

        with tifffile.TiffFile(source) as tif:
            if not tif.series:
                raise DataError(f"{_name(source)} holds no image; save it with at least one page")
            series = tif.series[0]
            shape = tuple(int(n) for n in series.shape)
            if min(shape, default=0) > 0:  # an empty page has no strips to count (the callers refuse it)
                page = tif.pages.first
                # a damaged header may declare far more strips than it lists offsets for; decoding would first
                # build a tuple of every declared strip (found by the fuzzer: 1.8e9 of them, a MemoryError)
                declared, listed = math.prod(page.chunked), len(page.dataoffsets)
                if declared != listed:
                    raise DataError(
                        f"{_name(source)} is damaged: its header declares {declared} strips or tiles but lists "
                        f"{listed}; save the image again from its source"
                    )
            return shape, np.dtype(series.dtype)
    from PIL import Image

    with Image.open(source, formats=["PNG"] if fmt == "png" else None) as img:
        bands = len(img.getbands())
        dtype = np.dtype(np.uint16 if img.mode.startswith("I;16") else np.int32 if img.mode in ("I", "F") else np.uint8)
        return (img.height, img.width) + ((bands,) if bands > 1 else ()), dtype


def _name(source: str | Path | BinaryIO) -> str:
    return str(source) if isinstance(source, (str, Path)) else "the image"
