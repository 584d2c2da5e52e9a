"""``predict``'s volume options, and their hand-off to :mod:`biounet.segment.volumes` (which decides
what is a volume and runs its blocks); and the progress bar the inference commands share."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from biounet.core.config import TrainConfig
from biounet.core.errors import ConfigError
from biounet.segment.volumes import BLOCKWISE_PIXELS, FORMATS, Report, Reports, VolumeRun


def add_volume_options(p: argparse.ArgumentParser) -> None:
    v = p.add_argument_group(
        "volumes larger than memory",
        "Zarr (v2, v3), OME-Zarr, HDF5 (FILE.h5:/dataset) inputs, large TIFFs, and any input with --format "
        "ome-zarr are segmented block by block into OUT/<stem>.ome.zarr (resumable: run the same command "
        "again after an interruption).",
    )
    v.add_argument(
        "--format",
        default="auto",
        choices=FORMATS,
        help="output format (default auto, by the input: OME-Zarr for Zarr and HDF5 volumes and for TIFFs "
        f"declaring more than {BLOCKWISE_PIXELS // 2**20} Mi pixels, TIFF for other images and stacks; Zarr "
        "and HDF5 inputs are always written as OME-Zarr)",
    )
    v.add_argument("--level", type=int, default=0, help="OME-Zarr resolution level to segment (default: 0, full)")
    v.add_argument("--axes", default=None, help="axes of a plain Zarr/HDF5 array, e.g. zyx or czyx (default: guessed)")
    v.add_argument("--roi", default=None, metavar="Z0:Z1,Y0:Y1,X0:X1", help="segment only this sub-volume")
    v.add_argument(
        "--dtype",
        default="uint8",
        choices=["uint8", "float16", "float32"],
        help="membrane probability type in the store (default uint8: probability x 255)",
    )
    v.add_argument("--chunks", default=None, metavar="Y,X", help="output chunk (= block) sides, multiples of 16")
    v.add_argument("--compression", default="zstd", choices=["zstd", "lz4", "none"], help="chunk compression")
    v.add_argument("--ngff", default="0.5", choices=["0.5", "0.4"], help="OME-NGFF version: 0.5 (Zarr v3) or 0.4 (v2)")
    d = v.add_mutually_exclusive_group()
    d.add_argument(
        "--dask-workers",
        type=int,
        default=None,
        metavar="N",
        help="run the blocks on a local Dask cluster of N worker processes (the cores shared between them)",
    )
    d.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run the blocks on this Dask scheduler: its address (tcp://HOST:PORT) or its scheduler file",
    )


def shows_bar(mode: str) -> bool:
    """Whether ``--progress mode`` draws a bar: on, or auto on a terminal (a log gets lines, or nothing)."""
    return mode == "on" or (mode == "auto" and sys.stderr.isatty())


def progress_bar(total: int, unit: str, mode: str = "auto") -> Any:
    """A tqdm bar with an ETA where :func:`shows_bar`; None (quiet) otherwise."""
    if not shows_bar(mode):
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, dynamic_ncols=True, leave=False)


def bar_reports(mode: str) -> Reports | None:
    """Each volume's blocks on a bar of their own where :func:`progress_bar` shows one; None: the
    library's progress lines."""
    if not shows_bar(mode):
        return None

    @contextmanager
    def report() -> Iterator[Report]:
        bar = progress_bar(0, "block", mode)

        def advance(done: int, total: int, _voxels: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            yield Report(bar.write, advance)
        finally:
            bar.close()

    return report


def volume_run(args: argparse.Namespace) -> VolumeRun:
    """Where and how the volumes run, checked (the scheduler too) before the model is opened."""
    return VolumeRun(args.out, args.level, args.axes, args.dask_workers, args.scheduler, args.threads).check()


def volume_settings(args: argparse.Namespace, label_params: dict[str, Any], measure: bool = False) -> Any:
    from biounet.segment.blockwise import VolumeSettings

    chunks = None
    if args.chunks is not None:
        try:
            y, x = (int(v) for v in args.chunks.split(","))
        except ValueError:
            raise ConfigError(f"--chunks {args.chunks!r}: give two chunk sides Y,X, e.g. --chunks 1024,1024") from None
        chunks = (y, x)
    if args.overlay:
        raise ConfigError("--overlay writes PNGs of whole images; drop it for volumes (view the OME-Zarr in napari)")
    return VolumeSettings(
        tile=args.tile,
        batch_size=args.tile_batch,
        tta=args.tta,
        dtype=args.dtype,
        chunks=chunks,
        labels=args.labels,
        label_params=tuple(sorted(label_params.items())),
        measure=measure,
        roi=args.roi,
        compression=args.compression,
        ngff=args.ngff,
    )


def model_loader(model: str, predictor: Any, ckpt: dict[str, Any]) -> Callable[[int], Any]:
    """How a Dask worker opens the model the client opened from ``--model model``: the same file, as the
    same kind (a built-in model: its checkpoint), on the client's kind of device in its precision."""
    from biounet.models import ModelRef, model_kind

    kind = model_kind(model)
    device = str(getattr(predictor, "device", "cpu"))

    def loader(threads: int) -> ModelRef:
        return ModelRef(
            path=str(ckpt["path"]),
            kind="checkpoint" if kind == "builtin" else kind,
            device="cuda" if device.startswith("cuda") else "cpu",
            precision=str(getattr(predictor, "precision", "fp32")),
            threads=threads,
        )

    return loader


def predict_volumes(
    volumes: list[Any], predictor: Any, cfg: TrainConfig, ckpt: dict[str, Any], args: argparse.Namespace, settings: Any
) -> list[Path]:
    """Hand the opened ``volumes`` to :func:`biounet.segment.volumes.predict_volumes`."""
    from biounet.segment.volumes import predict_volumes as run_volumes

    run = volume_run(args)
    loader = model_loader(args.model, predictor, ckpt) if run.on_dask else None
    return run_volumes(volumes, predictor, cfg, settings, ckpt["path"], run, loader, reports=bar_reports(args.progress))
