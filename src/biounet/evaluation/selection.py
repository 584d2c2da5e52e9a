"""Honest parameter selection for ``cv --labels METHOD``: each fold's parameters (and, for the
thresholded baseline, its threshold) are chosen on the OTHER folds' held-out predictions, never on
the fold that is reported.

Every fold's model segments its own held-out slices once (``crossval.py``). Every candidate in the
method's grid then makes instances of every held-out slice once and is scored per slice (V_rand,
the challenge's definition); for fold k the candidate with the best mean over the slices of the
other folds is applied to fold k, and fold k's scores are reported. The thresholded baseline is
reported twice: with the challenge's own best threshold on the fold (the challenge's measure,
which looks at the fold) and with the threshold chosen the same honest way, so a method is
compared with a baseline that had the same chance. Each report keeps the split and merge parts of
V_rand and V_info per slice, and the slice that scored worst can be drawn (:func:`worst_slice`).
A method that reads affinities (mws, multicut-aff, gasp-aff) takes them from the folds' held-out
affinities (``HeldOut.affinities``), which a model trained with ``--affinities`` predicts.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from biounet.core.errors import ConfigError
from biounet.evaluation.challenge import SPLIT_MERGE, THRESHOLDS, challenge_scores, first_best
from biounet.evaluation.evaluate import score_instances
from biounet.evaluation.metrics import CHALLENGE_METRICS
from biounet.instances.methods import check_inputs, needs_affinities

# The parameters searched per method (the rest keep their defaults, biounet.instances.methods), declared
# before any run they are chosen on. The mutex watershed's: repulsive edges every pixel or every other one,
# the attractive bias around the paper's 0, and no size filter, the superpixels' 25 pixels or elf's 100
# (18 settings; one takes 0.5-1 s on a 512 x 512 slice of clean affinities, up to 5 s on noisy ones).
GRIDS: dict[str, dict[str, list[Any]]] = {
    "watershed": {},
    "multicut": {"beta": [0.3, 0.4, 0.5, 0.6, 0.7]},
    "gasp": {"beta": [0.3, 0.4, 0.5, 0.6, 0.7]},
    "objects": {"threshold": [0.3, 0.4, 0.5, 0.6, 0.7]},
    "mws": {"stride": [1, 2], "attractive_bias": [-0.1, 0.0, 0.1], "min_size": [0, 25, 100]},
    "multicut-aff": {"beta": [0.3, 0.4, 0.5, 0.6, 0.7]},
    "gasp-aff": {"beta": [0.3, 0.4, 0.5, 0.6, 0.7]},
}
PER_IMAGE = ("v_rand", "v_info", *SPLIT_MERGE)


@dataclass
class HeldOut:
    """One fold's held-out slices: cell probabilities, masks, their indices in the data set, (for
    drawing) the images, and for a model that predicts them the (C, H, W) affinities of ``offsets``."""

    probs: list[np.ndarray]
    masks: list[np.ndarray]
    indices: list[int]
    images: list[np.ndarray] | None = None
    affinities: list[np.ndarray] | None = None
    offsets: tuple[tuple[int, int], ...] = ()


FoldData = Mapping[str, HeldOut]


def candidates(method: str) -> list[dict[str, Any]]:
    """Every parameter set of ``method``'s grid (one empty set for a method without parameters)."""
    if method not in GRIDS:
        raise ConfigError(f"no parameter grid for instance method {method!r}; known: {', '.join(sorted(GRIDS))}")
    grid = GRIDS[method]
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def _flatten(folds: FoldData) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    probs = [p for h in folds.values() for p in h.probs]
    masks = [m for h in folds.values() for m in h.masks]
    owner = np.array([name for name, h in folds.items() for _ in h.probs])
    return probs, masks, owner


def _affinities(folds: FoldData, method: str) -> tuple[list[np.ndarray] | None, tuple[tuple[int, int], ...]]:
    """Every fold's held-out affinities in the order of :func:`_flatten` and their offsets, for a method
    that reads them (else (None, ())); a ConfigError naming the fix where a fold has none."""
    if not needs_affinities(method):
        return None, ()
    kinds = {h.offsets if h.affinities is not None else () for h in folds.values()}
    if len(kinds) != 1:
        raise ConfigError(
            f"{method} reads every fold's held-out affinities, but the folds differ (some without affinities, or "
            f"with other offsets): run cv with one --affinities setting for every fold"
        )
    (offsets,) = kinds
    check_inputs([method], offsets)
    return [a for h in folds.values() for a in h.affinities or []], offsets


def _sweeps(probs: list[np.ndarray], masks: list[np.ndarray]) -> np.ndarray:
    """(slices, thresholds) V_rand of each slice thresholded at each of the challenge's thresholds."""
    return np.array([challenge_scores([p], [m])["v_rand_per_threshold"] for p, m in zip(probs, masks)])


def select_and_score(folds: FoldData, method: str, log: Callable[[str], object] = print) -> dict[str, dict[str, Any]]:
    """fold -> report of ``method`` with the parameters chosen on the other folds, its per-slice
    scores (``per_image``), and the two thresholded baselines (``threshold_best_on_fold``: the
    challenge's; ``threshold_chosen``)."""
    if len(folds) < 2:
        raise ConfigError(
            "choosing parameters on the other folds needs at least 2 folds; run cv on more folds (e.g. all 5)"
        )
    grid = candidates(method)
    probs, masks, owner = _flatten(folds)
    affinities, offsets = _affinities(folds, method)
    # every candidate scored once on every slice; a fold's choice reads only the other folds' rows
    per_slice = (
        [score_instances(probs, masks, method, p, affinities, offsets)["v_rand_per_image"] for p in grid]
        if len(grid) > 1
        else []
    )
    sweeps = _sweeps(probs, masks)
    reports: dict[str, dict[str, Any]] = {}
    for fold, held in folds.items():
        others = owner != fold
        best = grid[first_best([np.mean(np.asarray(v)[others]) for v in per_slice])[1]] if per_slice else grid[0]
        threshold = THRESHOLDS[first_best(sweeps[others].mean(axis=0))[1]]
        chosen = score_instances(held.probs, held.masks, method, best, held.affinities, held.offsets)
        on_fold = challenge_scores(held.probs, held.masks)
        honest = challenge_scores(held.probs, held.masks, thresholds=(threshold,))
        reports[fold] = {
            "method": method,
            "params": chosen["params"],
            **{name: chosen[name] for name in CHALLENGE_METRICS},
            "threshold_best_on_fold": {name: on_fold[name] for name in CHALLENGE_METRICS}
            | {"threshold": on_fold["v_rand_threshold"]},
            "threshold_chosen": {name: honest[name] for name in CHALLENGE_METRICS}
            | {"threshold": round(threshold, 12)},
            "per_image": [
                {"index": i, **{name: chosen[f"{name}_per_image"][k] for name in PER_IMAGE}}
                for k, i in enumerate(held.indices)
            ],
            **{k: chosen[k] for k in chosen if k.startswith("object_")},
        }
        log(
            f"fold {fold}: {method} {chosen['params']} v_rand {chosen['v_rand']:.4f} v_info {chosen['v_info']:.4f}; "
            f"thresholded v_rand {on_fold['v_rand']:.4f} (best on fold), "
            f"{honest['v_rand']:.4f} (chosen: {threshold:.1f})"
        )
    return reports


def selection_table(reports: dict[str, dict[str, Any]]) -> str:
    """Markdown: per fold the method's V_rand and V_info beside the two thresholded baselines, then
    means; below, every slice's V_rand and V_info with their split and merge parts."""
    method = next(iter(reports.values()))["method"]
    head = (
        f"| fold | {method} params | {method} v_rand | {method} v_info | thresholded v_rand (best on fold) "
        "| thresholded v_rand (chosen) | thresholded v_info (chosen) |"
    )
    lines = [head, "| --- |" + " --- |" * 6]
    rows = []
    for fold, r in reports.items():
        row = [
            r["v_rand"],
            r["v_info"],
            r["threshold_best_on_fold"]["v_rand"],
            r["threshold_chosen"]["v_rand"],
            r["threshold_chosen"]["v_info"],
        ]
        rows.append(row)
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "-"
        lines.append(f"| {fold} | {params} | " + " | ".join(f"{v:.4f}" for v in row) + " |")
    means = np.mean(rows, axis=0)
    lines.append("| mean | | " + " | ".join(f"{v:.4f}" for v in means) + " |")
    lines += ["", f"Per slice ({method}; a part is 1 when the method made no error of its kind):", ""]
    lines += ["| fold | slice | " + " | ".join(PER_IMAGE) + " |", "| --- | --- |" + " --- |" * len(PER_IMAGE)]
    for fold, r in reports.items():
        for row in r["per_image"]:
            lines.append(f"| {fold} | {row['index']} | " + " | ".join(f"{row[k]:.4f}" for k in PER_IMAGE) + " |")
    return "\n".join(lines) + "\n"


def summary_table(by_method: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Markdown: one row per method (and the two thresholded baselines): mean V_rand and V_info over
    the folds, the lowest fold's V_rand, and each fold's V_rand."""
    first = next(iter(by_method.values()))
    folds = list(first)
    rows: dict[str, list[dict[str, float]]] = {
        "thresholded (challenge's best threshold on the fold)": [first[f]["threshold_best_on_fold"] for f in folds],
        "thresholded (threshold chosen on the other folds)": [first[f]["threshold_chosen"] for f in folds],
    }
    for method, reports in by_method.items():
        rows[f"{method} (parameters chosen on the other folds)"] = [reports[f] for f in folds]
    lines = [
        "| method | mean v_rand | mean v_info | lowest fold v_rand | " + " | ".join(f"fold {f}" for f in folds) + " |",
        "| --- | --- | --- | --- |" + " --- |" * len(folds),
    ]
    for name, scores in rows.items():
        v_rand = [s["v_rand"] for s in scores]
        v_info = np.mean([s["v_info"] for s in scores])
        cells = [np.mean(v_rand), v_info, min(v_rand), *v_rand]
        lines.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in cells) + " |")
    return "\n".join(lines) + "\n"


def worst_slice(folds: FoldData, reports: dict[str, dict[str, Any]]) -> tuple[str, int, np.ndarray]:
    """(fold, data-set index, picture) of the slice with the lowest V_rand: the image with the
    method's instances (left, parameters of that fold) beside the true cells (right)."""
    from biounet.evaluation.challenge import truth_segmentation
    from biounet.instances.methods import instance_labels
    from biounet.instances.overlays import instance_overlay, side_by_side

    fold, k = min(
        ((f, k) for f, r in reports.items() for k in range(len(r["per_image"]))),
        key=lambda fk: reports[fk[0]]["per_image"][fk[1]]["v_rand"],
    )
    held, report = folds[fold], reports[fold]
    if held.images is None:
        raise ConfigError("drawing the worst slice needs the held-out images")
    aff = held.affinities[k] if held.affinities is not None else None
    labels = instance_labels(held.probs[k], report["method"], affinities=aff, offsets=held.offsets, **report["params"])
    truth = truth_segmentation(held.masks[k] == 1)
    image = held.images[k]
    return fold, held.indices[k], side_by_side(instance_overlay(image, labels), instance_overlay(image, truth))
