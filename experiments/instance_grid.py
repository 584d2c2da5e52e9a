"""Try another parameter grid for an instance method on a finished `cv` run, chosen the honest way
(each fold's parameters on the other folds' held-out slices), without segmenting anything again:
the held-out predictions come from each fold's `heldout.npz`.

    python benchmarks/instance_grid.py runs/cv-cpu multicut \\
        '{"beta": [0.3, 0.4, 0.5, 0.6, 0.7], "weighting": ["none", "length"]}'

Prints the table of `cv-labels.md` for this grid (with both thresholded baselines) and the
parameters chosen per fold; writes nothing.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from biounet.core.config import load_yaml
from biounet.data import kfold_split, open_dataset
from biounet.evaluation import selection
from biounet.evaluation.selection import HeldOut, select_and_score, summary_table
from biounet.train.crossval import read_heldout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a cv output folder whose fold-K/ hold heldout.npz")
    p.add_argument("method")
    p.add_argument("grid", help="JSON: parameter -> list of values")
    p.add_argument("--data", default=None, help="the data set (default: the one fold-0/config.yaml names)")
    args = p.parse_args()
    folds_dirs = sorted(args.run.glob("fold-*"))
    cfg = load_yaml(folds_dirs[0] / "config.yaml")
    data = open_dataset(
        args.data or cfg["data"],
        cfg["classes"],
        cfg["in_channels"],
        cfg.get("ignore_value"),
        cfg.get("mask_threshold"),
        cfg.get("masks"),
    )
    folds = {}
    for d in folds_dirs:
        fold = d.name.split("-", 1)[1]
        _, val = kfold_split(len(data), fold, int(cfg.get("folds", 5)))
        probs = read_heldout(d / "heldout.npz")
        folds[fold] = HeldOut(probs, [data.masks[i] for i in val], list(val), [data.images[i] for i in val])
    selection.GRIDS[args.method] = json.loads(args.grid)
    start = time.perf_counter()
    reports = select_and_score(folds, args.method, log=lambda s: None)
    print(f"{args.method}, grid {args.grid}: {time.perf_counter() - start:.0f} s")
    print(summary_table({args.method: reports}))
    for fold, r in reports.items():
        print(f"fold {fold}: {r['params']}")


if __name__ == "__main__":
    main()
