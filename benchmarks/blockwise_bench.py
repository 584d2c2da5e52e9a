"""Block-wise volume prediction: throughput against the in-memory path, and memory against volume size.

Volumes are the ISBI 2012 training slices tiled side by side (slice z is training slice z mod 30,
repeated over y and x), written as Zarr v3 (chunks 1 x 1024 x 1024) and, for the in-memory path,
as a TIFF stack. Every prediction runs in a fresh process whose peak resident memory (ru_maxrss)
and wall time are printed, with megavoxels per second.

    python benchmarks/blockwise_bench.py make --shape 64,8192,8192 --out /tmp/big.zarr
    python benchmarks/blockwise_bench.py throughput --model RUN --shape 4,4096,4096
    python benchmarks/blockwise_bench.py memory --model RUN --small 2,2048,2048 --large 8,8192,8192
    python benchmarks/blockwise_bench.py run --model RUN --volume /tmp/big.zarr --out /tmp/big-out
    python benchmarks/blockwise_bench.py scaling --model RUN --shape 8,2048,2048

`scaling` runs, on one volume: one process (all cores), one process with one thread, and a local
Dask cluster of two workers (one thread each); peak memory is the process's own and, for Dask, the
largest worker's (ru_maxrss of the children). It also times the scheduler's overhead per task
(1000 empty tasks).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ISBI = ROOT.parent / "shared" / "data" / "isbi2012" / "train-volume.tif"


def _shape(text: str) -> tuple[int, int, int]:
    z, y, x = (int(v) for v in text.split(","))
    return z, y, x


def make_volume(shape: tuple[int, int, int], out: Path, tiff: bool = False) -> Path:
    """Write the tiled ISBI volume, one slice at a time (never the whole volume in memory)."""
    import tifffile
    import zarr

    isbi = tifffile.imread(ISBI)
    z, y, x = shape
    reps = (-(-y // isbi.shape[1]), -(-x // isbi.shape[2]))
    if tiff:
        with tifffile.TiffWriter(out, bigtiff=True) as tif:
            for k in range(z):
                tif.write(np.tile(isbi[k % len(isbi)], reps)[:y, :x], photometric="minisblack", contiguous=True)
        return out
    arr = zarr.create_array(out, shape=shape, chunks=(1, min(y, 1024), min(x, 1024)), dtype="uint8", overwrite=True)
    for k in range(z):
        arr[k] = np.tile(isbi[k % len(isbi)], reps)[:y, :x]
    return out


def _child(args: list[str]) -> None:
    """Run one biounet command in this (fresh) process and print its wall time and peak memory."""
    from biounet.cli import main

    t0 = time.perf_counter()
    rc = main(args)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Dask workers, when any
    print(json.dumps({"rc": rc, "wall_s": wall, "peak_bytes": peak, "child_peak_bytes": workers}))


def measure(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, "child", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"biounet {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _report(name: str, voxels: int, m: dict) -> dict:
    row = {"path": name, "voxels": voxels, **m, "mvoxel_per_s": voxels / m["wall_s"] / 1e6}
    print(
        f"{name:28s} {voxels / 1e6:9.1f} Mvoxel  {m['wall_s']:8.1f} s  {row['mvoxel_per_s']:6.3f} Mvoxel/s  "
        f"peak {m['peak_bytes'] / 2**30:5.2f} GiB"
    )
    return row


def throughput(ckpt: str, shape: tuple[int, int, int], extra: list[str]) -> list[dict]:
    voxels = int(np.prod(shape))
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        tif, vol = make_volume(shape, t / "vol.tif", tiff=True), make_volume(shape, t / "vol.zarr")
        common = ["--model", ckpt, *extra]
        rows = [
            _report("in memory (TIFF stack)", voxels, measure(["predict", str(tif), "--out", str(t / "a"), *common]))
        ]
        rows.append(
            _report(
                "block-wise (Zarr -> OME-Zarr)", voxels, measure(["predict", str(vol), "--out", str(t / "b"), *common])
            )
        )
    return rows


def memory(ckpt: str, small: tuple[int, int, int], large: tuple[int, int, int], extra: list[str]) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, shape in (("small", small), ("large", large)):
            vol = make_volume(shape, Path(tmp) / f"{name}.zarr")
            out = Path(tmp) / f"out-{name}"
            m = measure(["predict", str(vol), "--out", str(out), "--model", ckpt, *extra])
            rows.append(_report(f"block-wise {name} {'x'.join(map(str, shape))}", int(np.prod(shape)), m))
    growth = rows[1]["peak_bytes"] / rows[0]["peak_bytes"] - 1
    print(f"volume x{rows[1]['voxels'] / rows[0]['voxels']:.0f}: peak memory {100 * growth:+.1f} %")
    return rows


def scaling(ckpt: str, shape: tuple[int, int, int], extra: list[str]) -> list[dict]:
    voxels = int(np.prod(shape))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        vol = str(make_volume(shape, Path(tmp) / "vol.zarr"))
        common = ["--model", ckpt, *extra]
        runs = [
            ("1 process, all cores", []),
            ("1 process, 1 thread", ["--threads", "1"]),
            ("2 Dask workers, 1 thread each", ["--dask-workers", "2"]),
        ]
        for i, (name, flags) in enumerate(runs):
            m = measure(["predict", vol, "--out", str(Path(tmp) / f"out{i}"), *common, *flags])
            rows.append(_report(name, voxels, m))
            if flags[:1] == ["--dask-workers"]:
                print(f"{'':28s} largest worker's peak {m['child_peak_bytes'] / 2**30:.2f} GiB")
    one = rows[1]["mvoxel_per_s"]
    print(f"2 workers / 1 single-thread process: {rows[2]['mvoxel_per_s'] / one:.2f}x")
    rows.append({"path": "scheduler overhead per task", "seconds": task_overhead()})
    print(f"scheduler overhead: {1e3 * rows[-1]['seconds']:.2f} ms per task (1000 empty tasks, 2 local workers)")
    return rows


def _noop(i: int) -> int:
    return i


def task_overhead(n: int = 1000) -> float:
    from distributed import Client, LocalCluster, wait

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as c:
        wait(c.map(_noop, range(10), pure=False))  # warm
        t0 = time.perf_counter()
        wait(c.map(_noop, range(n), pure=False))
        return (time.perf_counter() - t0) / n


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        _child(sys.argv[2:])
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["make", "throughput", "memory", "run", "scaling"])
    p.add_argument("--model")
    p.add_argument("--shape", type=_shape, default=(4, 4096, 4096))
    p.add_argument("--small", type=_shape, default=(2, 2048, 2048))
    p.add_argument("--large", type=_shape, default=(8, 8192, 8192))
    p.add_argument("--volume", help="run: the volume to segment")
    p.add_argument("--out", help="make: the Zarr to write; run: the output folder")
    p.add_argument("--json", help="write the rows here")
    args, extra = p.parse_known_args()
    if args.what == "make":
        make_volume(args.shape, Path(args.out))
        return
    if args.what == "run":
        rows = [
            _report(
                "block-wise",
                0,
                measure(["predict", args.volume, "--out", args.out, "--model", args.model, *extra]),
            )
        ]
    elif args.what == "scaling":
        rows = scaling(args.model, args.shape, extra)
    elif args.what == "throughput":
        rows = throughput(args.model, args.shape, extra)
    else:
        rows = memory(args.model, args.small, args.large, extra)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
