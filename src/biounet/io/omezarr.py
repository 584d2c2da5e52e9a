"""The OME-Zarr output store of block-wise prediction: written block by block, resumable after a kill.

Layout of ``DIR/<stem>.ome.zarr`` (OME-NGFF 0.5 on Zarr v3 by default, 0.4 on Zarr v2 when asked)::

    (root group)    attrs: NGFF ``multiscales`` (axes z, y, x of type space, the unit when known; per level
                    a scale, and a translation for a region of interest) and ``biounet``: {format, spec,
                    fingerprint, complete, finished_levels, done}
    0, 1, 2, ...    the membrane probability (uint8 = round(p x 255), float16 or float32); level 0 at full
                    resolution, each next level halving y and x (not z: EM is anisotropic) by a 2x2 mean
                    (of the pixels present at an odd edge; rounded for uint8) until y and x are both
                    <= min(2 chunks, 256 pixels)
    labels/         attrs ``labels``; "mask" (uint8 0/1) and optionally "cells" (uint32 / uint64), each a
                    group with levels 0, 1, ... (every second pixel in y and x), ``multiscales`` and
                    ``image-label`` metadata
    .biounet/done/  one empty file per finished unit of work (``mark_done("b_0_3_2")``)

``open`` builds a new store in a temporary sibling ``.<name>.tmp-<host>-<pid>`` (level 0 of every array
and its NGFF metadata, so a half-written store already opens in viewers) and renames it into place: a
store at the final path always carries its ``biounet`` attributes, and a killed creation leaves only a
temporary folder that the next ``open`` removes. "Complete": ``finish()`` wrote every pyramid level (each
recorded in ``finished_levels``: a killed ``finish()`` resumes there), the metadata, ``biounet.complete``.

Done records are one file per key, not a shared JSON list: creating a file is atomic, so processes
writing disjoint blocks (Dask workers) record their work without locks or lost updates.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from ome_zarr.format import Format, FormatV04, FormatV05
from ome_zarr.writer import write_label_metadata, write_multiscales_metadata

from biounet.core.errors import ConfigError
from biounet.core.system import process_alive
from biounet.io.metadata import known_unit, read_zarr_attrs

FORMAT_VERSION = 1  # of biounet's bookkeeping in attrs["biounet"]
IMAGE_DTYPES = ("uint8", "float16", "float32")
LABEL_NAMES = ("mask", "cells")
COMPRESSIONS = ("zstd", "lz4", "none")
DONE_DIR = ".biounet/done"
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"  # in temporary folder names
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
Region = tuple[slice, slice, slice]


def output_path(out_dir: Path, stem: str) -> Path:
    """The store of input ``stem`` in ``out_dir``."""
    return Path(out_dir) / f"{stem}.ome.zarr"


def _triple(spec_field: str, value: Any, kind: type, minimum: float) -> tuple[Any, ...]:
    if not (isinstance(value, (tuple, list)) and len(value) == 3):
        raise ConfigError(f"{spec_field} {value!r} must hold 3 values (z, y, x); give e.g. (1, 512, 512)")
    if not all(isinstance(v, (int, float) if kind is float else int) and v >= minimum for v in value):
        raise ConfigError(f"{spec_field} {tuple(value)} must hold {kind.__name__}s >= {minimum}; correct it")
    return tuple(kind(v) for v in value)


@dataclass(frozen=True)
class OutputSpec:
    """Everything that fixes the store's layout and content; stored in it and compared on resume."""

    shape: tuple[int, int, int]
    chunks: tuple[int, int, int]
    dtype: str
    labels: tuple[str, ...] = ("mask",)
    cells_dtype: str = "uint32"
    voxel_size: tuple[float, float, float] | None = None
    unit: str | None = None
    origin: tuple[int, int, int] = (0, 0, 0)
    compression: str = "zstd"
    ngff: str = "0.5"
    fingerprint: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        put = object.__setattr__  # frozen: normalise lists to tuples once, here
        put(self, "shape", _triple("shape", self.shape, int, 1))
        put(self, "chunks", _triple("chunks", self.chunks, int, 1))
        put(self, "origin", _triple("origin", self.origin, int, 0))
        if self.voxel_size is not None:
            put(self, "voxel_size", _triple("voxel_size", self.voxel_size, float, 1e-300))
        if self.chunks[1] % 16 or self.chunks[2] % 16:
            raise ConfigError(f"chunks {self.chunks}: y and x must be multiples of 16; give e.g. (1, 512, 512)")
        choices = {"dtype": IMAGE_DTYPES, "cells_dtype": ("uint32", "uint64"), "compression": COMPRESSIONS}
        for name, allowed in {**choices, "ngff": ("0.4", "0.5")}.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} {getattr(self, name)!r} is not one of {', '.join(allowed)}; choose one")
        put(self, "labels", tuple(self.labels))
        if any(n not in LABEL_NAMES for n in self.labels) or len(set(self.labels)) < len(self.labels):
            raise ConfigError(f"labels {self.labels} must be distinct, among {', '.join(LABEL_NAMES)}; drop the others")
        if self.unit is not None:
            if (ngff_unit := known_unit(self.unit)) is None:
                raise ConfigError(f"unit {self.unit!r} is not an OME-NGFF spatial unit; give e.g. 'nanometer'")
            put(self, "unit", ngff_unit)
        try:
            json.dumps(self.fingerprint, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"fingerprint is not JSON-able ({exc}); give strings, numbers, lists, dicts") from None

    def to_json(self) -> dict[str, Any]:
        """The spec as stored (tuples as lists), without the fingerprint."""
        spec = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "fingerprint"}
        return dict(json.loads(json.dumps(spec)))


def pyramid_shapes(spec: OutputSpec) -> list[tuple[int, int, int]]:
    """The (z, y, x) shape of every level: y and x halved (rounded up) while either exceeds min(2 chunks, 256)."""
    limit_y, limit_x = min(2 * spec.chunks[1], 256), min(2 * spec.chunks[2], 256)
    shapes = [spec.shape]
    while shapes[-1][1] > limit_y or shapes[-1][2] > limit_x:
        z, y, x = shapes[-1]
        shapes.append((z, (y + 1) // 2, (x + 1) // 2))
    return shapes


def _render(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _first_difference(stored: dict[str, Any], spec: OutputSpec) -> str | None:
    """'tile 700, not 508' for the first setting (fingerprint first, then the spec) that differs."""
    missing = object()
    old_fp, new_fp = stored.get("fingerprint", {}), json.loads(json.dumps(spec.fingerprint))
    pairs = [(k, old_fp.get(k, missing), new_fp.get(k, missing)) for k in [*new_fp, *old_fp]]
    old_spec, new_spec = stored.get("spec", {}), spec.to_json()
    pairs += [(k, old_spec.get(k, missing), v) for k, v in new_spec.items()]
    for key, old, new in pairs:
        if old != new:
            if old is missing:
                return f"without {key}, not with {key} {_render(new)}"
            if new is missing:
                return f"with {key} {_render(old)}, which is not set now"
            return f"with {key} {_render(old)}, not {_render(new)}"
    return None


def _check_existing(path: Path, spec: OutputSpec) -> None:
    """Refuse, without touching it, anything at ``path`` that is not this spec's biounet store."""
    attrs = read_zarr_attrs(path) if path.is_dir() else None
    if attrs is None or not isinstance(attrs.get("biounet"), dict):
        raise ConfigError(f"{path} exists and is not a biounet output: choose another --out or remove it")
    stored = attrs["biounet"]
    difference = _first_difference(stored, spec)
    if stored.get("format") != FORMAT_VERSION:
        difference = f"with store format {stored.get('format')}, not {FORMAT_VERSION} (another biounet version)"
    if difference is not None:
        raise ConfigError(f"{path} was written {difference}: choose another --out or delete it")


def _remove_stale_builds(path: Path) -> None:
    """Delete the temporary folders of creations on this machine whose process is gone (a kill mid-creation)."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.tmp-{_HOST}-(\d+)")
    for entry in path.parent.iterdir():
        match = pattern.fullmatch(entry.name)
        if match and int(match.group(1)) != os.getpid() and not process_alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)


def _ngff(spec: OutputSpec) -> Format:
    return FormatV05() if spec.ngff == "0.5" else FormatV04()


def _array_options(spec: OutputSpec) -> dict[str, Any]:
    """Compression, chunk-key layout and dimension names as each Zarr version writes them."""
    if _ngff(spec).zarr_format == 2:
        from numcodecs import Blosc

        compressor = None if spec.compression == "none" else Blosc(cname=spec.compression, clevel=5)
        return {"compressors": compressor, "chunk_key_encoding": {"name": "v2", "separator": "/"}}
    from zarr.codecs import BloscCodec, ZstdCodec

    codecs = {"zstd": [ZstdCodec(level=3)], "lz4": [BloscCodec(cname="lz4", clevel=5)], "none": None}
    return {"compressors": codecs[spec.compression], "dimension_names": ["z", "y", "x"]}


class OutputStore:
    """An OME-Zarr prediction store; make it with ``OutputStore.open``. Holds only its path and spec (picklable)."""

    def __init__(self, path: Path, spec: OutputSpec) -> None:
        self.path, self.spec = Path(path), spec

    @classmethod
    def open(cls, path: Path, spec: OutputSpec) -> OutputStore:
        """Create the store at ``path``, or reopen it to resume when it holds this spec and fingerprint."""
        path = Path(path)
        if path.exists() or path.is_symlink():
            _check_existing(path, spec)
            return cls(path, spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_builds(path)
        tmp = path.with_name(f".{path.name}.tmp-{_HOST}-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)  # our own earlier attempt that failed half-way
        try:
            cls(tmp, spec)._create(title=path.name.removesuffix(".ome.zarr"))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        try:
            os.rename(tmp, path)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not path.exists():
                raise
            # a concurrent open() renamed its copy first: checked below like any existing store
        _check_existing(path, spec)
        return cls(path, spec)

    def _names(self) -> tuple[str, ...]:
        return ("image", *self.spec.labels)

    def _group_path(self, name: str) -> str:
        return "" if name == "image" else f"labels/{name}"

    def _dtype(self, name: str) -> str:
        return {"image": self.spec.dtype, "mask": "uint8", "cells": self.spec.cells_dtype}[name]

    def _create(self, title: str) -> None:
        fmt = _ngff(self.spec)
        root = zarr.open_group(self.path, mode="w", zarr_format=fmt.zarr_format)
        spec, fingerprint = self.spec.to_json(), self.spec.fingerprint
        book: dict[str, Any] = {"format": FORMAT_VERSION, "spec": spec, "fingerprint": fingerprint, "complete": False}
        root.attrs["biounet"] = {**book, "finished_levels": [], "done": DONE_DIR}
        root.require_group(".biounet")  # a group, so that zarr's listings of the root accept it
        (self.path / DONE_DIR).mkdir(parents=True)
        self._create_level("image", 0)
        labels = root.require_group("labels") if self.spec.labels else None
        for name in self.spec.labels:
            self._create_level(name, 0)
            write_label_metadata(labels, name, fmt=fmt, source={"image": "../../"})
        self._write_metadata(1, title)

    def _create_level(self, name: str, level: int) -> zarr.Array:
        """A new (emptied, if present) zarr array for ``level`` of image ``name``."""
        group = zarr.open_group(self.path, mode="a", zarr_format=_ngff(self.spec).zarr_format)
        if name != "image":
            group = group.require_group(self._group_path(name))
        return group.create_array(
            str(level),
            shape=pyramid_shapes(self.spec)[level],
            chunks=self.spec.chunks,
            dtype=self._dtype(name),
            fill_value=0,
            overwrite=True,
            **_array_options(self.spec),
        )

    def _array(self, name: str, level: int) -> zarr.Array:
        if name not in self._names():
            raise ValueError(f"no array {name!r} in this store; it holds {', '.join(self._names())}")
        # opened per call (one small metadata read): the store holds no handles, so it pickles to Dask workers
        return zarr.open_array(self.path / self._group_path(name) / str(level), mode="r+")

    def _datasets(self, levels: int) -> list[dict[str, Any]]:
        spec, datasets = self.spec, []
        voxel = spec.voxel_size or (1.0, 1.0, 1.0)
        for level in range(levels):
            scale = [voxel[0], voxel[1] * 2**level, voxel[2] * 2**level]
            transforms: list[dict[str, Any]] = [{"type": "scale", "scale": scale}]
            if any(spec.origin):
                transforms.append({"type": "translation", "translation": [o * v for o, v in zip(spec.origin, voxel)]})
            datasets.append({"path": str(level), "coordinateTransformations": transforms})
        return datasets

    def _write_metadata(self, levels: int, title: str) -> None:
        """The multiscales of the image (named ``title``) and of every label image, listing ``levels`` levels."""
        fmt, root = _ngff(self.spec), zarr.open_group(self.path, mode="a")
        units = None if self.spec.unit is None else dict.fromkeys("zyx", self.spec.unit)
        for name in self._names():
            image = name == "image"
            group = root if image else root[self._group_path(name)]
            method = "mean of 2x2 pixels in y and x" if image else "every second pixel in y and x"
            metadata = {"method": method, "z": "not downsampled"}
            args = (group, self._datasets(levels), fmt, list("zyx"), units, title if image else name)
            write_multiscales_metadata(*args, metadata=metadata)

    @staticmethod
    def _region_shape(region: Region, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(region) != 3 or any(not isinstance(s, slice) or s.step not in (None, 1) for s in region):
            raise ValueError(f"region {region!r} must be 3 slices (z, y, x) of step 1")
        return tuple(len(range(*s.indices(n))) for s, n in zip(region, shape))

    def write(self, name: str, region: Region, data: np.ndarray) -> None:
        """Store ``data`` (of the region's shape) at ``region`` of level 0; for "image", float32
        probability in [0, 1] (stored as round(p x 255) for uint8), for the labels their values."""
        array = self._array(name, 0)
        expected = self._region_shape(region, array.shape)
        if data.shape != expected:
            raise ValueError(f"{name}: data of shape {data.shape} for a region of shape {expected}")
        if name == "image" and self.spec.dtype == "uint8":
            data = np.rint(np.clip(data, 0.0, 1.0) * 255.0)
        array[region] = data.astype(self._dtype(name), copy=False)

    def read(self, name: str, region: Region, level: int = 0) -> np.ndarray:
        """The stored values at ``region`` (in ``level``'s own coordinates); "image" as float32 probability."""
        array = self._array(name, level)
        self._region_shape(region, array.shape)
        data = np.asarray(array[region])
        if name != "image":
            return data
        return data.astype(np.float32) / np.float32(255.0) if data.dtype == np.uint8 else data.astype(np.float32)

    def _done_file(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise ValueError(f"done key {key!r} must be letters, digits, '_', '.' or '-' (e.g. 'b_0_3_2')")
        return self.path / DONE_DIR / key

    def mark_done(self, key: str) -> None:
        """Record ``key`` as finished: one empty file, created atomically (safe from many processes)."""
        os.close(os.open(self._done_file(key), os.O_CREAT | os.O_WRONLY, 0o644))

    def is_done(self, key: str) -> bool:
        return self._done_file(key).exists()

    def done(self) -> set[str]:
        """Every finished key, from one listing of the done folder."""
        return set(os.listdir(self.path / DONE_DIR))

    def _bookkeeping(self) -> dict[str, Any]:
        return dict((read_zarr_attrs(self.path) or {}).get("biounet", {}))

    def _update_bookkeeping(self, **changes: Any) -> None:
        root = zarr.open_group(self.path, mode="a")
        root.attrs["biounet"] = {**self._bookkeeping(), **changes}  # zarr replaces the file atomically

    @property
    def complete(self) -> bool:
        """Whether ``finish()`` has ended: every level and the full metadata are written."""
        return bool(self._bookkeeping().get("complete", False))

    def finish(self) -> None:
        """Build every pyramid level chunk by chunk, write the full metadata and mark the store complete."""
        if self.complete:
            return
        levels = len(pyramid_shapes(self.spec))
        for name in self._names():
            for level in range(1, levels):
                finished = list(self._bookkeeping()["finished_levels"])
                if f"{name}/{level}" not in finished:
                    _downsample_level(self._array(name, level - 1), self._create_level(name, level), name == "image")
                    self._update_bookkeeping(finished_levels=[*finished, f"{name}/{level}"])
        self._write_metadata(levels, self.path.name.removesuffix(".ome.zarr"))
        self._update_bookkeeping(complete=True)


def _mean_2x2(block: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The 2x2 mean over y and x; at an odd edge the mean of the pixels present (edge replicated)."""
    z, y, x = block.shape
    padded = np.pad(block.astype(np.float64), ((0, 0), (0, y % 2), (0, x % 2)), mode="edge")
    mean = padded.reshape(z, (y + 1) // 2, 2, (x + 1) // 2, 2).mean(axis=(2, 4))
    return np.rint(mean).astype(dtype) if np.issubdtype(dtype, np.integer) else mean.astype(dtype)


def _downsample_level(src: zarr.Array, dst: zarr.Array, mean: bool) -> None:
    """Fill ``dst`` (y and x halved) from ``src`` one chunk of ``dst`` at a time: memory stays a few chunks."""
    for z0, y0, x0 in itertools.product(*(range(0, n, c) for n, c in zip(dst.shape, dst.chunks))):
        z1, y1, x1 = (min(s + c, n) for s, c, n in zip((z0, y0, x0), dst.chunks, dst.shape))
        block = np.asarray(src[z0:z1, 2 * y0 : 2 * y1, 2 * x0 : 2 * x1])
        dst[z0:z1, y0:y1, x0:x1] = _mean_2x2(block, dst.dtype) if mean else block[:, ::2, ::2]
