"""Block-wise volume prediction on a Dask cluster: a local one (``--dask-workers N``) or an existing
one (``--scheduler ADDRESS`` or a scheduler file, e.g. from ``dask scheduler`` / ``dask worker`` or
dask-jobqueue).

The blocks of :mod:`biounet.segment.blockwise` are the tasks. The job (volume, store, settings) is sent to
the workers once; each worker process loads the model once, on its first block, and keeps it. A
task segments its block, writes it and records it as done in the store, exactly as one process
does, so the store, the resume and the results are those of one process. The client only
orders the work, shows progress and builds the pyramid at the end.

Faults: a worker that dies has its blocks run again by the others (the scheduler's own
rescheduling, up to ``distributed.scheduler.allowed-failures`` deaths per block); a block that
raises is retried ``retries`` times, then the run stops naming the block, with everything written
so far kept: the same command resumes it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from biounet.core.config import TrainConfig
from biounet.core.errors import DataError
from biounet.io.volumes import Volume
from biounet.segment.blockwise import BlockJob, VolumeSettings, prepare_volume
from biounet.segment.inference import Predictor

CONNECT_TIMEOUT_S = 20


class ModelLoader(Protocol):
    """What a worker is sent to open the model: hashable, picklable, ``load()`` gives the predictor
    (:class:`biounet.models.ModelRef`)."""

    precision: str  # resolved by the client, so that every worker computes alike

    def __hash__(self) -> int: ...

    def load(self) -> Predictor: ...


_LOADED: dict[ModelLoader, Predictor] = {}  # per worker process: the model is loaded once


def segment_block(job: BlockJob, model: ModelLoader, key: str, region: tuple[slice, ...]) -> int:
    """A task: one block on this worker's model; returns its voxel count."""
    if model not in _LOADED:
        _LOADED[model] = model.load()
    return job.run(_LOADED[model], key, region)


@contextmanager
def dask_client(workers: int | None, scheduler: str | None, log: Callable[[str], object] = print) -> Iterator[Any]:
    """A client of a new local cluster of ``workers`` processes (one thread each), or of the scheduler
    at ``scheduler``; closed (and the local cluster stopped) on the way out."""
    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        target = {"scheduler_file": scheduler} if Path(scheduler).is_file() else {"address": scheduler}
        try:
            client = Client(**target, timeout=f"{CONNECT_TIMEOUT_S}s")
        except (OSError, TimeoutError) as exc:
            raise DataError(
                f"cannot reach the Dask scheduler at {scheduler} ({exc}); start one with `dask scheduler` "
                f"(and workers with `dask worker {scheduler}`) or check the address"
            ) from None
        try:
            yield client
        finally:
            client.close()
        return
    dashboard = ":0" if _has_dashboard() else None
    # Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also freezes glibc's mmap threshold:
    # every large temporary array of a block is then mapped and zeroed afresh (3.4x the page faults of
    # one process, half the speed per worker). biounet's workers keep glibc's adaptive default.
    environ = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ").items() if "MALLOC" not in k}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            scheduler_port=0,
            dashboard_address=dashboard,
            silence_logs=logging.ERROR,
        )
    try:
        client = Client(cluster)
        if dashboard:
            log(f"Dask dashboard: {client.dashboard_link}")
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def _has_dashboard() -> bool:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True


def predict_volume_dask(
    volume: Volume,
    model: ModelLoader,
    cfg: TrainConfig,
    out_dir: str | Path,
    settings: VolumeSettings,
    model_digest: str,
    client: Any,
    log: Callable[[str], object] = print,
    progress: Callable[[int, int, int], None] | None = None,
    retries: int = 2,
) -> Path:
    """:func:`biounet.segment.blockwise.predict_volume` with the blocks as tasks of ``client``'s cluster."""
    from distributed import as_completed

    job, todo, total = prepare_volume(volume, model.precision, cfg, out_dir, settings, model_digest, log)
    if todo:
        job_f, model_f = client.scatter([job, model], broadcast=True)
        run_id = uuid.uuid4().hex  # task keys are global on a shared scheduler: unique per run
        futures = {
            client.submit(
                segment_block, job_f, model_f, key, region, key=f"biounet-{key}-{run_id}", retries=retries
            ): key
            for key, region in todo
        }
        done, voxels = total - len(todo), 0
        for future in as_completed(futures):
            if future.status != "finished":
                key = futures[future]
                exc = future.exception()
                client.cancel(list(futures))
                raise DataError(
                    f"block {key} failed {retries + 1} times ({type(exc).__name__}: {exc}); the blocks finished "
                    f"so far are kept in {job.store.path}: fix the cause and run the same command to resume"
                )
            done, voxels = done + 1, voxels + future.result()
            if progress:
                progress(done, total, voxels)
    job.finish(log)
    return job.store.path
