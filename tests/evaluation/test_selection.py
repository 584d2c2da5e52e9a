"""cv --labels: parameters and thresholds chosen on the other folds, never on the reported one."""

import numpy as np
import pytest

import biounet.evaluation.selection as selection
from biounet.core.errors import ConfigError
from biounet.evaluation.challenge import THRESHOLDS
from biounet.evaluation.selection import (
    HeldOut,
    candidates,
    select_and_score,
    selection_table,
    summary_table,
    worst_slice,
)
from biounet.instances.methods import METHODS


def _fake_scores(monkeypatch):
    """Slices of constant value L: a method whose per-slice V_rand is best where beta equals L, and a
    threshold sweep whose best threshold is L too. What is chosen shows which slices were read."""

    def score_instances(probs, masks, method, params, affinities=None, offsets=()):
        source = affinities if affinities is not None else probs  # an affinity method reads the affinities
        per = [1 - abs(params["beta"] - float(p.mean())) for p in source]
        out = {"params": dict(params), "v_rand": float(np.mean(per)), "v_info": 0.5, "pixel_error": 0.1}
        return out | {f"{k}_per_image": per for k in selection.PER_IMAGE}

    def challenge_scores(probs, masks, thresholds=THRESHOLDS):
        level = float(np.mean([p.mean() for p in probs]))
        sweep = [1 - abs(t - level) / 2 for t in thresholds]
        k = int(np.argmax(sweep))
        out = {"v_rand": sweep[k], "v_info": 0.5, "pixel_error": 0.1, "v_rand_per_threshold": sweep}
        return out | {f"{m}_threshold": round(thresholds[k], 12) for m in ("v_rand", "v_info", "pixel_error")}

    monkeypatch.setattr(selection, "score_instances", score_instances)
    monkeypatch.setattr(selection, "challenge_scores", challenge_scores)


def _folds(levels):
    image = np.zeros((4, 4))
    return {str(k): HeldOut([image + v], [image], [k], [image]) for k, v in enumerate(levels)}


def test_each_fold_gets_the_parameters_and_threshold_of_the_other_folds(monkeypatch):
    _fake_scores(monkeypatch)
    monkeypatch.setitem(selection.GRIDS, "multicut", {"beta": [0.3, 0.5, 0.7]})
    reports = select_and_score(_folds((0.3, 0.7, 0.3, 0.5)), "multicut", log=lambda s: None)
    # fold 1 alone would choose 0.7; the other folds (0.3, 0.3, 0.5) choose 0.3 (mean V_rand 0.93)
    assert reports["1"]["params"] == {"beta": 0.3} and reports["1"]["threshold_chosen"]["threshold"] == 0.3
    # fold 0 alone would choose 0.3; the others (0.7, 0.3, 0.5) choose 0.5 (0.87 against 0.8 and 0.8)
    assert reports["0"]["params"] == {"beta": 0.5}
    assert reports["1"]["threshold_best_on_fold"]["v_rand"] > reports["1"]["threshold_chosen"]["v_rand"]
    assert reports["1"]["per_image"][0]["index"] == 1
    table = selection_table(reports)
    assert "| mean |" in table and "v_rand_split" in table
    summary = summary_table({"multicut": reports})
    assert summary.count("\n") == 5 and "lowest fold" in summary


def test_the_reported_fold_is_never_read_for_the_choice(monkeypatch):
    """Changing only fold 1's slices changes nothing chosen for fold 1."""
    _fake_scores(monkeypatch)
    monkeypatch.setitem(selection.GRIDS, "multicut", {"beta": [0.3, 0.5, 0.7]})
    a = select_and_score(_folds((0.3, 0.3, 0.5)), "multicut", log=lambda s: None)
    b = select_and_score(_folds((0.3, 0.7, 0.5)), "multicut", log=lambda s: None)
    assert a["1"]["params"] == b["1"]["params"]
    assert a["1"]["threshold_chosen"]["threshold"] == b["1"]["threshold_chosen"]["threshold"]


def test_grids_cover_every_method_and_one_fold_is_refused():
    from biounet.instances.methods import METHODS, method_params

    assert set(selection.GRIDS) == set(METHODS)
    for method in METHODS:  # every candidate is a valid setting of its method
        for params in candidates(method):
            method_params(method, **params)
    assert len(candidates("mws")) == 18 and {"stride", "attractive_bias", "min_size"} == set(candidates("mws")[0])
    assert candidates("watershed") == [{}]
    assert len(candidates("multicut")) == 5 and all("beta" in c for c in candidates("gasp"))
    with pytest.raises(ConfigError, match="at least 2 folds"):
        select_and_score(_folds((0.5,)), "watershed")
    with pytest.raises(ConfigError, match="no parameter grid"):
        candidates("magic")


def test_worst_slice_is_drawn_beside_the_truth():
    mask = np.ones((32, 32), np.int64)
    mask[:, 16] = 0  # two cells
    good, merged = mask.astype(np.float32), np.ones((32, 32), np.float32)
    folds = {
        "0": HeldOut([good], [mask], [3], [mask.astype(np.float32)]),
        "1": HeldOut([merged], [mask], [7], [mask.astype(np.float32)]),
    }
    reports = select_and_score(folds, "watershed", log=lambda s: None)
    fold, index, picture = worst_slice(folds, reports)
    assert (fold, index) == ("1", 7) and picture.shape == (32, 2 * 32 + 8, 3)
    assert reports["1"]["per_image"][0]["v_rand_merge"] < reports["1"]["per_image"][0]["v_rand_split"]


# --- methods that read affinities ---------------------------------------------------------------


def test_an_affinity_method_chooses_on_the_other_folds_affinities(monkeypatch):
    """The slices' cell probabilities all say 0.5; their affinities say the fold's level: the choice
    follows the affinities of the other folds, slice for slice in the same order as the masks."""
    from biounet.data.affinities import DEFAULT_OFFSETS

    _fake_scores(monkeypatch)
    monkeypatch.setitem(selection.GRIDS, "multicut-aff", {"beta": [0.3, 0.5, 0.7]})
    image = np.zeros((4, 4))
    folds = {
        str(k): HeldOut([image + 0.5], [image], [k], None, [np.zeros((12, 4, 4)) + v], DEFAULT_OFFSETS)
        for k, v in enumerate((0.3, 0.7, 0.3, 0.5))
    }
    reports = select_and_score(folds, "multicut-aff", log=lambda s: None)
    assert reports["1"]["params"] == {"beta": 0.3} and reports["0"]["params"] == {"beta": 0.5}


def _noisy_grid(seed: int):
    """(mask, cell probability, affinities) of 2 x 2 square cells behind 2-pixel membranes, the
    affinities exact plus noise: the mutex watershed over-segments them without a positive bias."""
    from biounet.data.affinities import DEFAULT_OFFSETS, affinity_targets
    from biounet.data.affinities import instance_labels as grown

    mask = np.zeros((44, 44), np.int64)
    for y0 in (2, 23):
        for x0 in (2, 23):
            mask[y0 : y0 + 19, x0 : x0 + 19] = 1
    aff = affinity_targets(grown(mask), DEFAULT_OFFSETS)[0]
    noisy = np.clip(aff + np.random.default_rng(seed).normal(0, 0.25, aff.shape), 0, 1).astype(np.float32)
    return mask, mask.astype(np.float32), noisy


def test_the_mutex_watershed_is_chosen_and_scored_on_real_affinities(monkeypatch):
    from biounet.data.affinities import DEFAULT_OFFSETS

    monkeypatch.setitem(selection.GRIDS, "mws", {"attractive_bias": [-0.3, 0.1], "min_size": [25]})
    folds = {}
    for k in range(3):
        mask, prob, aff = _noisy_grid(k)
        folds[str(k)] = HeldOut([prob], [mask], [k], [prob], [aff], DEFAULT_OFFSETS)
    reports = select_and_score(folds, "mws", log=lambda s: None)
    for r in reports.values():
        assert r["params"] == {**METHODS["mws"].defaults, "attractive_bias": 0.1, "min_size": 25}
        assert r["v_rand"] == pytest.approx(1.0)
    fold, index, picture = worst_slice(folds, reports)
    assert picture.shape == (44, 2 * 44 + 8, 3)
    # a fold without affinities (a model trained with --affinities none) cannot choose for mws
    folds["1"] = HeldOut(folds["1"].probs, folds["1"].masks, [1], None)
    with pytest.raises(ConfigError, match="the folds differ.*one --affinities setting"):
        select_and_score(folds, "mws", log=lambda s: None)
    none = {k: HeldOut(h.probs, h.masks, h.indices) for k, h in folds.items()}
    with pytest.raises(ConfigError, match="--affinities mws12"):
        select_and_score(none, "mws", log=lambda s: None)
