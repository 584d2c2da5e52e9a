"""Score one run's held-out probabilities with biounet's old V_rand/V_info definition (the metrics
module of commit 8acb40f, read from git history) and with the challenge's definition now in use.

    python benchmarks/old_vs_challenge_definition.py runs/cpu-f1 --data ../shared/data/isbi2012

Prints JSON: each measure's value and threshold under both definitions (TTA, as the recipes score).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

OLD_COMMIT = "8acb40f"  # the last commit with the skeletonised-ground-truth definition


def old_metrics_module():
    """The old ``biounet.evaluation.metrics`` as a stand-alone module (its two package imports replaced)."""
    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(
        ["git", "show", f"{OLD_COMMIT}:src/biounet/metrics.py"], cwd=root, check=True, capture_output=True, text=True
    ).stdout
    source = source.replace("from .data.readers import IGNORE", "IGNORE = -1")
    source = source.replace("from .errors import ConfigError", "ConfigError = ValueError")
    path = Path(tempfile.mkdtemp()) / "old_metrics.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_metrics", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run folder or checkpoint")
    parser.add_argument("--data", required=True, help="the ISBI 2012 folder")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    args = parser.parse_args()
    from biounet.data import kfold_split, read_dataset
    from biounet.evaluation import challenge
    from biounet.models import load_predictor
    from biounet.segment.inference import segment

    predictor, cfg, ckpt = load_predictor(args.run, "cpu", args.precision)
    data = read_dataset(args.data)
    _, val = kfold_split(len(data), cfg.fold, cfg.folds)
    probs = [segment(data.images[i], predictor, cfg.depth, cfg.padding, tta=True)[1] for i in val]
    masks = [data.masks[i] for i in val]
    new, old = challenge.challenge_scores(probs, masks), old_metrics_module().challenge_scores(probs, masks)
    out = {"run": args.run, "step": ckpt["step"], "precision": args.precision, "tta": True}
    for key in ("pixel_error", "v_rand", "v_info"):
        out[key] = {
            "old": old[key],
            "challenge": new[key],
            "old_threshold": old[f"{key}_threshold"],
            "challenge_threshold": new[f"{key}_threshold"],
        }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
