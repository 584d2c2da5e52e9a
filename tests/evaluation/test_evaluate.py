import json

import numpy as np
import pytest
import tifffile
import torch
from support import tiny_config

from biounet.cli import main
from biounet.train.engine import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, isbi_dir):
    """A tiny model trained briefly on ISBI fold 1, validated at the end."""
    run = tmp_path_factory.mktemp("eval") / "run"
    train(tiny_config(data=str(isbi_dir), out=str(run), steps=3, validation=True), quiet=True)
    return run


def test_training_validates_and_keeps_the_best(run_dir):
    rows = [json.loads(x) for x in (run_dir / "validation.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3]
    for key in ("dice_coeff", "dice_coeff_388", "pixel_error", "pixel_mismatch", "v_rand", "v_info"):
        assert 0.0 <= rows[0][key] <= 1.0, key
    best = torch.load(run_dir / "best.pt", weights_only=True)
    last = torch.load(run_dir / "last.pt", weights_only=True)
    assert best["step"] == 3 and best["validation"] == rows[0]
    assert all(torch.equal(best["model"][k], last["model"][k]) for k in last["model"])


@pytest.mark.slow
def test_best_checkpoint_holds_the_step_with_the_best_validation_dice(isbi_dir, tmp_path, monkeypatch):
    """Validation at steps 2, 4 and 6 with dice_coeff scripted to 0.3, 0.8, 0.5 (the other scores are
    real): best.pt must hold step 4 (its validation row, and the weights of step_0000004.pt), not the
    last weights."""
    import biounet.train.validation as validation

    real, scripted = validation.evaluate_images, iter([0.3, 0.8, 0.5])

    def scored(*args, **kwargs):
        return {**real(*args, **kwargs), "dice_coeff": next(scripted)}

    monkeypatch.setattr(validation, "evaluate_images", scored)
    run = tmp_path / "run"
    train(
        tiny_config(
            data=str(isbi_dir),
            out=str(run),
            steps=6,
            val_every=2,
            checkpoint_every=2,
            keep_checkpoints=10,
            validation=True,
        ),
        quiet=True,
    )
    rows = [json.loads(x) for x in (run / "validation.jsonl").read_text().splitlines()]
    assert [(r["step"], r["dice_coeff"]) for r in rows] == [(2, 0.3), (4, 0.8), (6, 0.5)]
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["step"] == 4 and best["validation"] == rows[1]
    at_4 = torch.load(run / "step_0000004.pt", weights_only=True)
    last = torch.load(run / "last.pt", weights_only=True)
    assert at_4["step"] == 4 and last["step"] == 6
    assert all(torch.equal(best["model"][k], at_4["model"][k]) for k in at_4["model"])
    assert not all(torch.equal(best["model"][k], last["model"][k]) for k in last["model"])


def test_evaluate_writes_the_report(run_dir, isbi_dir, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["evaluate", "--model", str(run_dir), "--data", str(isbi_dir), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["fold"] == "1" and report["n_images"] == 6
    assert [r["name"] for r in report["per_image"]] == [f"slice-{i:02d}" for i in (4, 6, 7, 9, 18, 19)]
    for key in ("dice_coeff", "dice_coeff_388", "pixel_error", "pixel_mismatch", "v_rand", "v_info"):
        assert 0.0 <= report[key] <= 1.0
        assert all(0.0 <= r[key] <= 1.0 for r in report["per_image"]), key
    assert set(report["thresholds"]) == {"pixel_error", "v_rand", "v_info"}
    assert "dice_coeff" in capsys.readouterr().out


def _grid_case():
    """Two 64x64 images of square cells with 2-pixel membranes, every 16 and every 8 pixels: cell
    fractions (14/16)^2 and (6/8)^2. The image is the mask itself (+1 cell, -1 membrane)."""
    from biounet.data.readers import SegmentationData

    masks, images = [], []
    for period in (16, 8):
        m = np.ones((64, 64), np.int16)
        m[np.arange(64) % period < 2, :] = 0
        m[:, np.arange(64) % period < 2] = 0
        masks.append(m)
        images.append((2.0 * m - 1)[None].astype(np.float32))
    return SegmentationData(images, masks, ["p16", "p8"]), [(14 / 16) ** 2, (6 / 8) ** 2]


def test_evaluation_scores_known_predictions_as_computed_by_hand():
    """Scores of predictors whose answers are known: the exact mask scores dice_coeff 1, no error;
    the inverted mask dice_coeff 0 and every pixel wrong; "all cell" scores the cell fraction c as
    dice_coeff (2c / 2 per image), 1 - c as pixel_mismatch and 1 - 2c/(1+c) as pixel_error."""
    from biounet.evaluation.evaluate import evaluate_images

    data, cell = _grid_case()

    def scores(fn):
        return evaluate_images(fn, data, [0, 1], depth=2, padding="same")

    exact = scores(lambda t: np.concatenate([-50 * t, 50 * t], axis=1))
    assert exact["dice_coeff"] == pytest.approx(1.0, abs=1e-6)
    assert exact["pixel_mismatch"] == 0.0 and exact["pixel_error"] == 0.0
    assert exact["v_rand"] == pytest.approx(1.0, abs=1e-9) and exact["v_info"] == pytest.approx(1.0, abs=1e-9)
    inverted = scores(lambda t: np.concatenate([50 * t, -50 * t], axis=1))
    assert inverted["dice_coeff"] == pytest.approx(0.0, abs=1e-6) and inverted["pixel_mismatch"] == 1.0
    all_cell = scores(lambda t: np.concatenate([np.full_like(t, -50), np.full_like(t, 50)], axis=1))
    assert [r["dice_coeff"] for r in all_cell["per_image"]] == pytest.approx(cell, abs=1e-6)
    assert all_cell["dice_coeff"] == pytest.approx((cell[0] + cell[1]) / 2, abs=1e-6)
    assert all_cell["pixel_mismatch"] == pytest.approx(1 - (cell[0] + cell[1]) / 2, abs=1e-12)
    assert [r["pixel_error"] for r in all_cell["per_image"]] == pytest.approx(
        [(1 - c) / (1 + c) for c in cell], abs=1e-9
    )


def test_evaluate_refuses_training_slices(run_dir, isbi_dir, capsys):
    assert main(["evaluate", "--model", str(run_dir), "--data", str(isbi_dir), "--fold", "0"]) == 2
    assert "--allow-train-slices" in capsys.readouterr().err
    assert (
        main(["evaluate", "--model", str(run_dir), "--data", str(isbi_dir), "--fold", "0", "--allow-train-slices"]) == 0
    )


# --- biounet score: a probability TIFF from any tool against a label stack ---


def _score_stacks():
    """Two 20x21 ISBI-style label slices (255 cell, 0 membrane): two and three cells."""
    labels = np.full((2, 20, 21), 255, np.uint8)
    labels[:, :, 10] = 0
    labels[1, 12, :] = 0
    return labels


def test_score_a_perfect_membrane_map(tmp_path, capsys):
    labels = _score_stacks()
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    tifffile.imwrite(tmp_path / "membrane.tif", (labels == 0).astype(np.float32))
    out = tmp_path / "score.json"
    assert main(["score", str(tmp_path / "labels.tif"), str(tmp_path / "membrane.tif"), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "v_rand" in printed and "1.0000" in printed
    report = json.loads(out.read_text())
    assert report["v_rand"] == pytest.approx(1.0) and report["v_info"] == pytest.approx(1.0)
    assert report["pixel_error"] == pytest.approx(0.0)
    assert report["n_images"] == 2 and len(report["per_threshold"]["v_rand"]) == 11
    # the same map as uint8 cell probabilities (255 = cell), one slice
    tifffile.imwrite(tmp_path / "cell.tif", labels)
    assert (
        main(
            [
                "score",
                str(tmp_path / "labels.tif"),
                str(tmp_path / "cell.tif"),
                "--polarity",
                "cell",
                "--indices",
                "1",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["indices"] == [1] and report["v_rand"] == pytest.approx(1.0)


def test_score_a_merge_matches_the_hand_computed_value(tmp_path):
    from biounet.evaluation.evaluate import score_files

    labels = _score_stacks()[:1]
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    tifffile.imwrite(tmp_path / "membrane.tif", np.zeros(labels.shape, np.float32))  # no membrane: one segment
    report = score_files(tmp_path / "labels.tif", tmp_path / "membrane.tif")
    assert report["v_rand"] == pytest.approx(2 / 3)  # two equal cells merged
    assert report["v_info"] == 0.0


def test_score_shape_mismatch_is_one_line(tmp_path, capsys):
    labels = _score_stacks()
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    tifffile.imwrite(tmp_path / "membrane.tif", np.zeros((2, 20, 20), np.float32))
    code = main(["score", str(tmp_path / "labels.tif"), str(tmp_path / "membrane.tif")])
    err = capsys.readouterr().err
    assert code in (1, 2)
    assert "shape (2, 20, 20)" in err and "(2, 20, 21)" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    tifffile.imwrite(tmp_path / "membrane.tif", np.zeros((2, 20, 21), np.float32))
    assert main(["score", str(tmp_path / "labels.tif"), str(tmp_path / "membrane.tif"), "--indices", "0,5"]) == 2
    assert "indices" in capsys.readouterr().err


def test_score_refuses_an_empty_tiff_stack(tmp_path):
    # found by tests/support/fuzzing.py: a TIFF that decodes to an empty (0, H, W) array reached np.min
    import tifffile

    from biounet.core.errors import DataError
    from biounet.evaluation.evaluate import score_files

    path = tmp_path / "empty.tif"
    tifffile.imwrite(path, np.zeros((0, 4, 4), np.uint8))
    with pytest.raises(DataError, match="empty image of shape"):
        score_files(path, path, None, "membrane")


def test_score_refuses_a_stack_larger_than_memory_before_reading(tmp_path, monkeypatch):
    # found by tests/support/fuzzing.py: a small TIFF whose header declares 100000 x 100000 pixels made
    # `score` allocate for seconds (a "hang" on a busy machine); it is refused from the header now
    import tifffile

    import biounet.data.readers as readers
    from biounet.core.errors import DataError
    from biounet.evaluation.evaluate import score_files

    path = tmp_path / "p.tif"
    tifffile.imwrite(path, np.zeros((2, 64, 64), np.float32))
    monkeypatch.setattr(readers, "available_ram_bytes", lambda: 1000)
    with pytest.raises(DataError, match="declares 2 x 64 x 64 float32 pixels"):
        score_files(path, path, None, "membrane")


def test_instances_from_a_perfect_map_score_one_and_a_merge_less(isbi_data):
    from biounet.evaluation.evaluate import score_instances

    mask = np.asarray(isbi_data.masks[0])[:200, :200]  # 1 = cell, 0 = membrane
    perfect = score_instances([mask.astype(np.float32)], [mask], "watershed", {})
    assert perfect["method"] == "watershed" and perfect["params"] == {}
    assert perfect["v_rand"] == pytest.approx(1.0) and perfect["v_info"] == pytest.approx(1.0)
    gap = mask.astype(np.float32)
    gap[mask == 0] = 0.95  # every membrane faint: the cores still split, the mask merges everything
    merged = score_instances([gap], [mask], "objects", {"threshold": 0.5})
    assert merged["v_rand"] < 0.5 and "object_f1" in merged and merged["params"]["threshold"] == 0.5
    # the error is a merge: its part falls, the split part stays near 1
    assert perfect["v_rand_split_per_image"][0] == pytest.approx(1.0)
    assert merged["v_rand_merge_per_image"][0] < 0.5 < merged["v_rand_split_per_image"][0]


def test_fold_none_scores_every_image_the_model_was_not_trained_on(run_dir, isbi_dir, tmp_path, capsys):
    from biounet.cli import main

    out = tmp_path / "none.json"
    args = ["evaluate", "--model", str(run_dir), "--data", str(isbi_dir), "--precision", "fp32"]
    assert main([*args, "--fold", "none", "--json", str(out), "--labels", "watershed"]) == 0
    printed = capsys.readouterr().out
    assert "left out 24 image(s) the model was trained on; scoring 6" in printed
    report = json.loads(out.read_text())
    assert report["n_images"] == 6 and {r["index"] for r in report["per_image"]} == {4, 6, 7, 9, 18, 19}
    assert (
        report["instances"]["watershed"]["method"] == "watershed"
        and 0 <= report["instances"]["watershed"]["v_rand"] <= 1
    )


# --- instances from affinities ------------------------------------------------------------------


def _grid_cells():
    """(class mask, labels grown over the membranes) of 2 x 2 square cells behind 2-pixel membranes."""
    from biounet.data.affinities import instance_labels as grown

    mask = np.zeros((44, 44), np.int64)
    for y0 in (2, 23):
        for x0 in (2, 23):
            mask[y0 : y0 + 19, x0 : x0 + 19] = 1
    return mask, grown(mask)


def test_exact_affinities_score_one_by_every_method_that_reads_them(monkeypatch):
    """segment's contract for a model with affinities, played by hand: (K + C, H, W), the two class
    probabilities, then one affinity channel per offset. Exact ones make every method's instances perfect,
    and the report holds them side by side."""
    import biounet.segment.predict as predict
    from biounet.core.errors import ConfigError
    from biounet.data.affinities import DEFAULT_OFFSETS, affinity_targets
    from biounet.data.readers import SegmentationData
    from biounet.evaluation.evaluate import evaluate_images

    mask, labels = _grid_cells()
    exact = np.concatenate([np.stack([1.0 - mask, mask]), affinity_targets(labels, DEFAULT_OFFSETS)[0]])
    calls = []

    def segment(image, predictor, depth, padding, tile, batch_size, tta, *, num_classes=None, offsets=()):
        calls.append((num_classes, tuple(offsets)))
        return exact.astype(np.float32)

    monkeypatch.setattr(predict, "segment", segment)
    data = SegmentationData([np.zeros((1, 44, 44), np.float32)] * 2, [mask, mask], ["a", "b"])
    kept: list = []
    methods = ["watershed", "mws", "multicut-aff", "gasp-aff"]
    report = evaluate_images(
        None, data, [0, 1], 2, "same", labels=methods, offsets=DEFAULT_OFFSETS, affinities_out=kept
    )
    assert calls == [(2, DEFAULT_OFFSETS)] * 2
    assert report["dice_coeff"] == pytest.approx(1.0)  # scored on the two class channels only
    assert list(report["instances"]) == methods
    for method in methods:
        assert report["instances"][method]["v_rand"] == pytest.approx(1.0), method
    assert len(kept) == 2 and kept[0].shape == (12, 44, 44)
    # a method that reads affinities, asked without them: refused before anything is segmented
    calls.clear()
    with pytest.raises(ConfigError, match="--affinities mws12"):
        evaluate_images(None, data, [0, 1], 2, "same", labels=["mws"])
    assert calls == []


def test_evaluate_scores_several_methods_side_by_side(tmp_path, capsys):
    """The command line on a tiny model with affinities: --labels takes a list, --label-param names whose
    parameter it sets, and the report holds every method."""
    from support import write_pairs

    from biounet.model import checkpoint as ckpt_io
    from biounet.model.unet import build_model

    mask, _ = _grid_cells()
    rng = np.random.default_rng(0)
    images = [np.where(mask > 0, 200, 40).astype(np.uint8) + rng.integers(0, 20, mask.shape, dtype=np.uint8)] * 2
    folder = write_pairs(tmp_path / "pairs", images, [(mask * 255).astype(np.uint8)] * 2)
    cfg = tiny_config(affinities="mws12")
    torch.manual_seed(0)
    model = tmp_path / "last.pt"
    ckpt_io.atomic_save(ckpt_io.payload(cfg.to_dict(), 4, build_model(cfg).state_dict()), model)
    out = tmp_path / "report.json"
    args = ["evaluate", "--model", str(model), "--data", str(folder), "--fold", "none", "--precision", "fp32"]
    labels = [
        "--labels",
        "multicut,mws,gasp-aff",
        "--label-param",
        "mws:stride=2",
        "--label-param",
        "multicut:beta=0.3",
    ]
    assert main([*args, *labels, "--json", str(out), "--progress", "off"]) == 0
    printed = capsys.readouterr().out
    assert "multicut" in printed and "gasp-aff" in printed and "mws: stride=2" in printed
    report = json.loads(out.read_text())
    assert list(report["instances"]) == ["multicut", "mws", "gasp-aff"]
    assert report["instances"]["mws"]["params"]["stride"] == 2
    assert report["instances"]["multicut"]["params"]["beta"] == 0.3
    assert all(0 <= r["v_rand"] <= 1 for r in report["instances"].values())
    assert main([*args, "--labels", "multicut,mws", "--label-param", "beta=0.3"]) == 2
    assert "METHOD:beta=0.3" in capsys.readouterr().err
    assert main([*args, "--labels", "mws,magic"]) == 2
    assert "comma-separated instance methods" in capsys.readouterr().err


def test_evaluate_gives_a_network_with_context_each_slice_with_its_neighbours(isbi_dir, tmp_path, capsys):
    from biounet.model import checkpoint as ckpt_io
    from biounet.model.unet import build_model

    cfg = tiny_config(context=1, fold="1")
    torch.manual_seed(0)
    model = tmp_path / "last.pt"
    ckpt_io.atomic_save(ckpt_io.payload(cfg.to_dict(), 4, build_model(cfg).state_dict()), model)
    out = tmp_path / "report.json"
    args = ["evaluate", "--model", str(model), "--data", str(isbi_dir), "--precision", "fp32", "--json", str(out)]
    assert main([*args, "--progress", "off"]) == 0
    report = json.loads(out.read_text())
    assert report["fold"] == "1" and report["n_images"] == 6 and 0 <= report["dice_coeff"] <= 1


def test_per_class_scores_of_three_classes_over_the_labelled_pixels():
    """Truth: column bands of classes 0 | 1 | 2 (20, 20 and 24 columns), the top half unlabelled. The prediction
    (the image encodes it) calls the last 4 columns of class 1 class 2, and the unlabelled half all wrong:
    class 0 scores 1; class 1 dice 8/9, recall 0.8; class 2 dice 12/13, precision 6/7; the top half never counts."""
    from biounet.data.readers import IGNORE, SegmentationData
    from biounet.evaluation.evaluate import evaluate_images

    cols = np.arange(64)
    truth = np.broadcast_to(np.where(cols < 20, 0, np.where(cols < 40, 1, 2)), (64, 64)).astype(np.int16).copy()
    pred = np.broadcast_to(np.where(cols < 20, 0, np.where(cols < 36, 1, 2)), (64, 64)).copy()
    pred[:32] = (truth[:32] + 1) % 3
    truth[:32] = IGNORE
    data = SegmentationData([(pred - 1.0)[None].astype(np.float32)], [truth], ["bands"])

    def predictor(t):  # class k where the image is k - 1
        return np.concatenate([-50 * (t - (k - 1)) ** 2 for k in range(3)], axis=1)

    report = evaluate_images(predictor, data, [0], depth=2, padding="same", num_classes=3)
    per_class = report["per_class"]
    assert per_class["0"] == {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0, "pixels": 20 * 32}
    assert per_class["1"]["dice"] == pytest.approx(8 / 9) and per_class["1"]["iou"] == pytest.approx(0.8)
    assert per_class["1"]["precision"] == 1.0 and per_class["1"]["recall"] == pytest.approx(0.8)
    assert per_class["2"]["dice"] == pytest.approx(12 / 13) and per_class["2"]["iou"] == pytest.approx(6 / 7)
    assert per_class["2"]["precision"] == pytest.approx(6 / 7) and per_class["2"]["recall"] == 1.0
    assert [per_class[k]["pixels"] for k in "012"] == [640, 640, 768]
    assert report["per_image"][0]["per_class"]["dice"][1] == pytest.approx(8 / 9)
