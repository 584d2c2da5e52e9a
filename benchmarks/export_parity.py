"""Exported model vs PyTorch on the held-out ISBI slices: probability difference, metric
differences and seconds per slice, all in one run.

    python benchmarks/export_parity.py RUN_DIR_OR_CKPT DATA_DIR [--fold 1] [--json FILE]

Exports the checkpoint to ONNX and to a torch.export program in a temporary folder, then segments
the fold's validation slices with PyTorch float32 (eager), onnxruntime and the exported program.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from biounet.data import kfold_split, read_dataset
from biounet.deploy.export import export_model, load_exported
from biounet.evaluation.evaluate import evaluate_images
from biounet.models import load_predictor
from biounet.segment.inference import segment

METRICS = ("dice_coeff", "dice_coeff_388", "pixel_error", "pixel_mismatch", "v_rand", "v_info")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("data")
    ap.add_argument("--fold", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch_pred, cfg, _ = load_predictor(args.checkpoint, "cpu", "fp32")
    fold = args.fold or cfg.fold
    data = read_dataset(args.data, cfg.classes, cfg.in_channels, cfg.ignore_value, cfg.mask_threshold, cfg.painted)
    _, val = kfold_split(len(data), fold, cfg.folds)
    runtimes = {"pytorch-fp32": torch_pred}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, name in (("onnx", "model.onnx"), ("program", "model.pt2")):
            t0 = time.perf_counter()
            path = export_model(args.checkpoint, fmt, Path(tmp) / name)
            print(f"exported {fmt} in {time.perf_counter() - t0:.1f} s")
            runtimes[f"{fmt}"] = load_exported(path, "cpu")[0]
        probs, seconds = {}, {}
        for name, pred in runtimes.items():
            segment(data.images[val[0]], pred, cfg.depth, cfg.padding)  # warm-up
            out, times = [], []
            for i in val:
                t0 = time.perf_counter()
                out.append(segment(data.images[i], pred, cfg.depth, cfg.padding))
                times.append(time.perf_counter() - t0)
            probs[name], seconds[name] = out, statistics.median(times)
        reports = {name: evaluate_images(pred, data, val, cfg.depth, cfg.padding) for name, pred in runtimes.items()}
    result = {"fold": fold, "slices": [data.names[i] for i in val], "seconds_per_slice": seconds}
    for name in runtimes:
        if name == "pytorch-fp32":
            continue
        diff = max(float(np.abs(a - b).max()) for a, b in zip(probs[name], probs["pytorch-fp32"]))
        result[name] = {
            "max_abs_prob_diff": diff,
            "metric_diffs": {k: abs(reports[name][k] - reports["pytorch-fp32"][k]) for k in METRICS},
        }
    result["metrics_pytorch"] = {k: reports["pytorch-fp32"][k] for k in METRICS}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
