"""``predict``'s volumes: which inputs are segmented block by block into OME-Zarr, and the run of their
blocks in this process (:mod:`biounet.segment.blockwise`) or on a Dask cluster (:mod:`biounet.segment.cluster`).

The output format (``--format auto``) is decided by the input alone, never by the memory free at that
moment, so that one command writes the same files on every machine and on every run: a Zarr,
OME-Zarr or HDF5 input is a volume (read block by block, written as OME-Zarr); an image or stack file
is read whole and written as TIFF, unless it is a TIFF whose header declares more than
:data:`BLOCKWISE_PIXELS` pixels, which is a volume too.

The model reaches a Dask worker as a loader the caller builds (``biounet.models.ModelRef`` on the
command line): this floor opens no model itself.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from biounet.core.config import TrainConfig
from biounet.core.errors import ConfigError
from biounet.io.volumes import Volume, is_volume_spec, open_volume
from biounet.segment.blockwise import ProgressLine, VolumeSettings, file_digest, predict_volume
from biounet.segment.cluster import ModelLoader, dask_client, predict_volume_dask
from biounet.segment.inference import Predictor

# A TIFF declaring more pixels than this is segmented block-wise: read whole, it and its class
# probabilities (float32) take about 17 bytes a pixel, 4.3 GiB here, and more than a laptop can spare.
BLOCKWISE_PIXELS = 2**28
TIFF_SUFFIXES = (".tif", ".tiff")
FORMATS = ("auto", "tiff", "ome-zarr")
# a Dask scheduler's address: [PROTOCOL://]HOST:PORT, the host a name, an IPv4 or a [bracketed IPv6]
_ADDRESS = re.compile(r"^(?:[a-z][a-z0-9+.-]*://)?(?:\[[0-9a-f:.]+\]|[^\s/:\[\]]+):\d{1,5}/?$", re.IGNORECASE)


def declared_pixels(path: str | Path) -> int | None:
    """The pixels of a TIFF's first series as its header declares them (nothing else is read); None for
    a file tifffile cannot parse (the in-memory reader then says what is wrong with it)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return math.prod(int(n) for n in tif.series[0].shape)
    except Exception:  # tifffile raises many kinds on a damaged header
        return None


def output_format(item: str, fmt: str = "auto", log: Callable[[str], object] = print) -> str:
    """'ome-zarr' (segmented block-wise) or 'tiff' (read whole) for one ``predict`` input under ``--format
    fmt``. A Zarr or HDF5 input is always a volume: nothing else reads it."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "ome-zarr" or is_volume_spec(item):
        return "ome-zarr"
    if fmt == "tiff" or not item.lower().endswith(TIFF_SUFFIXES) or not Path(item).is_file():
        return "tiff"
    pixels = declared_pixels(item)
    if pixels is None or pixels <= BLOCKWISE_PIXELS:
        return "tiff"
    log(
        f"{item} declares {pixels / 2**20:.0f} Mi pixels, more than {BLOCKWISE_PIXELS // 2**20} Mi: segmenting it "
        "block-wise into OME-Zarr (--format tiff reads it whole instead)"
    )
    return "ome-zarr"


def check_scheduler(scheduler: str) -> str:
    """``--scheduler``: a scheduler file (JSON with the scheduler's address, as ``dask scheduler
    --scheduler-file`` writes it) or an address; anything else is one line saying what fits."""
    import json

    fits = "give the scheduler's address (tcp://HOST:PORT) or the file `dask scheduler --scheduler-file FILE` wrote"
    path = Path(scheduler)
    if path.is_file():  # as biounet.segment.cluster.dask_client reads it
        try:
            address = json.loads(path.read_text(encoding="utf-8")).get("address")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            address = None
        if not isinstance(address, str) or not address:
            raise ConfigError(f"--scheduler {scheduler} is not a Dask scheduler file (JSON with an address); {fits}")
        return scheduler
    if path.exists():
        raise ConfigError(f"--scheduler {scheduler} is a folder; {fits}")
    if not _ADDRESS.match(scheduler):
        raise ConfigError(f"--scheduler {scheduler}: no such scheduler file, and not an address; {fits}")
    return scheduler


@dataclass(frozen=True)
class VolumeRun:
    """Where and how the volumes run: into ``out``/<name>.ome.zarr, from resolution ``level`` of arrays
    with ``axes`` (None: as their metadata or shape say); in this process, on a local Dask cluster of
    ``dask_workers`` processes, or on the Dask ``scheduler``; ``threads`` for a cluster's workers (0:
    one each). :meth:`check` refuses what cannot run."""

    out: str
    level: int = 0
    axes: str | None = None
    dask_workers: int | None = None
    scheduler: str | None = None
    threads: int = 0

    @property
    def on_dask(self) -> bool:
        return bool(self.dask_workers or self.scheduler)

    def check(self) -> VolumeRun:
        if self.level < 0:
            raise ConfigError(f"--level {self.level}: levels count from 0 (full resolution)")
        if self.dask_workers is not None and self.dask_workers < 1:
            raise ConfigError(f"--dask-workers {self.dask_workers}: give at least 1 worker")
        if self.dask_workers and self.scheduler:
            raise ConfigError("--dask-workers starts a local cluster, --scheduler uses another: give one of them")
        if self.scheduler is not None:
            check_scheduler(self.scheduler)
        return self


def open_volumes(specs: list[str], run: VolumeRun) -> list[Volume]:
    """Every input opened (metadata only) and checked before any work; two that would write one store
    are refused."""
    opened = [open_volume(spec, run.level, run.axes) for spec in specs]
    names = [v.name for v in opened]
    if len(set(names)) < len(names):
        raise ConfigError(f"two volumes would write one {run.out}/<stem>.ome.zarr ({', '.join(names)}); use two --out")
    return opened


def worker_threads(run: VolumeRun, cores: int | None = None) -> int:
    """Threads per Dask worker: one process per core beats threads for this network, so a local
    cluster's workers share the cores; a cluster's workers (start one per core) take one thread each
    unless ``run.threads`` says otherwise."""
    if run.dask_workers:
        return max(1, (cores or os.cpu_count() or 1) // run.dask_workers)
    return run.threads or 1


@dataclass(frozen=True)
class Report:
    """Where a volume's run reports: lines of text, and block progress (done, in all, voxels done)."""

    log: Callable[[str], object] = print
    progress: Callable[[int, int, int], None] | None = None


Reports = Callable[[], AbstractContextManager[Report]]  # a fresh report per volume (a bar each)


def line_reports(log: Callable[[str], object] = print) -> Reports:
    """Progress as a line with an ETA every half minute: for logs, where a bar would not show."""

    @contextmanager
    def report() -> Iterator[Report]:
        yield Report(log, ProgressLine(log))

    return report


def predict_volumes(
    volumes: list[Volume],
    predictor: Predictor,
    cfg: TrainConfig,
    settings: VolumeSettings,
    model_path: str | Path,
    run: VolumeRun,
    loader: Callable[[int], ModelLoader] | None = None,
    log: Callable[[str], object] = print,
    reports: Reports | None = None,
) -> list[Path]:
    """Segment ``volumes`` (:func:`open_volumes`) with the model of file ``model_path`` (its digest
    marks the stores): in this process with ``predictor``, or on Dask (``run.on_dask``), where each worker
    loads ``loader(threads)``. Logs ``SPEC -> STORE`` per volume; returns the stores."""
    digest = file_digest(model_path)
    paths = []
    if run.on_dask:
        if loader is None:
            raise ValueError("a Dask run needs the model's loader")
        model = loader(worker_threads(run))
        with dask_client(run.dask_workers, run.scheduler, log) as client:
            for volume in volumes:
                paths.append(
                    predict_volume_dask(
                        volume, model, cfg, run.out, settings, digest, client, log=log, progress=ProgressLine(log)
                    )
                )
                log(f"{volume.spec} -> {paths[-1]}")
        return paths
    for volume in volumes:
        with (reports or line_reports(log))() as report:
            paths.append(
                predict_volume(
                    volume, predictor, cfg, run.out, settings, digest, log=report.log, progress=report.progress
                )
            )
        log(f"{volume.spec} -> {paths[-1]}")
    return paths
