"""biounet.cli.inference: ``predict`` and ``evaluate`` take any model as ``--model REF``; the old
spellings still work and say what to use; a path that names nothing is one line naming its option."""

import json

import numpy as np
import pytest
import tifffile

import biounet.models
from biounet.cli import main

NOTICE = "biounet: {} is deprecated; use {}"


def _run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


@pytest.fixture
def stack(tmp_path):
    path = tmp_path / "in" / "stack.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, np.random.default_rng(0).integers(0, 256, (2, 48, 48), dtype=np.uint8))
    return path


def _membrane(folder):
    return tifffile.imread(folder / "stack_membrane.tif")


@pytest.mark.parametrize("ref", ["run", "last.pt"])
def test_predict_takes_a_run_folder_or_a_checkpoint_as_model(capsys, tiny_run, stack, tmp_path, ref):
    model = tiny_run if ref == "run" else tiny_run / "last.pt"
    code, _, err = _run(capsys, "predict", stack, "--model", model, "--out", tmp_path / "o", "--progress", "off")
    assert code == 0 and err == "", err
    assert _membrane(tmp_path / "o").shape == (2, 48, 48)


def test_the_old_spellings_work_and_say_what_to_use(capsys, tiny_run, stack, tmp_path):
    new = ["--model", tiny_run, "--tile-batch", "2", "--device", "cpu", "--precision", "fp32", "--progress", "off"]
    old = ["--checkpoint", tiny_run, "--batch-size", "2", "--device", "cpu", "--precision", "fp32", "--progress", "off"]
    assert _run(capsys, "predict", stack, *new, "--out", tmp_path / "new")[0] == 0
    code, _, err = _run(capsys, "predict", stack, *old, "--out", tmp_path / "old")
    assert code == 0
    assert err.splitlines() == [NOTICE.format("--checkpoint", "--model"), NOTICE.format("--batch-size", "--tile-batch")]
    np.testing.assert_array_equal(_membrane(tmp_path / "old"), _membrane(tmp_path / "new"))


def test_evaluate_scores_the_held_out_fold(capsys, tiny_run, pairs, tmp_path):
    report = tmp_path / "r.json"
    code, said, err = _run(capsys, "evaluate", "--model", tiny_run, "--data", pairs, "--json", report,
                           "--tile-batch", "1", "--progress", "off")  # fmt: skip
    assert code == 0, err
    values = json.loads(report.read_text())
    assert values["fold"] == "1" and 0 <= values["dice_coeff"] <= 1 and "dice_coeff" in said


def test_a_bar_shows_with_progress_on(capsys, tiny_run, stack, tmp_path):
    code, _, bar = _run(capsys, "predict", stack, "--model", tiny_run, "--out", tmp_path / "o", "--progress", "on")
    assert code == 0 and "slice" in bar, bar  # tqdm counts slices
    _, _, quiet = _run(capsys, "predict", stack, "--model", tiny_run, "--out", tmp_path / "p", "--progress", "off")
    assert quiet == ""


@pytest.mark.parametrize(
    "model, code, message",
    [
        ("{tmp}/no-run", 1, "--model {tmp}/no-run: no such file or folder; give a checkpoint (.pt), a run folder"),
        ("{tmp}/net.onnx", 1, "--model {tmp}/net.onnx: no such file or folder"),
        ("no-such-model", 2, "--model no-such-model: no built-in model (known: isbi2012-membranes"),
        ("", 2, "--model is empty; give a checkpoint"),
    ],
)
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_model_that_names_nothing_is_one_line(capsys, pairs, stack, tmp_path, command, model, code, message):
    model, message = model.format(tmp=tmp_path), message.format(tmp=tmp_path)
    args = [stack, "--out", tmp_path / "o"] if command == "predict" else ["--data", pairs]
    status, _, err = _run(capsys, command, *args, "--model", model)
    assert status == code and err.startswith(f"biounet {command}: error: "), err
    assert message in err and len(err.splitlines()) == 1


def test_a_model_is_required(capsys, stack, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["predict", str(stack), "--out", str(tmp_path / "o")])
    assert exit_.value.code == 2 and "--model is required" in capsys.readouterr().err


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--data", "{tmp}/nothing", "--data {tmp}/nothing: no such file or folder; give the ISBI 2012 folder"),
        ("--masks", "{tmp}/labels.zarr", "--masks {tmp}/labels.zarr: no such file or folder; give the label volume"),
    ],
)
def test_evaluate_data_that_names_nothing_is_refused_before_the_model_is_opened(
    capsys, pairs, tmp_path, monkeypatch, option, value, message
):
    monkeypatch.setattr(biounet.models, "open_model", lambda *a, **k: pytest.fail("the model was opened"))
    data = [] if option == "--data" else ["--data", pairs]
    code, _, err = _run(capsys, "evaluate", "--model", "isbi2012-membranes", *data, option, value.format(tmp=tmp_path))
    assert code == 1 and message.format(tmp=tmp_path) in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--tile-batch", "0", "--tile-batch must be at least 1, got 0"),
        ("--batch-size", "0", "--tile-batch must be at least 1, got 0"),  # the old spelling, checked as the new
        ("--threads", "-1", "--threads must not be negative"),
        ("--tile", "0", "--tile 0: a tile side must be between 1 and"),
    ],
)
def test_inference_values_are_checked_before_any_work(capsys, stack, tmp_path, monkeypatch, flag, value, message):
    monkeypatch.setattr(biounet.models, "open_model", lambda *a, **k: pytest.fail("the model was opened"))
    code, _, err = _run(capsys, "predict", stack, "--model", "isbi2012-membranes", "--out", tmp_path / "o", flag, value)
    *notices, last = err.splitlines()
    assert code == 2 and last.startswith("biounet predict: error: ") and message in last, err
    assert all(line.startswith("biounet: ") and "deprecated" in line for line in notices)
    assert not (tmp_path / "o" / "stack_membrane.tif").exists()


def test_a_label_parameter_needs_a_method(capsys, stack, tmp_path):
    code, _, err = _run(capsys, "predict", stack, "--model", "isbi2012-membranes", "--out", tmp_path / "o",
                        "--label-param", "beta=0.4")  # fmt: skip
    assert code == 2 and "--label-param sets a parameter of the --labels method; add --labels METHOD" in err


@pytest.mark.parametrize(
    "command, option, message",
    [
        ("predict", "--out", "--out {path} is a file, not a folder; give a folder name"),
        ("evaluate", "--json", "--json {path}/sub: {path} is a file, so the folder cannot be made there"),
    ],
)
def test_an_output_that_cannot_be_written_is_refused_first(capsys, pairs, stack, tmp_path, command, option, message):
    (tmp_path / "taken").write_text("mine")
    target = tmp_path / "taken" if option == "--out" else tmp_path / "taken" / "sub" / "r.json"
    args = [stack, "--out", target] if command == "predict" else ["--data", pairs, "--json", target]
    code, _, err = _run(capsys, command, *args, "--model", "/no/model.pt")
    assert code == 2 and message.format(path=tmp_path / "taken") in err and len(err.splitlines()) == 1, err


def test_predict_labels_writes_the_table_of_objects_unless_told_not_to(capsys, tiny_run, stack, tmp_path):
    args = ["predict", stack, "--model", tiny_run, "--labels", "--progress", "off"]
    code, out, err = _run(capsys, *args, "--out", tmp_path / "on")
    assert code == 0 and err == "", err
    table = (tmp_path / "on" / "stack_objects.csv").read_text().splitlines()
    labels = tifffile.imread(tmp_path / "on" / "stack_labels.tif")
    assert table[0].startswith("slice,label,area,") and len(table) - 1 == sum(
        len(np.unique(s[s > 0])) for s in labels
    )  # a row per cell of each slice
    counted = f"{len(table) - 1} objects, mean area " if len(table) > 1 else "no objects"  # 2 steps of training
    assert f"stack_objects.csv ({counted}" in out
    code, out, err = _run(capsys, *args, "--out", tmp_path / "off", "--no-measure")
    assert code == 0 and (tmp_path / "off" / "stack_labels.tif").is_file() and "objects" not in out
    assert not (tmp_path / "off" / "stack_objects.csv").exists()


def test_measure_needs_labels_and_tables_of_one_name_are_refused(capsys, stack, tmp_path, monkeypatch):
    import zarr

    monkeypatch.setattr(biounet.models, "open_model", lambda *a, **k: pytest.fail("the model was opened"))
    base = ["--model", "isbi2012-membranes", "--out", tmp_path / "o"]
    code, _, err = _run(capsys, "predict", stack, *base, "--measure")
    assert code == 2 and "--measure measures the cells of --labels; add --labels METHOD" in err
    assert len(err.splitlines()) == 1
    volume = tmp_path / "stack.zarr"  # the stem of the stack: both tables would be o/stack_objects.csv
    zarr.create_array(volume, shape=(2, 48, 48), chunks=(1, 48, 48), dtype="uint8")[:] = 0
    code, _, err = _run(capsys, "predict", stack, volume, *base, "--labels")
    assert code == 2 and f"would both write {tmp_path / 'o' / 'stack_objects.csv'}" in err, err
    assert len(err.splitlines()) == 1
