"""Try another parameter grid for an instance method on a finished `cv` run, chosen the honest way
(each fold's parameters on the other folds' held-out slices), without segmenting anything again:
the held-out predictions (and, for a model trained with --affinities, the affinities) come from each
fold's `heldout.npz`.

    python experiments/instance_grid.py runs/cv-cpu multicut \\
        '{"beta": [0.3, 0.4, 0.5, 0.6, 0.7], "weighting": ["none", "length"]}'

The affinity methods (mws, multicut-aff, gasp-aff) can be given a subset of the network's offsets,
by channel index (the two nearest-neighbour channels first), to ask which offsets the partition needs:

    python experiments/instance_grid.py runs/cv-aff-2400 mws \\
        '{"stride": [1, 2], "attractive_bias": [-0.1, 0.0, 0.1], "min_size": [0, 25, 100]}' --offsets 0,1,2,3

Prints the table of `cv-labels.md` for this grid (with both thresholded baselines) and the
parameters chosen per fold; writes nothing. A run of one fold (`biounet cv --fold 1`) has no other
folds to choose on: its grid must then give one value per parameter, and that setting is scored on
the fold (as `evaluate --label-param` would, from the cached held-out predictions).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from biounet.core.config import load_yaml
from biounet.core.errors import ConfigError
from biounet.data import kfold_split, open_dataset
from biounet.data.affinities import offsets_for
from biounet.evaluation import selection
from biounet.evaluation.evaluate import score_instances
from biounet.evaluation.selection import HeldOut, select_and_score, summary_table
from biounet.train.crossval import read_heldout

Offsets = tuple[tuple[int, int], ...]


def parse_channels(text: str | None, offsets: Offsets) -> list[int]:
    """The channel indices ``--offsets`` names ("0,1,4"), every channel when None; the two
    nearest-neighbour channels must stay first (the methods read them as the attractive edges)."""
    if text is None:
        return list(range(len(offsets)))
    try:
        channels = [int(c) for c in text.split(",")]
    except ValueError:
        raise ConfigError(f"--offsets {text!r}: give comma-separated channel indices, e.g. 0,1,2,3") from None
    if not offsets:
        raise ConfigError("--offsets: this cv run's model predicts no affinities (trained without --affinities)")
    bad = [c for c in channels if not 0 <= c < len(offsets)]
    if bad or len(set(channels)) != len(channels):
        raise ConfigError(f"--offsets {text!r}: each index once, from 0 to {len(offsets) - 1}")
    if channels[:2] != [0, 1]:
        raise ConfigError(f"--offsets {text!r} must start with 0,1 (the nearest-neighbour, attractive channels)")
    return channels


def subset(affinities: Sequence[np.ndarray], offsets: Offsets, channels: list[int]) -> tuple[list[np.ndarray], Offsets]:
    """The affinities and offsets of ``channels`` only."""
    return [a[channels] for a in affinities], tuple(offsets[c] for c in channels)


def fixed_params(grid: dict[str, list[Any]]) -> dict[str, Any]:
    """The one setting a single-fold run is scored with: every parameter must have exactly one value."""
    several = sorted(k for k, v in grid.items() if len(v) != 1)
    if several:
        raise ConfigError(
            f"this cv run holds one fold, so nothing can be chosen on other folds: give one value for {several}, "
            "or run cv on more folds"
        )
    return {k: v[0] for k, v in grid.items()}


def score_fixed(held: HeldOut, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """``method`` with ``params`` on one fold's held-out slices: its v_rand and v_info."""
    scores = score_instances(held.probs, held.masks, method, params, held.affinities, held.offsets)
    return {"params": scores["params"], "v_rand": scores["v_rand"], "v_info": scores["v_info"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a cv output folder whose fold-K/ hold heldout.npz")
    p.add_argument("method")
    p.add_argument("grid", help="JSON: parameter -> list of values")
    p.add_argument("--data", default=None, help="the data set (default: the one fold-0/config.yaml names)")
    p.add_argument("--offsets", default=None, help="affinity channels to keep, e.g. 0,1,2,3 (default: all)")
    args = p.parse_args()
    folds_dirs = sorted(args.run.glob("fold-*"))
    if not folds_dirs:
        raise SystemExit(f"{args.run} holds no fold-K/ folders: give the --out folder of a finished `biounet cv`")
    cfg = load_yaml(folds_dirs[0] / "config.yaml")
    data = open_dataset(
        args.data or cfg["data"],
        cfg["classes"],
        cfg["in_channels"],
        cfg.get("ignore_value"),
        cfg.get("mask_threshold"),
        cfg.get("masks"),
    )
    all_offsets = offsets_for(cfg.get("affinities", "none"))
    try:
        channels = parse_channels(args.offsets, all_offsets)
    except ConfigError as e:
        raise SystemExit(str(e)) from None
    folds = {}
    for d in folds_dirs:
        fold = d.name.split("-", 1)[1]
        _, val = kfold_split(len(data), fold, int(cfg.get("folds", 5)))
        probs = read_heldout(d / "heldout.npz")
        aff, offsets = subset(read_heldout(d / "heldout.npz", "a"), all_offsets, channels)
        folds[fold] = HeldOut(
            probs,
            [data.masks[i] for i in val],
            list(val),
            [data.images[i] for i in val],
            aff if offsets else None,
            offsets,
        )
    grid = json.loads(args.grid)
    start = time.perf_counter()
    kept = f", offsets {list(folds[next(iter(folds))].offsets)}" if args.offsets else ""
    if len(folds) == 1:
        ((fold, held),) = folds.items()
        try:
            report = score_fixed(held, args.method, fixed_params(grid))
        except ConfigError as e:
            raise SystemExit(str(e)) from None
        print(f"{args.method}{kept}, fold {fold} alone: {time.perf_counter() - start:.0f} s")
        print(f"fold {fold}: {report['params']} v_rand {report['v_rand']:.4f} v_info {report['v_info']:.4f}")
        return
    selection.GRIDS[args.method] = grid
    reports = select_and_score(folds, args.method, log=lambda s: None)
    print(f"{args.method}, grid {args.grid}{kept}: {time.perf_counter() - start:.0f} s")
    print(summary_table({args.method: reports}))
    for fold, r in reports.items():
        print(f"fold {fold}: {r['params']}")


if __name__ == "__main__":
    main()
