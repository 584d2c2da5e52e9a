"""Honest parameter selection for ``cv --labels METHOD``: each fold's parameters (and, for the
thresholded baseline, its threshold) are chosen on the OTHER folds' held-out predictions, never on
the fold that is reported.

Every fold's model segments its own held-out slices once (``crossval.py``). For fold k, every
candidate in the method's grid is scored (mean V_rand, the challenge's definition) on the held-out
slices of the folds other than k, the best is applied to fold k, and fold k's scores are reported.
The thresholded baseline is reported twice: with the challenge's own best threshold on the fold
(the challenge's measure, which looks at the fold) and with the threshold chosen the same honest
way, so a method is compared with a baseline that had the same chance.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .challenge import challenge_scores
from .errors import ConfigError
from .evaluate import score_instances
from .metrics import CHALLENGE_METRICS

# The parameters searched per method (the rest keep their defaults, biounet.instances).
GRIDS: dict[str, dict[str, list[Any]]] = {
    "watershed": {},
    "multicut": {"beta": [0.3, 0.4, 0.5, 0.6, 0.7]},
    "gasp": {"beta": [0.3, 0.4, 0.5, 0.6, 0.7]},
    "objects": {"threshold": [0.3, 0.4, 0.5, 0.6, 0.7]},
}

FoldData = Mapping[str, tuple[Sequence[np.ndarray], Sequence[np.ndarray]]]  # fold -> (cell probs, masks)


def candidates(method: str) -> list[dict[str, Any]]:
    """Every parameter set of ``method``'s grid (one empty set for a method without parameters)."""
    if method not in GRIDS:
        raise ConfigError(f"no parameter grid for instance method {method!r}; known: {', '.join(sorted(GRIDS))}")
    grid = GRIDS[method]
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def _others(folds: FoldData, fold: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    probs: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    for name, (p, m) in folds.items():
        if name != fold:
            probs.extend(p)
            masks.extend(m)
    return probs, masks


def select_and_score(folds: FoldData, method: str, log: Callable[[str], object] = print) -> dict[str, dict[str, Any]]:
    """fold -> report of ``method`` with the parameters chosen on the other folds, and the two
    thresholded baselines (``threshold_best_on_fold``: the challenge's; ``threshold_chosen``)."""
    if len(folds) < 2:
        raise ConfigError(
            "choosing parameters on the other folds needs at least 2 folds; run cv on more folds (e.g. all 5)"
        )
    grid = candidates(method)
    reports: dict[str, dict[str, Any]] = {}
    for fold in folds:
        probs, masks = _others(folds, fold)
        # the baseline's threshold: the best for the other folds' slices together, as the challenge chooses one
        sweep = challenge_scores(probs, masks)
        threshold = sweep["v_rand_threshold"]
        best, best_score = grid[0], -np.inf
        if len(grid) > 1:
            for params in grid:
                score = score_instances(probs, masks, method, params)["v_rand"]
                if score > best_score:
                    best, best_score = params, score
        fold_probs, fold_masks = list(folds[fold][0]), list(folds[fold][1])
        chosen = score_instances(fold_probs, fold_masks, method, best)
        on_fold = challenge_scores(fold_probs, fold_masks)
        honest = challenge_scores(fold_probs, fold_masks, thresholds=(threshold,))
        reports[fold] = {
            "method": method,
            "params": chosen["params"],
            **{name: chosen[name] for name in CHALLENGE_METRICS},
            "threshold_best_on_fold": {name: on_fold[name] for name in CHALLENGE_METRICS}
            | {"threshold": on_fold["v_rand_threshold"]},
            "threshold_chosen": {name: honest[name] for name in CHALLENGE_METRICS} | {"threshold": threshold},
            **{k: chosen[k] for k in chosen if k.startswith("object_")},
        }
        log(
            f"fold {fold}: {method} {chosen['params']} v_rand {chosen['v_rand']:.4f} v_info {chosen['v_info']:.4f}; "
            f"thresholded v_rand {on_fold['v_rand']:.4f} (best on fold), {honest['v_rand']:.4f} (chosen: {threshold})"
        )
    return reports


def selection_table(reports: dict[str, dict[str, Any]]) -> str:
    """Markdown: per fold the method's V_rand and V_info beside the two thresholded baselines, then means."""
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
    return "\n".join(lines) + "\n"
