"""cv --labels: parameters and thresholds chosen on the other folds, never on the reported one."""

import numpy as np
import pytest

import biounet.selection as selection
from biounet.errors import ConfigError
from biounet.selection import candidates, select_and_score, selection_table


def _fake_scores(monkeypatch):
    """A method whose V_rand is best where beta equals the images' (constant) value, and a threshold
    sweep whose best threshold is that value too: what is chosen shows which images were read."""

    def score_instances(probs, masks, method, params):
        level = float(np.mean([p.mean() for p in probs]))
        return {"params": dict(params), "v_rand": 1 - abs(params["beta"] - level), "v_info": 0.5, "pixel_error": 0.1}

    def challenge_scores(probs, masks, thresholds=None):
        level = float(np.mean([p.mean() for p in probs]))
        t = level if thresholds is None else thresholds[0]
        out = {"v_rand": 1 - abs(t - level) / 2, "v_info": 0.5, "pixel_error": 0.1}
        return out | {f"{k}_threshold": round(level, 1) for k in ("v_rand", "v_info", "pixel_error")}

    monkeypatch.setattr(selection, "score_instances", score_instances)
    monkeypatch.setattr(selection, "challenge_scores", challenge_scores)


def test_each_fold_gets_the_parameters_and_threshold_of_the_other_folds(monkeypatch):
    _fake_scores(monkeypatch)
    monkeypatch.setitem(selection.GRIDS, "multicut", {"beta": [0.3, 0.5, 0.7]})
    image = np.zeros((4, 4))
    folds = {str(k): ([image + v], [image]) for k, v in enumerate((0.3, 0.7, 0.3))}
    reports = select_and_score(folds, "multicut", log=lambda s: None)
    # fold 1 alone would choose 0.7; the other folds (0.3, 0.3) choose 0.3
    assert reports["1"]["params"] == {"beta": 0.3} and reports["1"]["threshold_chosen"]["threshold"] == 0.3
    # fold 0: the others average 0.5
    assert reports["0"]["params"] == {"beta": 0.5}
    assert reports["1"]["threshold_best_on_fold"]["v_rand"] > reports["1"]["threshold_chosen"]["v_rand"]
    assert "| mean |" in selection_table(reports)


def test_grids_cover_every_method_and_one_fold_is_refused():
    assert candidates("watershed") == [{}]
    assert len(candidates("multicut")) == 5 and all("beta" in c for c in candidates("gasp"))
    with pytest.raises(ConfigError, match="at least 2 folds"):
        select_and_score({"1": ([np.zeros((2, 2))], [np.zeros((2, 2))])}, "watershed")
    with pytest.raises(ConfigError, match="no parameter grid"):
        candidates("magic")
