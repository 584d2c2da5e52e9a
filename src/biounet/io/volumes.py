"""Lazy readers for volumes too big for memory: Zarr (v2, v3), OME-Zarr, HDF5 and TIFF, read region by region.

Specs: ``PATH.zarr[/inner/array]``, ``PATH.ome.zarr``, ``PATH.h5[:/dataset]`` (.hdf5, .hdf), ``PATH.tif``; opening
reads metadata only, :meth:`Volume.read` only the chunks (TIFF: pages or tiles) it needs. Axes: letters from
t, c, z, y, x, once each, y and x required; t must have length 1, c gives the channels; ``Volume.shape`` is
(z, y, x). Level: the OME-Zarr (or pyramidal TIFF) resolution level, 0 = full. Value range (what maps to -1
and +1, as ``scale_image``): (0, 1) for bool, the type's range for integers, the slice's finite min/max for floats.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from biounet.core.errors import BiounetError, ConfigError, DataError
from biounet.io.metadata import known_unit, tiff_pixel_size

AXIS_LETTERS = "tczyx"
# tifffile's series axes -> ours: Q (unknown) and I (image sequence) are taken as the z of a page stack
TIFF_AXES = {"Z": "z", "Q": "z", "I": "z", "Y": "y", "X": "x", "S": "c", "C": "c", "T": "t"}
BAND_BYTES = 64 * 2**20  # the most stored pixel bytes value_range reads at once
_ZARR = re.compile(r"^(?P<file>.+?\.zarr)(?:/(?P<inner>.*))?$", re.IGNORECASE)
_HDF5 = re.compile(r"^(?P<file>.+?\.(?:h5|hdf5|hdf))(?::(?P<inner>.*))?$", re.IGNORECASE)
_TIFF = re.compile(r"\.tiff?$", re.IGNORECASE)
_ROI_PART = re.compile(r"^\s*(?P<start>-?\d+)?\s*(?P<colon>:\s*(?P<stop>-?\d+)?\s*)?$")


class _Found(NamedTuple):
    """An opened array and what its file says about it."""

    array: Any  # a zarr.Array or h5py.Dataset: slices like NumPy, reads only what is sliced
    close: Any  # releases the file: () -> None
    array_path: str  # where the array lies in the file (a reopen goes straight there)
    axes: str | None  # the axes its metadata declares, if any
    voxel: dict[str, float] | None  # axis letter -> voxel size, if known
    unit: str | None


def is_volume_spec(spec: str) -> bool:
    """True for ``PATH.zarr[/inner]`` (OME-Zarr included) and ``PATH.h5[:/dataset]`` (.hdf5, .hdf); TIFF is
    not a volume by this test (the caller decides whether a TIFF is read whole or as a volume)."""
    return bool(_ZARR.match(spec) or _HDF5.match(spec))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _listed(names: list[str], what: str) -> str:
    if not names:
        return f"it holds no {what}"
    more = f" and {len(names) - 10} more" if len(names) > 10 else ""
    return f"{what} inside: {', '.join(sorted(names)[:10])}{more}"


def _check_level(level: int, levels: int, shown: str) -> None:
    if not 0 <= level < levels:
        raise ConfigError(f"{shown} has {levels} resolution level(s), not {level}; choose 0..{levels - 1} (0 = full)")


def _zarr_arrays(store: Any, inner: str) -> list[str]:
    import zarr

    try:
        group = zarr.open_group(store=store, path=inner, mode="r")
        return [name for name, node in group.members(max_depth=None) if isinstance(node, zarr.Array)]
    except (FileNotFoundError, ValueError):  # not a group: nothing to list
        return []


def _ome_metadata(ome: dict[str, Any], level: int, shown: str) -> tuple[str, str | None, Any, str | None]:
    """(dataset path, axes, voxel sizes, unit) of one level of an NGFF 0.4 or 0.5 image's first multiscale."""
    image = ome["multiscales"][0]
    datasets = image.get("datasets", [])
    _check_level(level, len(datasets), shown)
    names = [a["name"] if isinstance(a, dict) else str(a) for a in image.get("axes", [])]
    if any(n not in AXIS_LETTERS or len(n) != 1 for n in names):
        raise DataError(f"{shown} has OME axes {names}; biounet reads axes named t, c, z, y, x only")
    units = [a.get("unit") for a in image.get("axes", []) if isinstance(a, dict) and a.get("name") in ("y", "x")]
    scale = np.ones(len(names))
    found = False
    for transforms in (datasets[level], image):  # the level's scale, times the image's (rarely given)
        for t in transforms.get("coordinateTransformations", []):
            if t.get("type") == "scale" and len(t.get("scale", ())) == len(names):
                scale, found = scale * np.asarray(t["scale"], dtype=float), True
    voxel = dict(zip(names, scale.tolist(), strict=True)) if found else None
    return str(datasets[level]["path"]), "".join(names) or None, voxel, next((u for u in units if u), None)


def _open_zarr(file: Path, inner: str, level: int, shown: str) -> _Found:
    import zarr

    store = zarr.storage.LocalStore(file, read_only=True)
    try:
        node = zarr.open(store=store, path=inner, mode="r")
    except FileNotFoundError:
        if inner:
            listing = _listed(_zarr_arrays(store, ""), "arrays")
            raise DataError(f"{file} holds no array or group {inner!r} ({listing}); check the path") from None
        raise DataError(f"{file} is not a Zarr store (no zarr.json, .zarray or .zgroup); check the path") from None
    if isinstance(node, zarr.Array):
        _check_level(level, 1, shown)
        return _Found(node, store.close, inner, None, None, None)
    attrs: dict[str, Any] = node.attrs.asdict()
    ome = attrs["ome"] if isinstance(attrs.get("ome"), dict) else attrs  # NGFF 0.5 nests its metadata in "ome"
    if "multiscales" not in ome:
        where = f"{file}/{inner}" if inner else str(file)
        listing = _listed(_zarr_arrays(store, inner), "arrays")
        raise ConfigError(
            f"{where} is a Zarr group, neither an array nor an OME-Zarr image ({listing}); name one: {where}/ARRAY"
        )
    path, axes, voxel, unit = _ome_metadata(ome, level, shown)  # malformed: _open_guarded's DataError
    array = node.get(path)
    if not isinstance(array, zarr.Array):
        raise DataError(f"{shown}: level {level}'s array {path!r}, named by its OME metadata, is missing; re-copy it")
    return _Found(array, store.close, f"{inner}/{path}" if inner else path, axes, voxel, unit)


def _h5_datasets(group: Any) -> list[str]:
    import h5py

    names: list[str] = []
    group.visititems(lambda name, node: names.append(name) if isinstance(node, h5py.Dataset) else None)
    return names


def _open_hdf5(file: Path, inner: str, level: int, shown: str) -> _Found:
    import h5py

    if not h5py.is_hdf5(file):
        raise DataError(f"{file} is not an HDF5 file (no HDF5 signature); check the path or convert the file")
    _check_level(level, 1, shown)
    try:
        h5 = h5py.File(file, "r")
    except OSError as exc:
        raise DataError(f"{file} cannot be opened as HDF5 ({_one_line(exc)}); the file is damaged") from None
    try:
        if not inner:
            found = _h5_datasets(h5)
            listing = _listed(found, "datasets")
            if len(found) != 1:
                raise ConfigError(f"{file} holds {len(found)} datasets ({listing}); name one: {file}:/DATASET")
            inner = found[0]
        node = h5.get(inner)
        if node is None:
            raise DataError(f"{file} holds no dataset /{inner} ({_listed(_h5_datasets(h5), 'datasets')}); check it")
        if not isinstance(node, h5py.Dataset):
            listing = _listed(_h5_datasets(node), "datasets")
            raise ConfigError(f"{file}:/{inner} is an HDF5 group ({listing}); name one: {file}:/{inner}/DATASET")
    except BaseException:
        h5.close()
        raise
    return _Found(node, h5.close, inner, None, None, None)


def _tiff_voxel(tif: Any) -> tuple[dict[str, float] | None, str | None]:
    """The TIFF's calibration (metadata.tiff_pixel_size: OME or ImageJ) as voxel sizes and an OME-NGFF unit
    name (a unit without one as it is); z is 1 when no slice spacing is declared."""
    size = tiff_pixel_size(tif)
    if size is None:
        return None, None
    return {"z": size.z or 1.0, "y": size.y, "x": size.x}, known_unit(size.unit) or size.unit


def _open_tiff(file: Path, inner: str, level: int, shown: str) -> _Found:
    import tifffile
    import zarr

    try:
        tif = tifffile.TiffFile(file)
    except (OSError, ValueError) as exc:  # TiffFileError is a ValueError
        raise DataError(f"{file} is not a readable TIFF ({_one_line(exc)}); check the path or the file") from None
    try:
        if not tif.series:
            raise DataError(f"{file} holds no image; check the file")
        series = tif.series[0]
        _check_level(level, len(series.levels), shown)
        array = zarr.open(store=series.aszarr(level=level), mode="r")
        axes = "".join(TIFF_AXES.get(letter, letter) for letter in series.axes)
        voxel, unit = _tiff_voxel(tif)
    except BaseException:
        tif.close()
        raise
    return _Found(array, tif.close, "", axes, voxel, unit)


_OPENERS = {"zarr": _open_zarr, "hdf5": _open_hdf5, "tiff": _open_tiff}  # (file, inner, level, shown) -> _Found


def _resolve_axes(found: _Found, given: str | None, shape: tuple[int, ...], shown: str, kind: str) -> str:
    """The stored array's axes: the OME metadata's (``given`` must agree), ``given`` (for a TIFF it overrides
    tifffile's letters, which are guesses for plain stacks), the TIFF's, or yx / zyx for 2 / 3 dimensions."""
    meta = found.axes
    if given and meta and given != meta and kind != "tiff":
        raise ConfigError(f"--axes {given} contradicts {shown}'s OME metadata ({meta}); drop --axes or pass {meta}")
    axes = given or meta or {2: "yx", 3: "zyx"}.get(len(shape))
    source = f"--axes {given}" if given else f"the axes {axes} of its metadata" if meta else "--axes"
    fix = "pass --axes with one letter per dimension from t, c, z, y, x, e.g. --axes czyx"
    if axes is None:
        raise ConfigError(f"{shown} has {len(shape)} dimensions {shape} and no axis metadata; {fix}")
    bad, twice = sorted(set(axes) - set(AXIS_LETTERS)), sorted({a for a in axes if axes.count(a) > 1})
    problems = [
        f"has unknown letter(s) {', '.join(bad)}" * bool(bad),
        f"repeats {', '.join(twice)}" * bool(twice),
        f"has {len(axes)} letters for {len(shape)} dimensions {shape}" * (len(axes) != len(shape)),
        "lacks y or x" * (not {"y", "x"} <= set(axes)),
    ]
    if any(problems):
        raise ConfigError(f"{source} {next(p for p in problems if p)} ({shown}); {fix}")
    return axes


def _open_guarded(kind: str, file: Path, inner: str, level: int, spec: str) -> _Found:
    """The opener of ``kind``; whatever the libraries raise on damaged metadata becomes a DataError."""
    try:
        return _OPENERS[kind](file, inner, level, spec)
    except BiounetError:
        raise
    except Exception as exc:  # zarr, h5py, tifffile and json raise many kinds on a damaged store
        raise DataError(f"{spec}: its metadata is damaged or unreadable ({_one_line(exc)}); repair it") from None


def open_volume(spec: str, level: int = 0, axes: str | None = None) -> Volume:
    """Open a volume lazily (see the module docstring for specs, axes and levels); reads metadata only."""
    match = _ZARR.match(spec) or _HDF5.match(spec)
    if match is None and not _TIFF.search(spec):
        raise ConfigError(f"{spec} is not a volume: expected PATH.zarr[/ARRAY], PATH.h5[:/DATASET] or PATH.tif")
    kind = "tiff" if match is None else "zarr" if match.re is _ZARR else "hdf5"
    file = Path(match["file"] if match else spec).expanduser()
    inner = (match["inner"] or "").strip("/") if match else ""
    if not file.exists():
        raise DataError(f"{file} does not exist; check the path")
    stem = re.sub(r"(\.ome)?\.(zarr|tiff?|h5|hdf5|hdf)$", "", file.name, flags=re.IGNORECASE)
    name = f"{stem}_{inner.replace('/', '_')}" if inner else stem
    found = _open_guarded(kind, file, inner, level, spec)
    try:
        shape = tuple(int(n) for n in found.array.shape)
        chosen = _resolve_axes(found, axes, shape, spec, kind)
        sizes = dict(zip(chosen, shape, strict=True))
        dtype = np.dtype(found.array.dtype)
        if 0 in shape:
            raise DataError(f"{spec} has shape {shape} ({chosen}): a 0-length axis holds no pixels; check the volume")
        if sizes.get("t", 1) != 1:
            raise ConfigError(f"{spec} has {sizes['t']} time points; write the one to segment to its own array")
        if dtype.kind not in "biuf":
            raise DataError(f"{spec} holds {dtype} pixels; expected integer, float or bool: convert the volume")
        chunks = getattr(found.array, "chunks", None)  # None: an unchunked HDF5 dataset
        voxel = found.voxel or {}
        voxel_size = (voxel.get("z", 1.0), voxel["y"], voxel["x"]) if {"y", "x"} <= set(voxel) else None
    except BaseException:
        found.close()
        raise
    shape3, channels = (sizes.get("z", 1), sizes["y"], sizes["x"]), sizes.get("c", 1)
    source = (kind, file, found.array_path, level if kind == "tiff" else 0)
    rows = int(chunks[chosen.index("y")]) if chunks else 0
    volume = Volume(spec, name, shape3, channels, dtype, voxel_size, found.unit, chosen, level, source, rows)
    volume._handle = (found.array, found.close, os.getpid())  # the file open now serves the first reads
    return volume


def _span(s: slice, size: int, axis: str) -> slice:
    start, stop = 0 if s.start is None else int(s.start), size if s.stop is None else int(s.stop)
    if s.step not in (None, 1) or not 0 <= start <= stop <= size:
        raise IndexError(f"{axis} range {s} is not a plain range inside 0..{size}")
    return slice(start, stop)


@dataclass(eq=False)
class Volume:
    """A volume opened lazily: metadata at once, the pixels of one z slice region per :meth:`read`. shape is
    (z, y, x) (z = 1 for 2D), channels the c axis' length, voxel_size (z, y, x) in ``unit`` (OME or ImageJ
    metadata) or None, axes the stored array's. Picklable: each process reopens the file on its first read."""

    spec: str
    name: str
    shape: tuple[int, int, int]
    channels: int
    dtype: np.dtype
    voxel_size: tuple[float, float, float] | None
    unit: str | None
    axes: str
    level: int
    _source: tuple[str, Path, str, int] = field(repr=False)  # (kind, file, array path in it, level to reopen)
    _chunk_rows: int = field(repr=False)  # rows per stored chunk (0: unchunked), to align value_range's bands

    def __post_init__(self) -> None:
        self._ranges: dict[int, tuple[float, float]] = {}
        self._handle: tuple[Any, Any, int] | None = None  # (array, close, process id) of the open file
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:  # an open file cannot travel: the copy reopens its own
        return {key: value for key, value in self.__dict__.items() if key not in ("_handle", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._handle, self._lock = None, threading.Lock()

    @property
    def source_path(self) -> str:  # the resolved file, the array in it and the level: however it was named
        return f"{self._source[1].resolve()}:{self._source[2]}@{self._source[3]}"

    def close(self) -> None:  # release the open file (a later read reopens it)
        with self._lock:
            if self._handle is not None and self._handle[2] == os.getpid():
                self._handle[1]()
            self._handle = None

    def _array(self) -> Any:
        with self._lock:
            # a handle inherited through fork belongs to the parent (h5py is not fork-safe): open anew
            if self._handle is None or self._handle[2] != os.getpid():
                kind, file, inner, level = self._source
                found = _open_guarded(kind, file, inner, level, self.spec)
                self._handle = (found.array, found.close, os.getpid())
            return self._handle[0]

    def read(self, z: int, y: slice, x: slice) -> np.ndarray:
        """Raw pixels of slice ``z``, rows ``y``, columns ``x`` (None bounds: 0 / the end) as a 2D image file
        gives them: (h, w) grey or (h, w, C), the stored dtype. A store that fails to decode (a corrupt chunk,
        an unreadable file) raises DataError."""
        ys, xs = _span(y, self.shape[1], "y"), _span(x, self.shape[2], "x")
        if not 0 <= z < self.shape[0]:
            raise IndexError(f"z={z} is outside {self.name}'s 0..{self.shape[0] - 1}")
        pick: dict[str, int | slice] = {"t": 0, "c": slice(None), "z": z, "y": ys, "x": xs}
        array = self._array()  # a file that cannot be reopened is a DataError of its own
        try:
            block = np.asarray(array[tuple(pick[a] for a in self.axes)])
        except Exception as exc:  # codecs raise what they like: zstd RuntimeError, zlib.error, h5py OSError...
            raise DataError(
                f"{self.name} ({self.spec}): reading z={z}, y {ys.start}:{ys.stop}, x {xs.start}:{xs.stop} failed "
                f"({type(exc).__name__}: {_one_line(exc)}); the store is damaged (a corrupt chunk or an unreadable "
                f"file): copy or export the volume again"
            ) from exc
        kept = [a for a in self.axes if a in "cyx"]
        block = block.transpose([kept.index(a) for a in "yxc" if a in kept])
        return np.ascontiguousarray(block[..., 0] if "c" in kept and self.channels == 1 else block)

    def value_range(self, z: int) -> tuple[float, float]:
        """What maps to -1 and +1 when slice ``z`` is scaled: (0, 1) for bool, the type's range for integers,
        the slice's finite min and max for floats (read in row bands of at most BAND_BYTES, cached per z)."""
        if self.dtype == bool:
            return 0.0, 1.0
        if self.dtype.kind in "iu":
            return float(np.iinfo(self.dtype).min), float(np.iinfo(self.dtype).max)
        if z in self._ranges:
            return self._ranges[z]
        rows = max(1, BAND_BYTES // (self.shape[2] * self.channels * self.dtype.itemsize))
        if self._chunk_rows and rows >= self._chunk_rows:
            rows -= rows % self._chunk_rows  # whole chunks per band: none is decoded twice
        lo, hi, bad = np.inf, -np.inf, 0
        for y0 in range(0, self.shape[1], rows):
            band = self.read(z, slice(y0, min(y0 + rows, self.shape[1])), slice(None))
            finite = np.isfinite(band)
            bad += band.size - int(np.count_nonzero(finite))
            values = band[finite]
            lo, hi = float(values.min(initial=lo)), float(values.max(initial=hi))
        if bad:
            raise DataError(f"{self.name} slice z={z} has {bad} NaN or infinite pixel(s); fill them and write it again")
        self._ranges[z] = (float(lo), float(hi))
        return self._ranges[z]


def parse_roi(text: str, shape: tuple[int, int, int]) -> tuple[slice, slice, slice]:
    """``--roi z0:z1,y0:y1,x0:x1`` -> three slices with concrete bounds (Python-style, each bound optional,
    a single number N means N:N+1; two parts are y, x over all z). Empty, reversed, negative or
    out-of-volume ranges are ConfigErrors naming the volume's shape."""
    parts = [":"] * (text.count(",") == 1) + text.split(",")  # y, x alone: all z

    def fail(problem: str) -> ConfigError:
        return ConfigError(
            f"--roi {text!r} {problem}; the volume is {shape[0]} x {shape[1]} x {shape[2]} voxels (z, y, x): give "
            f"z0:z1,y0:y1,x0:x1 with 0 <= start < stop <= size, e.g. 0:{shape[0]},0:{shape[1]},0:{shape[2]}"
        )

    if len(parts) != 3:
        raise fail(f"has {len(parts)} comma-separated parts, not 3 (z, y, x) or 2 (y, x)")
    out = []
    for part, size, axis in zip(parts, shape, "zyx", strict=True):
        match = _ROI_PART.match(part)
        if match is None or not (match["start"] or match["colon"]):
            raise fail(f"has {axis} range {part.strip()!r}, not START:STOP")
        if max(len(match["start"] or ""), len(match["stop"] or "")) > 18:
            raise fail(f"has a {axis} bound of more than 18 digits")
        start = int(match["start"]) if match["start"] else 0
        stop = (int(match["stop"]) if match["stop"] else size) if match["colon"] else start + 1
        if start < 0 or stop < 0:
            raise fail(f"has a negative {axis} bound")
        if start >= stop:
            raise fail(f"has an empty or reversed {axis} range {start}:{stop}")
        if stop > size:
            raise fail(f"reaches {axis} = {stop}, outside the volume")
        out.append(slice(start, stop))
    return out[0], out[1], out[2]
