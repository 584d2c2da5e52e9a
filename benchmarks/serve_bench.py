"""`biounet serve` against `biounet predict`: requests per second and latency percentiles for one 512 x 512
slice at several concurrencies, as a fraction of the single-process predict throughput measured in the
same run (the target is 90 % or more: the service should cost little beyond the segmentation itself).

    python benchmarks/serve_bench.py --model isbi2012-membranes --precision fp32 --requests 16

The slice is ISBI 2012's first training slice (../shared/data/isbi2012), else a synthetic one. The
baseline runs `predict_files` (what `biounet predict` runs) on it in this process, half of its requests
before the service's and half after, so that a machine whose load drifts during the run weighs on both
alike; a second baseline runs the same in a thread that is not the main one, as the service's worker
does (PyTorch on the CPU has measured faster off the main thread here, which would otherwise count in
the service's favour: docs/serve.md). The service runs in its own process (`python -m
biounet serve`, the same model, precision and threads) on a free loopback port; one
request is what a client does: upload the image (POST /api/v1/jobs), wait for the job (a long poll),
download membrane.tif. Requests are sent by CONCURRENCY client threads; each level starts with one
warm-up request that is not counted.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
ISBI = ROOT.parent / "shared" / "data" / "isbi2012" / "train-volume.tif"
SIDE = 512


def slice_png() -> tuple[bytes, str]:
    """A 512 x 512 8-bit slice as PNG bytes, and where it came from."""
    if ISBI.is_file():
        import tifffile

        pixels, source = tifffile.imread(ISBI, key=0)[:SIDE, :SIDE], f"{ISBI.name} slice 0"
    else:
        rng = np.random.default_rng(0)
        pixels, source = rng.integers(0, 256, (SIDE, SIDE), dtype=np.uint8), "synthetic noise"
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue(), source


def predictor_of(args: argparse.Namespace):
    """``run(png, count, out)``: seconds of each of ``count`` predict runs on ``png``, with the model
    opened once, as `biounet predict` opens it."""
    from biounet.models import open_model
    from biounet.segment.predict import predict_files

    predictor, cfg, _ = open_model(args.model, "auto", args.precision, args.threads)
    labels = None if args.labels == "none" else args.labels

    def run(png: Path, count: int, out: Path, in_thread: bool = False) -> list[float]:
        times: list[float] = []

        def loop() -> None:
            for _ in range(count):
                began = time.perf_counter()
                predict_files([png], predictor, cfg, out, labels=labels, log=lambda _: None)
                times.append(time.perf_counter() - began)

        if in_thread:  # as the service's worker runs it
            worker = threading.Thread(target=loop)
            worker.start()
            worker.join()
        else:
            loop()
        return times

    return run


class Service:
    """The service in a subprocess on a free loopback port; stops on exit."""

    def __init__(self, args: argparse.Namespace, queue_size: int, work: Path) -> None:
        command = [sys.executable, "-m", "biounet", "serve", "--model", args.model, "--port", "0"]
        command += ["--precision", args.precision, "--threads", str(args.threads), "--queue-size", str(queue_size)]
        command += ["--work-dir", str(work)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.port = self._wait_for_port()
        threading.Thread(target=self.process.stderr.read, daemon=True).start()  # keep the pipe drained

    def _wait_for_port(self) -> int:
        for line in self.process.stderr:
            found = re.search(r"running on http://127\.0\.0\.1:(\d+)", line)
            if found:
                return int(found.group(1))
        raise SystemExit(f"the service ended before it listened (exit status {self.process.wait()})")

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        try:
            conn.request(method, path, body=body)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def one(self, png: bytes, labels: str) -> float:
        """Seconds for one client's request: upload, wait, download the membrane probability."""
        began = time.perf_counter()
        status, body = self.request("POST", f"/api/v1/jobs?labels={labels}", png)
        if status != 202:
            raise SystemExit(f"the service answered {status}: {body[:200]!r}")
        url = json.loads(body)["status_url"]
        while (job := json.loads(self.request("GET", f"{url}?wait=60")[1]))["status"] not in ("done", "failed"):
            pass
        if job["status"] != "done":
            raise SystemExit(f"a job failed: {job['error']}")
        status, tif = self.request("GET", job["results"]["membrane.tif"])
        assert status == 200 and tif, "membrane.tif did not come"
        self.request("DELETE", url)
        return time.perf_counter() - began

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(60)


def measure(service: Service, png: bytes, labels: str, requests: int, concurrency: int) -> dict[str, float]:
    service.one(png, labels)  # warm-up: the first forward pass of a shape allocates and tunes
    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(lambda _: service.one(png, labels), range(requests)))
    wall = time.perf_counter() - began
    p50, p90, p99 = np.percentile(latencies, [50, 90, 99])
    return {
        "concurrency": concurrency,
        "requests": requests,
        "rps": requests / wall,
        "p50": p50,
        "p90": p90,
        "p99": p99,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="isbi2012-membranes", help="as `biounet serve --model` (default: built-in)")
    parser.add_argument("--precision", default="fp32", choices=["auto", "bf16", "fp16", "fp32"])
    parser.add_argument("--threads", type=int, default=0, help="CPU threads of both (default: one per core)")
    parser.add_argument("--requests", type=int, default=16, help="requests per concurrency level and for predict")
    parser.add_argument("--concurrency", default="1,4,16", help="client threads, comma-separated (default: 1,4,16)")
    parser.add_argument("--labels", default="none", help="instance method of both, or none (default: none)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    png_bytes, source = slice_png()
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        png = Path(tmp) / "slice.png"
        png.write_bytes(png_bytes)
        predict = predictor_of(args)
        predict(png, 1, Path(tmp) / "predict")  # warm-up, not counted, as the service's
        half = args.requests // 2
        before = predict(png, half, Path(tmp) / "predict")
        before_thread = predict(png, half, Path(tmp) / "predict", in_thread=True)
        work = Path(tmp) / "work"
        work.mkdir()
        with Service(args, max(levels) + 1, work) as service:
            rows = [measure(service, png_bytes, args.labels, args.requests, c) for c in levels]
        after = predict(png, args.requests - half, Path(tmp) / "predict")
        after_thread = predict(png, args.requests - half, Path(tmp) / "predict", in_thread=True)
    baseline = len(before + after) / sum(before + after)
    threaded = len(before_thread + after_thread) / sum(before_thread + after_thread)
    threads = args.threads or "one per core"
    print(f"model {args.model}, precision {args.precision}, threads {threads}, labels {args.labels}")
    print(f"slice {SIDE}x{SIDE} ({source}); {args.requests} requests per level")
    print(f"predict (single process, main thread): {baseline:.3f} slices/s ({1 / baseline:.2f} s per slice)")
    print(f"predict (single process, in a thread as the service runs it): {threaded:.3f} slices/s")
    print(
        f"{'concurrency':>11} {'req/s':>7} {'p50 s':>7} {'p90 s':>7} {'p99 s':>7} {'of predict':>10} {'of thread':>9}"
    )
    for row in rows:
        row["fraction"], row["fraction_of_thread"] = row["rps"] / baseline, row["rps"] / threaded
        print(
            f"{row['concurrency']:>11} {row['rps']:>7.3f} {row['p50']:>7.2f} {row['p90']:>7.2f} {row['p99']:>7.2f} "
            f"{100 * row['fraction']:>9.1f}% {100 * row['fraction_of_thread']:>8.1f}%"
        )
    if args.json:
        figures = {"predict_slices_per_s": baseline, "predict_in_thread_slices_per_s": threaded, "levels": rows}
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
