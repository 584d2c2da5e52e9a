import json

import numpy as np
import pytest
import torch
from PIL import Image
from support import TINY_NET, tiny_config, write_pairs

from biounet.cli import main
from biounet.core.errors import ConfigError
from biounet.train.crossval import cv_table, parse_folds

TINY = [
    *TINY_NET,
    "--batch-size",
    "4",
    "--steps",
    "2",
    "--precision",
    "fp32",
    "--progress",
    "off",
    "--no-validation",
]


def test_parse_folds():
    assert parse_folds("0, 3", 5) == ["0", "3"]
    with pytest.raises(ConfigError, match="0..4"):
        parse_folds("1,5", 5)


def test_table_has_mean_and_std():
    summary = {
        "folds": {"0": {"dice_coeff": 0.5}, "1": {"dice_coeff": 0.7}},
        "mean": {"dice_coeff": 0.6},
        "std": {"dice_coeff": 0.1},
    }
    assert cv_table(summary).splitlines()[-1] == "| mean +- std | 0.6000 +- 0.1000 |"


def _cv_subprocess(args, **env):
    import os
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "biounet", *args], capture_output=True, text=True, timeout=600, env={**os.environ, **env}
    )


def _mtimes(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.is_file()}


@pytest.mark.slow
def test_cv_resumes_a_killed_fold_and_keeps_the_finished_ones(isbi_dir, tmp_path):
    """Fold 1 finishes; the same `cv --fold 1,2` is then SIGKILLed in fold 2 right after its step-2
    checkpoint (the engine's fault hook) and run again: fold 1 is neither retrained nor rewritten
    (only re-scored), fold 2 continues from its last.pt at step 2 (its steps 1-2 are not redone)
    and cv.json holds both folds."""
    from biounet.train.engine import FAULT_RANK, FAULT_STEP

    out = tmp_path / "cv"
    tiny = [*TINY, "--steps", "4", "--checkpoint-every", "2"]  # the later --steps wins
    first = _cv_subprocess(["cv", "--data", str(isbi_dir), "--out", str(out), "--fold", "1", *tiny])
    assert first.returncode == 0, first.stderr
    fold1 = {k: v for k, v in _mtimes(out / "fold-1").items() if k != "evaluation.json"}
    args = ["cv", "--data", str(isbi_dir), "--out", str(out), "--fold", "1,2", *tiny]
    killed = _cv_subprocess(args, **{FAULT_RANK: "0", FAULT_STEP: "2"})
    assert killed.returncode == -9, (killed.returncode, killed.stderr)  # SIGKILL, no clean-up ran
    assert "fold 1: trained (4 steps), evaluating" in killed.stdout and "fold 2: training" in killed.stdout
    fold2 = out / "fold-2"
    assert torch.load(fold2 / "last.pt", weights_only=True)["step"] == 2
    before = _mtimes(fold2)
    logged = [json.loads(x) for x in (fold2 / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2]

    again = _cv_subprocess(args)
    assert again.returncode == 0, again.stderr
    assert "fold 1: trained (4 steps), evaluating" in again.stdout
    assert "fold 2: resuming at step 2" in again.stdout
    assert {k: v for k, v in _mtimes(out / "fold-1").items() if k in fold1} == fold1  # fold 1 untouched
    assert _mtimes(fold2)["step_0000002.pt"] == before["step_0000002.pt"]  # steps 1-2 not redone
    rows = [json.loads(x) for x in (fold2 / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[:2] == logged
    assert torch.load(fold2 / "last.pt", weights_only=True)["step"] == 4
    summary = json.loads((out / "cv.json").read_text())
    assert set(summary["folds"]) == {"1", "2"} and [summary["folds"][k]["step"] for k in ("1", "2")] == [4, 4]


@pytest.mark.slow
def test_cv_trains_evaluates_and_keeps_finished_folds(isbi_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "cv"
    args = ["cv", "--data", str(isbi_dir), "--out", str(out), "--fold", "1,2", *TINY]
    assert main(args) == 0
    summary = json.loads((out / "cv.json").read_text())
    assert set(summary["folds"]) == {"1", "2"}
    assert summary["folds"]["1"]["n_images"] == 6
    assert "mean +- std" in (out / "cv.md").read_text()
    # the report says where and in what precision it was scored (TINY pins fp32)
    assert summary["device"] == ["cpu"] and summary["precision"] == ["fp32"]
    assert all(summary["folds"][k]["precision"] == "fp32" for k in ("1", "2"))
    assert "Inference on cpu in fp32." in (out / "cv.md").read_text()
    capsys.readouterr()
    assert main(args) == 0  # finished folds are kept, not retrained
    assert capsys.readouterr().out.count("trained (2 steps), evaluating") == 2
    # instances with parameters chosen on the other fold, beside the thresholded baselines
    # the held-out probabilities were kept: nothing is segmented again
    assert (out / "fold-1" / "heldout.npz").is_file()

    def no_segmenting(*args, **kwargs):
        raise AssertionError("a finished fold was segmented again")

    monkeypatch.setattr("biounet.evaluation.evaluate.evaluate_images", no_segmenting)
    assert main([*args, "--labels", "multicut,watershed"]) == 0
    assert json.loads((out / "cv.json").read_text())["folds"] == summary["folds"]
    chosen = json.loads((out / "cv-labels-multicut.json").read_text())
    assert set(chosen) == {"1", "2"}
    for r in chosen.values():
        assert r["method"] == "multicut" and r["params"]["beta"] in (0.3, 0.4, 0.5, 0.6, 0.7)
        assert 0 <= r["v_rand"] <= 1 and 0 <= r["threshold_chosen"]["v_rand"] <= r["threshold_best_on_fold"]["v_rand"]
        assert len(r["per_image"]) == 6 and {"v_rand_split", "v_info_merge"} <= set(r["per_image"][0])
    assert "| mean |" in (out / "cv-labels-multicut.md").read_text()
    assert (out / "cv-labels-watershed.json").is_file()
    picture = np.asarray(Image.open(out / "cv-labels-multicut-worst.png"))
    assert picture.shape == (512, 2 * 512 + 8, 3)
    summary_md = (out / "cv-labels.md").read_text()
    assert "multicut (parameters chosen" in summary_md and "watershed (parameters chosen" in summary_md
    assert main([*args, "--labels", "multicut,magic"]) == 2


@pytest.mark.slow
def test_cv_scores_as_the_recipe_validates_and_once(isbi_dir, tmp_path):
    from biounet.data import kfold_split, read_dataset
    from biounet.evaluation.evaluate import evaluate_images
    from biounet.models import load_predictor

    out = tmp_path / "cv"
    tiny = [a for a in TINY if a != "--no-validation"]
    assert (
        main(["cv", "--data", str(isbi_dir), "--out", str(out), "--fold", "1", *tiny, "--val-every", "1", "--val-tta"])
        == 0
    )
    run = out / "fold-1"
    # step 1 is validated during training; the final step only by cv itself
    rows = [json.loads(line) for line in (run / "validation.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1]
    report = json.loads((run / "evaluation.json").read_text())
    assert report["tta"] is True and report["step"] == 2
    predictor, cfg, _ = load_predictor(run / "last.pt", "cpu", "fp32")
    data = read_dataset(str(isbi_dir), 2, 1, None)
    _, val = kfold_split(len(data), "1", 5)
    with_tta = evaluate_images(predictor, data, val, cfg.depth, cfg.padding, tta=True)
    plain = evaluate_images(predictor, data, val, cfg.depth, cfg.padding)
    assert report["dice_coeff"] == pytest.approx(with_tta["dice_coeff"], abs=1e-6)
    assert report["dice_coeff"] != pytest.approx(plain["dice_coeff"], abs=1e-6)
    assert "test-time augmentation" in (out / "cv.md").read_text()


def _held_out_setup(tmp_path, sizes):
    """A tiny checkpoint and a folder of image/mask pairs of the given sizes."""
    from biounet.data import open_dataset
    from biounet.model import checkpoint as ckpt_io
    from biounet.model.unet import build_model

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, s, dtype=np.uint8) for s in sizes]
    masks = [np.where(rng.random(s) > 0.3, 255, 0).astype(np.uint8) for s in sizes]
    folder = write_pairs(tmp_path / "pairs", images, masks)
    cfg = tiny_config(data=str(folder), val_tta=False)
    last = tmp_path / "run" / "last.pt"
    last.parent.mkdir()
    torch.manual_seed(0)
    ckpt_io.atomic_save(ckpt_io.payload(cfg.to_dict(), 4, build_model(cfg).state_dict()), last)
    return cfg, last, open_dataset(str(folder), 2, 1, None, None, None)


def test_held_out_predictions_are_kept_per_slice_and_replaced_when_anything_changes(tmp_path, monkeypatch):
    from biounet.evaluation import evaluate
    from biounet.train.crossval import _evaluate_fold

    cfg, last, data = _held_out_setup(tmp_path, [(64, 64), (80, 96), (64, 64)])
    val = [0, 1, 2]
    report, held = _evaluate_fold(cfg, "0", last, data, val)  # images of two sizes: one array each
    probs = held.probs
    assert [p.shape for p in probs] == [(64, 64), (80, 96), (64, 64)]
    assert held.indices == val and held.affinities is None and held.offsets == ()  # no affinities predicted
    calls = []
    real = evaluate.evaluate_images
    monkeypatch.setattr(evaluate, "evaluate_images", lambda *a, **k: calls.append(1) or real(*a, **k))
    again, kept = _evaluate_fold(cfg, "0", last, data, val)
    assert calls == [] and again == report and all(np.array_equal(a, b) for a, b in zip(probs, kept.probs))
    data.masks[1] = 1 - data.masks[1]  # edited labels: the cached report no longer holds
    _evaluate_fold(cfg, "0", last, data, val)
    assert calls == [1]
    _evaluate_fold(cfg.replace(val_tta=True), "0", last, data, val)  # another TTA setting
    assert calls == [1, 1]
    cache = last.parent / "heldout.npz"
    cache.write_bytes(cache.read_bytes()[:100])  # a damaged cache is segmented again, not a traceback
    _evaluate_fold(cfg.replace(val_tta=True), "0", last, data, val)
    assert calls == [1, 1, 1]


def test_held_out_affinities_are_kept_and_a_cache_without_them_is_segmented_again(tmp_path, monkeypatch):
    from biounet.evaluation import evaluate
    from biounet.model import checkpoint as ckpt_io
    from biounet.model.unet import build_model
    from biounet.train.crossval import _evaluate_fold

    cfg, _, data = _held_out_setup(tmp_path, [(64, 64), (80, 96)])
    cfg = cfg.replace(affinities="mws12")
    last = tmp_path / "aff" / "last.pt"
    last.parent.mkdir()
    torch.manual_seed(0)
    ckpt_io.atomic_save(ckpt_io.payload(cfg.to_dict(), 4, build_model(cfg).state_dict()), last)
    _, held = _evaluate_fold(cfg, "0", last, data, [0, 1])
    assert [a.shape for a in held.affinities] == [(12, 64, 64), (12, 80, 96)] and len(held.offsets) == 12
    assert all(0 <= a.min() and a.max() <= 1 for a in held.affinities)
    calls = []
    real = evaluate.evaluate_images
    monkeypatch.setattr(evaluate, "evaluate_images", lambda *a, **k: calls.append(1) or real(*a, **k))
    _, kept = _evaluate_fold(cfg, "0", last, data, [0, 1])
    assert calls == [] and all(np.array_equal(a, b) for a, b in zip(held.affinities, kept.affinities))
    # a cache under the same key without the affinities (as the cell probabilities alone were kept): again
    cache = last.parent / "heldout.npz"
    with np.load(cache) as stored:
        only_probs = {n: stored[n] for n in stored.files if not n.startswith("a")}
    np.savez(cache, **only_probs)
    _, again = _evaluate_fold(cfg, "0", last, data, [0, 1])
    assert calls == [1] and all(np.array_equal(a, b) for a, b in zip(held.affinities, again.affinities))


def test_cv_refuses_an_affinity_method_for_a_recipe_without_affinities_before_training(isbi_dir, tmp_path, capsys):
    out = tmp_path / "cv"
    assert main(["cv", "--data", str(isbi_dir), "--out", str(out), "--fold", "1,2", *TINY, "--labels", "mws"]) == 2
    err = capsys.readouterr().err
    assert "mws reads predicted affinities" in err and "--affinities mws12" in err
    assert not (out / "fold-1").exists()


@pytest.mark.slow
def test_cv_chooses_the_mutex_watershed_on_the_other_folds_affinities(isbi_dir, tmp_path, monkeypatch):
    """cv --affinities mws12 --labels: the held-out affinities are kept and the affinity methods chosen
    beside a boundary method. Two settings of the mutex watershed only: on the noisy affinities of a
    network trained for 2 steps it takes seconds per slice."""
    from biounet.evaluation import selection

    monkeypatch.setitem(selection.GRIDS, "mws", {"stride": [2], "attractive_bias": [0.0, 0.1]})
    out = tmp_path / "cv"
    args = ["cv", "--data", str(isbi_dir), "--out", str(out), "--fold", "1,2", *TINY, "--affinities", "mws12"]
    assert main([*args, "--labels", "mws,multicut-aff,multicut"]) == 0
    with np.load(out / "fold-1" / "heldout.npz") as stored:
        assert stored["a00000"].shape == (12, 512, 512) and stored["p00000"].shape == (512, 512)
    chosen = json.loads((out / "cv-labels-mws.json").read_text())
    assert set(chosen) == {"1", "2"}
    assert all(r["params"]["stride"] == 2 and r["params"]["attractive_bias"] in (0.0, 0.1) for r in chosen.values())
    summary = (out / "cv-labels.md").read_text()
    for method in ("mws", "multicut-aff", "multicut"):
        assert f"| {method} (parameters chosen on the other folds) |" in summary
