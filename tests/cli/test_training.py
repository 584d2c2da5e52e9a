"""biounet.cli.training: train, demo and cv on the command line. One real training run of a step; the
rest stops the library at its door (train, run_cv) to see what the command line handed it."""

import pytest
from support import TINY_NET

import biounet.train.crossval as crossval
import biounet.train.engine as engine
from biounet.cli import main

TINY = [
    *TINY_NET,
    "--batch-size",
    "2",
    "--no-validation",
    "--progress",
    "off",
    "--precision",
    "fp32",
    "--device",
    "cpu",
]


def _run(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err.strip()


@pytest.fixture
def handed(monkeypatch):
    """What train() was handed, instead of training."""
    calls = []
    monkeypatch.setattr(engine, "train", lambda cfg, explicit=None, **kw: calls.append((cfg, explicit)) or {})
    return calls


def test_train_fine_tunes_from_a_run_folder(capsys, pairs, tiny_run, tmp_path):
    out = tmp_path / "tuned"
    code, err = _run(capsys, "train", "--data", pairs, "--out", out, "--init-from", tiny_run, "--steps", "1", *TINY)
    assert code == 0, err
    assert (out / "last.pt").is_file()


@pytest.mark.parametrize("ref", ["isbi2012-membranes", "run", "last.pt"])
def test_init_from_takes_what_model_takes_for_weights(capsys, pairs, tiny_run, handed, ref):
    value = {"run": tiny_run, "last.pt": tiny_run / "last.pt"}.get(ref, ref)
    assert _run(capsys, "train", "--data", pairs, "--init-from", value)[0] == 0
    assert handed[0][0].init_from == str(value)


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--init-from", "{tmp}/no.pt"], 1, "--init-from {tmp}/no.pt: no such file or folder; give a checkpoint"),
        (["--init-from", "no-such-model"], 2, "--init-from no-such-model: no built-in model"),
        (["--init-from", "{tmp}/net.onnx"], 2, "--init-from {tmp}/net.onnx is an exported model, but fine-tuning"),
        (["--resume", "{tmp}/no-run"], 1, "--resume {tmp}/no-run: no such run folder or checkpoint; give the folder"),
        (["--masks", "{tmp}/l.zarr"], 1, "--masks {tmp}/l.zarr: no such file or folder; give the label volume"),
        (["--config", "{tmp}/no.yaml"], 2, "config file {tmp}/no.yaml does not exist; pass an existing YAML file"),
    ],
)
@pytest.mark.parametrize("command", ["train", "demo"])
def test_training_paths_that_name_nothing_are_one_line(capsys, pairs, tmp_path, handed, command, args, code, message):
    (tmp_path / "net.onnx").write_bytes(b"")
    status, err = _run(capsys, command, "--data", pairs, *[a.format(tmp=tmp_path) for a in args])
    assert status == code and err.startswith(f"biounet {command}: error: ") and len(err.splitlines()) == 1, err
    assert message.format(tmp=tmp_path) in err and not handed


def test_a_path_from_a_config_file_is_checked_as_the_flag(capsys, pairs, tmp_path, handed):
    (tmp_path / "c.yaml").write_text(f"init_from: {tmp_path / 'gone.pt'}\n")
    code, err = _run(capsys, "train", "--data", pairs, "--config", tmp_path / "c.yaml")
    assert code == 1 and f"--init-from {tmp_path / 'gone.pt'}: no such file or folder" in err and not handed


@pytest.fixture
def folds_run(monkeypatch):
    """The folds cv was asked to run, instead of running them."""
    calls = []
    monkeypatch.setattr(crossval, "run_cv", lambda cfg, explicit, folds, out, labels=None: calls.append(folds))
    return calls


def test_cv_runs_the_folds_of_fold(capsys, pairs, tmp_path, folds_run):
    assert _run(capsys, "cv", "--data", pairs, "--out", tmp_path / "cv", "--fold", "0,2")[0] == 0
    assert folds_run == [["0", "2"]]
    assert _run(capsys, "cv", "--data", pairs, "--out", tmp_path / "cv")[0] == 0
    assert folds_run[-1] == ["0", "1", "2", "3", "4"]


def test_cv_folds_is_the_old_spelling_of_fold(capsys, pairs, tmp_path, folds_run):
    code, err = _run(capsys, "cv", "--data", pairs, "--out", tmp_path / "cv", "--folds", "1,3")
    assert code == 0 and folds_run == [["1", "3"]]
    assert err == (
        "biounet: --folds is deprecated; use --fold (the folds to run; the number of folds is the config key `folds`)"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fold", "7"], "--fold takes a comma-separated list of folds 0..4, got '7'"),
        (["--fold", "1", "--labels", "watershed"], "cv --labels chooses each fold's parameters on the other folds"),
        (["--labels", "nope"], "--labels takes comma-separated instance methods"),
        (["--resume", "{tmp}/gone"], "--resume {tmp}/gone: no such run folder"),
    ],
)
def test_cv_values_are_one_line(capsys, pairs, tmp_path, folds_run, args, message):
    code, err = _run(capsys, "cv", "--data", pairs, "--out", tmp_path / "cv", *[a.format(tmp=tmp_path) for a in args])
    assert code in (1, 2) and message.format(tmp=tmp_path) in err and len(err.splitlines()) == 1, err
    assert not folds_run


def test_cv_takes_the_init_from_network_before_it_reads_the_data(capsys, pairs, tiny_run, tmp_path, monkeypatch):
    handed = []
    monkeypatch.setattr(crossval, "run_cv", lambda cfg, *args, **kw: handed.append(cfg))
    code = main(["cv", "--data", str(pairs), "--out", str(tmp_path / "cv"), "--init-from", str(tiny_run)])
    out = capsys.readouterr().out
    assert code == 0 and (handed[0].base_width, handed[0].depth, handed[0].tile_size) == (4, 2, 60)
    assert out.count(f"the network of --init-from {tiny_run}: base_width 4, depth 2") == 1  # once, not per fold


def test_cv_needs_an_out_folder(capsys, pairs, folds_run):
    code, err = _run(capsys, "cv", "--data", pairs)
    assert code == 2 and "--out is required: the folder that receives fold-K/ runs" in err


def test_demo_writes_its_synthetic_images_before_training(capsys, tmp_path, handed):
    assert _run(capsys, "demo", "--out", tmp_path / "demo")[0] == 0
    cfg, explicit = handed[0]
    assert cfg.data == str(tmp_path / "demo" / "synthetic") and cfg.base_width == 16  # the demo's preset
    assert len(list((tmp_path / "demo" / "synthetic" / "images").glob("*.png"))) == 12
    assert explicit == {"out": str(tmp_path / "demo")}


def test_an_out_folder_that_is_a_file_is_refused_before_training(capsys, pairs, tmp_path):
    (tmp_path / "taken").write_text("mine")
    code, err = _run(capsys, "train", "--data", pairs, "--out", tmp_path / "taken", *TINY)
    assert code == 2 and "is a file, not a folder" in err and len(err.splitlines()) == 1
    assert (tmp_path / "taken").read_text() == "mine"
