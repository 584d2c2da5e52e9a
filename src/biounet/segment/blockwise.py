"""Segment volumes larger than memory, block by block, resumably, into an OME-Zarr store.

The region to segment (the whole volume or ``--roi``) is cut into blocks of whole output chunks,
one z slice deep (:func:`block_shape`). Each block is segmented slice by slice with
:func:`biounet.segment.inference.segment_box`: the network's tiles sit on the grid fixed to the whole
slice, their context is read from the volume around the block (mirrored only at the volume's true
border), so a block's probabilities are those of segmenting the whole slice in memory, up to
floating-point rounding, wherever the blocks fall. Only the block is written; then the block is
recorded as done in the store. A run killed at any moment resumes with the same command: done
blocks are skipped, the others computed again (a block half-written when the run died is
rewritten whole). A store written with another model or other settings is refused, never mixed.

With instances (``--labels``) the unit of work is a whole slice, since the watershed needs the
whole slice: its probabilities (and a model's affinities) stay in memory in float32 until its cells
are written, and the
cells of slice z get ids from ``z * (H * W + 1) + 1`` on, unique across the volume without any
coordination between slices. With ``measure`` too, once the store is complete its cells are measured
slice by slice into ``<name>_objects.csv`` beside it (:mod:`biounet.segment.objects`).

Peak memory is set by the block (or the slice, with ``--labels``), never by the volume: about
``4 * (2 + C) * (block + 2 * context)**2`` bytes for the input and the class canvas, plus the
network's activations for ``batch_size`` tiles (:mod:`biounet.train.memory`), plus the chunk cache of
the readers (one chunk or TIFF page of the input at a time).
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from biounet.core.config import TrainConfig
from biounet.core.errors import BiounetError, ConfigError, DataError
from biounet.data.affinities import offsets_for
from biounet.data.context import context_reader
from biounet.data.readers import scale_image
from biounet.instances.methods import check_inputs, instance_labels
from biounet.io.metadata import known_unit
from biounet.io.omezarr import OutputSpec, OutputStore, output_path
from biounet.io.volumes import Volume, parse_roi
from biounet.segment.inference import Predictor, segment_box
from biounet.segment.objects import objects_path, write_volume_objects
from biounet.segment.tiling import Reader, plan_tiles

MAX_BLOCKS = 10**7  # more blocks than this (40 teravoxels in 2048^2 blocks) means a volume declaring a wrong size
MAX_LABEL_SLICE = 16384 * 16384  # the largest slice whose instances are computed (whole, in memory)
CHUNK_TARGET = 1024  # default chunk side: the multiple of the tile stride nearest to this
# Blocks are squares of whole chunks about this wide. Valid padding: a block that is a multiple of the
# stride runs exactly its own tiles. Same padding: blended tiles overlap by half, so a block also runs
# the half tiles on its rim, which its neighbour runs again: (1 + stride / block)**2 of the work of
# one whole slice (1.13 for 256-pixel strides and 4096-pixel blocks).
BLOCK_TARGET = {"valid": 2048, "same": 4096}


@dataclass(frozen=True)
class VolumeSettings:
    """Everything about a volume prediction that the user chooses (the result depends on all of it)."""

    tile: int | None = None
    batch_size: int = 4
    tta: bool = False
    dtype: str = "uint8"
    chunks: tuple[int, int] | None = None  # (y, x) block and chunk side; default from the tile stride
    labels: str | None = None  # an instance method of biounet.instances.methods
    label_params: tuple[tuple[str, Any], ...] = ()  # its parameters, (name, value) sorted by name
    measure: bool = False  # with labels: the table of objects beside the store (not part of the store)
    roi: str | None = None
    compression: str = "zstd"
    ngff: str = "0.5"


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file, read in 16 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(1 << 24):
            h.update(piece)
    return h.hexdigest()


def default_chunks(volume: Volume, cfg: TrainConfig, tile: int | None) -> tuple[int, int]:
    """(y, x) chunk sides: a multiple of the slice's tile stride near 1024 pixels (then a block runs
    the same tiles as the whole slice would, without any extra), cut to the volume's size."""
    _, h, w = volume.shape
    plan = plan_tiles(h, w, cfg.depth, cfg.padding, tile)
    sides = []
    for size, stride in zip((h, w), plan.stride):
        unit = math.lcm(stride, 16)  # chunk sides are multiples of 16
        sides.append(min(unit * max(1, round(CHUNK_TARGET / unit)), -(-size // 16) * 16))  # no wider than needed
    return sides[0], sides[1]


def block_shape(chunks: tuple[int, int, int], padding: str) -> tuple[int, int, int]:
    """A block of whole chunks, one slice deep, about ``BLOCK_TARGET`` pixels wide."""
    target = BLOCK_TARGET[padding]
    return 1, chunks[1] * max(1, round(target / chunks[1])), chunks[2] * max(1, round(target / chunks[2]))


def block_regions(shape: tuple[int, int, int], chunks: tuple[int, int, int]) -> list[tuple[str, tuple[slice, ...]]]:
    """(key, (z, y, x) slices) of each block of a region of ``shape``, in store coordinates."""
    out: list[tuple[str, tuple[slice, ...]]] = []
    for iz, z0 in enumerate(range(0, shape[0], chunks[0])):
        for iy, y0 in enumerate(range(0, shape[1], chunks[1])):
            for ix, x0 in enumerate(range(0, shape[2], chunks[2])):
                region = (
                    slice(z0, min(z0 + chunks[0], shape[0])),
                    slice(y0, min(y0 + chunks[1], shape[1])),
                    slice(x0, min(x0 + chunks[2], shape[2])),
                )
                out.append((f"b_{iz}_{iy}_{ix}", region))
    return out


def slice_reader(volume: Volume, z: int, in_channels: int) -> Reader:
    """Reads boxes of slice ``z`` scaled to [-1, 1] as the whole slice would be."""
    value_range = volume.value_range(z)

    def read(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        pixels = volume.read(z, slice(y0, y1), slice(x0, x1))
        return scale_image(pixels, in_channels, f"{volume.name} slice {z}", value_range)

    return read


def _output_spec(
    volume: Volume, cfg: TrainConfig, settings: VolumeSettings, roi: tuple[slice, ...], fingerprint: dict[str, Any]
) -> OutputSpec:
    chunks = settings.chunks or default_chunks(volume, cfg, settings.tile)
    step = 2**cfg.depth
    if any(c < step or c % 16 for c in chunks):
        raise ConfigError(
            f"--chunks {chunks[0]},{chunks[1]}: chunk sides must be multiples of 16 and at least the network's "
            f"step ({step}); e.g. --chunks 1024,1024"
        )
    shape = tuple(s.stop - s.start for s in roi)
    assert len(shape) == 3
    return OutputSpec(
        shape=shape,
        chunks=(1, chunks[0], chunks[1]),
        dtype=settings.dtype,
        labels=("mask", "cells") if settings.labels else ("mask",),
        cells_dtype="uint64" if shape[0] * (volume.shape[1] * volume.shape[2] + 1) >= 2**32 else "uint32",
        voxel_size=volume.voxel_size,
        unit=known_unit(volume.unit),
        origin=(roi[0].start, roi[1].start, roi[2].start),
        compression=settings.compression,
        ngff=settings.ngff,
        fingerprint=fingerprint,
    )


def _check(volume: Volume, cfg: TrainConfig, settings: VolumeSettings) -> None:
    if settings.labels:  # a method that reads affinities needs a model that predicts them
        check_inputs([settings.labels], offsets_for(cfg.affinities))
    if cfg.classes != 2:
        raise ConfigError(
            f"{volume.spec}: block-wise prediction writes a membrane probability and needs a 2-class model; "
            f"this one has {cfg.classes} classes (segment slices that fit in memory as TIFF instead)"
        )
    if volume.channels != cfg.in_channels:
        raise ConfigError(
            f"{volume.spec} has {volume.channels} channel(s) (axes {volume.axes}) but the model takes "
            f"{cfg.in_channels}; if that axis holds slices, pass --axes (e.g. --axes zyx)"
        )


@dataclass(frozen=True)
class BlockJob:
    """What a block needs besides the predictor (picklable: sent to Dask workers once)."""

    volume: Volume
    cfg: TrainConfig
    settings: VolumeSettings
    store: OutputStore
    roi: tuple[slice, ...]

    def run(self, predictor: Predictor, key: str, region: tuple[slice, ...]) -> int:
        """Segment, write and record one block; returns its voxel count."""
        fault_injection(self.store, key)
        _run_block(self.volume, self.store, predictor, self.cfg, self.settings, self.roi, region)
        self.store.mark_done(key)
        return int(np.prod([s.stop - s.start for s in region]))

    def finish(self, log: Callable[[str], object] = print) -> None:
        """Build the store's pyramid (once every block is done), then, with ``measure``, the table of its
        objects (kept from an earlier run when the store was complete already); a damaged chunk is a
        DataError."""
        complete = self.store.complete
        if not complete:
            try:
                self.store.finish()
            except BiounetError:
                raise
            except Exception as exc:  # zarr's codecs raise many kinds on a damaged chunk
                raise DataError(
                    f"{self.store.path}: building the pyramid failed ({type(exc).__name__}: {exc}): a chunk of the "
                    f"store is damaged; delete {self.store.path} and run again"
                ) from None
        table = objects_path(self.store.path.parent, self.volume.name)
        if self.settings.labels and self.settings.measure and not (complete and table.exists()):
            write_volume_objects(self.volume, self.store, self.roi, log)


def fault_injection(store: OutputStore, key: str) -> None:
    """Test hooks: ``BIOUNET_FAULT_KILL_BLOCK=KEY`` kills the process (SIGKILL) the first time it starts
    block KEY (a marker in the store says it happened); ``BIOUNET_FAULT_FAIL_BLOCK=KEY`` makes
    block KEY fail every time."""
    if os.environ.get("BIOUNET_FAULT_FAIL_BLOCK") == key:
        raise RuntimeError(f"injected failure of block {key}")
    if os.environ.get("BIOUNET_FAULT_KILL_BLOCK") == key:
        marker = store.path / ".biounet" / f"fault-killed-{key}"
        if not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)


def prepare_volume(
    volume: Volume,
    precision: str,
    cfg: TrainConfig,
    out_dir: str | Path,
    settings: VolumeSettings,
    model_digest: str,
    log: Callable[[str], object] = print,
) -> tuple[BlockJob, list[tuple[str, tuple[slice, ...]]], int]:
    """Open (create or resume) the output store of ``volume``; returns the job, the blocks still to do
    and the number of blocks in all (no block left to do when the store is complete)."""
    _check(volume, cfg, settings)
    roi = parse_roi(settings.roi, volume.shape) if settings.roi else tuple(slice(0, n) for n in volume.shape)
    h, w = roi[1].stop - roi[1].start, roi[2].stop - roi[2].start
    # a slice's class and affinity channels are held whole: the same memory as 16384 x 16384 pixels of two classes
    channels = cfg.classes + len(offsets_for(cfg.affinities))
    limit = MAX_LABEL_SLICE * 2 // channels
    if settings.labels and h * w > limit:
        raise ConfigError(
            f"{volume.spec}: slices of {h}x{w} are too large for --labels (each slice's instances are "
            f"computed whole from its {channels} channels, up to {limit} pixels); drop --labels or restrict y and x "
            f"with --roi"
        )
    fingerprint = {
        "model_sha256": model_digest,
        "precision": precision,
        "depth": cfg.depth,
        "padding": cfg.padding,
        # the region is the store's shape and origin (compared by the store); the input by its resolved path
        **{k: v for k, v in asdict(settings).items() if k not in ("batch_size", "chunks", "roi", "measure")},
        "input": {"path": volume.source_path, "shape": list(volume.shape), "dtype": str(volume.dtype)},
    }
    spec = _output_spec(volume, cfg, settings, roi, fingerprint)
    block = (1, *spec.shape[1:]) if settings.labels else block_shape(spec.chunks, cfg.padding)
    count = math.prod(-(-n // b) for n, b in zip(spec.shape, block))
    if count > MAX_BLOCKS:
        raise DataError(
            f"{volume.spec}: {'x'.join(map(str, spec.shape))} voxels make {count} blocks, more than {MAX_BLOCKS}; "
            f"check the volume's declared size, or segment it in parts with --roi"
        )
    path = output_path(Path(out_dir), volume.name)
    store = OutputStore.open(path, spec)
    job = BlockJob(volume, cfg, settings, store, roi)
    blocks = block_regions(spec.shape, block)
    if store.complete:
        log(f"{path} is complete already (same model and settings): nothing to do")
        return job, [], len(blocks)
    done = store.done()
    todo = [(key, region) for key, region in blocks if key not in done]
    resuming = f", {len(blocks) - len(todo)} done already (resuming)" if len(todo) < len(blocks) else ""
    log(
        f"{volume.spec}: {'x'.join(map(str, spec.shape))} voxels in {len(blocks)} block(s) of "
        f"{'x'.join(map(str, block))}{resuming} -> {path}"
    )
    return job, todo, len(blocks)


def predict_volume(
    volume: Volume,
    predictor: Predictor,
    cfg: TrainConfig,
    out_dir: str | Path,
    settings: VolumeSettings,
    model_digest: str,
    log: Callable[[str], object] = print,
    progress: Callable[[int, int, int], None] | None = None,
) -> Path:
    """Segment ``volume`` into ``out_dir/<name>.ome.zarr`` in this process (resuming a run with the
    same settings); ``progress(blocks done, blocks in all, voxels done in this run)`` after each block."""
    precision = str(getattr(predictor, "precision", "fp32"))
    job, todo, total = prepare_volume(volume, precision, cfg, out_dir, settings, model_digest, log)
    voxels = 0
    for n, (key, region) in enumerate(todo):
        voxels += job.run(predictor, key, region)
        if progress:
            progress(total - len(todo) + n + 1, total, voxels)
    job.finish(log)
    return job.store.path


def _run_block(
    volume: Volume,
    store: OutputStore,
    predictor: Predictor,
    cfg: TrainConfig,
    settings: VolumeSettings,
    roi: tuple[slice, ...],
    region: tuple[slice, ...],
) -> None:
    """Segment one block (store coordinates ``region``) and write its probability, mask and cells."""
    offsets = offsets_for(cfg.affinities)  # a model's affinity channels follow its classes
    _, h, w = volume.shape
    zs, ys, xs = region
    oz, oy, ox = (s.start for s in roi)  # the store's origin in the volume
    box = (ys.start + oy, ys.stop + oy, xs.start + ox, xs.stop + ox)
    for z in range(zs.start, zs.stop):
        # a network trained with --context reads the neighbouring sections too (mirrored at the volume's ends)
        read = context_reader(lambda s: slice_reader(volume, s, cfg.in_channels), z + oz, volume.shape[0], cfg.context)
        out = segment_box(
            read,
            (h, w),
            box,
            predictor,
            cfg.depth,
            cfg.padding,
            settings.tile,
            settings.batch_size,
            settings.tta,
            num_classes=cfg.classes,
            offsets=offsets,
        )
        probs, aff = out[: cfg.classes], (out[cfg.classes :] if offsets else None)
        one = (slice(z, z + 1), ys, xs)
        store.write("image", one, probs[0][None])
        store.write("mask", one, (probs[0] > 0.5).astype(np.uint8)[None])
        if settings.labels:
            params = dict(settings.label_params)
            cells = instance_labels(probs[1], settings.labels, affinities=aff, offsets=offsets, **params)
            cells = cells.astype(np.uint64)
            base = z * (h * w + 1)  # ids unique across the volume, whatever order the slices run in
            cells[cells > 0] += base
            store.write("cells", one, cells.astype(store.spec.cells_dtype)[None])


class ProgressLine:
    """Progress with an ETA as a line every ``every`` seconds (for logs, where a bar would not show)."""

    def __init__(self, log: Callable[[str], object] = print, every: float = 30.0):
        self.log, self.every = log, every
        self.started = self.last = time.monotonic()
        self.first: int | None = None  # blocks done before this run

    def __call__(self, done: int, total: int, voxels: int) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = done - 1
        if now - self.last < self.every and done < total:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        left = (total - done) * elapsed / max(1, done - self.first)
        eta = time.strftime("%H:%M:%S", time.gmtime(left))
        self.log(f"block {done}/{total}  {voxels / elapsed / 1e6:.2f} Mvoxel/s  eta {eta}")
