"""``predict``'s volume path on the command line: the volume options, which inputs are volumes, and
the block-wise run (one process or Dask); and the progress bar the inference commands share."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from biounet.core.config import TrainConfig
from biounet.core.errors import ConfigError


def add_volume_options(p: argparse.ArgumentParser) -> None:
    v = p.add_argument_group(
        "volumes larger than memory",
        "Zarr (v2, v3), OME-Zarr, HDF5 (FILE.h5:/dataset) inputs, TIFFs too large for memory, and any input "
        "with --format ome-zarr are segmented block by block into OUT/<stem>.ome.zarr (resumable: run the "
        "same command again after an interruption).",
    )
    v.add_argument(
        "--format",
        default="auto",
        choices=["auto", "tiff", "ome-zarr"],
        help="output format (default auto: OME-Zarr for volumes, TIFF for images that fit in memory)",
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
        help="run the blocks on this Dask scheduler (an address, or a scheduler file)",
    )


def progress_bar(total: int, unit: str) -> Any:
    """A tqdm bar with an ETA on a terminal; None (quiet) when output goes to a log."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, dynamic_ncols=True, leave=False)


def is_volume_input(item: str, fmt: str) -> bool:
    """A volume (block-wise path): a Zarr/OME-Zarr/HDF5 input, anything with --format ome-zarr, or a
    TIFF whose pixels and their probabilities would take more than half the memory available now."""
    from biounet.core.system import available_ram_bytes
    from biounet.io.volumes import is_volume_spec

    if fmt == "ome-zarr" or is_volume_spec(item):
        return True
    if fmt == "tiff" or not item.lower().endswith((".tif", ".tiff")) or not Path(item).is_file():
        return False
    import numpy as np
    import tifffile

    try:
        with tifffile.TiffFile(item) as tif:
            series = tif.series[0]
            need = float(np.prod(series.shape, dtype=np.float64)) * (series.dtype.itemsize + 16)
    except Exception:  # an unreadable TIFF: the in-memory reader says what is wrong with it
        return False
    if need <= available_ram_bytes() / 2:
        return False
    print(f"{item}: {need / 2**30:.1f} GiB in memory is more than half of what is free; segmenting it block-wise")
    return True


def volume_settings(args: argparse.Namespace, label_params: dict[str, Any]) -> Any:
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
    if args.level < 0:
        raise ConfigError(f"--level {args.level}: levels count from 0 (full resolution)")
    if args.dask_workers is not None and args.dask_workers < 1:
        raise ConfigError(f"--dask-workers {args.dask_workers}: give at least 1 worker")
    return VolumeSettings(
        tile=args.tile,
        batch_size=args.batch_size,
        tta=args.tta,
        dtype=args.dtype,
        chunks=chunks,
        labels=args.labels,
        label_params=tuple(sorted(label_params.items())),
        roi=args.roi,
        compression=args.compression,
        ngff=args.ngff,
    )


def predict_volumes(
    volumes: list[str], predictor: Any, cfg: TrainConfig, ckpt: dict[str, Any], args: argparse.Namespace, settings: Any
) -> None:
    from biounet.io.volumes import open_volume
    from biounet.segment.blockwise import ProgressLine, file_digest, predict_volume

    opened = [open_volume(spec, args.level, args.axes) for spec in volumes]  # every input checked before any work
    names = [v.name for v in opened]
    if len(set(names)) < len(names):
        raise ConfigError(f"two volumes would write one {args.out}/<stem>.ome.zarr ({', '.join(names)}); use two --out")
    digest = file_digest(ckpt["path"])
    if args.dask_workers or args.scheduler:
        predict_volumes_dask(opened, predictor, cfg, ckpt, args, settings, digest)
        return
    for volume in opened:
        bar = progress_bar(0, "block")

        def report(done: int, total: int, _voxels: int, bar: Any = bar) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            path = predict_volume(
                volume,
                predictor,
                cfg,
                args.out,
                settings,
                digest,
                log=bar.write if bar else print,
                progress=report if bar else ProgressLine(),
            )
        finally:
            if bar:
                bar.close()
        print(f"{volume.spec} -> {path}")


def predict_volumes_dask(
    volumes: list[Any],
    predictor: Any,
    cfg: TrainConfig,
    ckpt: dict[str, Any],
    args: argparse.Namespace,
    settings: Any,
    digest: str,
) -> None:
    import os

    from biounet.models import ModelRef, requested_kind
    from biounet.segment.blockwise import ProgressLine
    from biounet.segment.cluster import dask_client, predict_volume_dask

    device = str(getattr(predictor, "device", "cpu"))
    # one process per core beats threads for this network: local workers share the cores, a cluster's
    # workers (start one per core) take one thread each unless --threads says otherwise
    threads = max(1, (os.cpu_count() or 1) // args.dask_workers) if args.dask_workers else (args.threads or 1)
    kind = requested_kind(args.model)  # as the client opened it (cli/inference.py)
    model = ModelRef(
        path=str(ckpt["path"]),
        kind="checkpoint" if kind == "builtin" else kind,  # a built-in model's path is its checkpoint
        device="cuda" if device.startswith("cuda") else "cpu",
        precision=str(getattr(predictor, "precision", "fp32")),
        threads=threads,
    )
    with dask_client(args.dask_workers, args.scheduler) as client:
        for volume in volumes:
            path = predict_volume_dask(volume, model, cfg, args.out, settings, digest, client, progress=ProgressLine())
            print(f"{volume.spec} -> {path}")
