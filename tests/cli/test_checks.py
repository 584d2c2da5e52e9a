"""biounet.cli.checks: each value and path of the command line refused before any work, in one line
that names the option and what fits."""

import argparse

import numpy as np
import pytest
from support import tiny_config

from biounet.cli.checks import (
    check_inference_options,
    check_input,
    check_model_ref,
    check_opset,
    check_runtime,
    check_tile_batch,
    check_timeout,
    check_training_paths,
    check_url,
    checked_fold,
    parse_indices,
    parse_micro_sweep,
)
from biounet.core.errors import CheckpointError, ConfigError, DataError


def _inference(**changes):
    values = dict(tile_batch=4, threads=0, tile=None, device="cpu")
    values.update(changes)
    return argparse.Namespace(**values)


def test_inference_options():
    check_inference_options(_inference(tile=572, tile_batch=1))
    with pytest.raises(ConfigError, match="--tile-batch must be at least 1, got 0"):
        check_inference_options(_inference(tile_batch=0))
    with pytest.raises(ConfigError, match="--threads must not be negative, got -1"):
        check_inference_options(_inference(threads=-1))
    with pytest.raises(ConfigError, match="--tile 0: a tile side must be between 1 and .*omit --tile"):
        check_inference_options(_inference(tile=0))
    with pytest.raises(ConfigError, match="--device must be auto, cpu, cuda or cuda:N, got 'gpu'"):
        check_runtime(argparse.Namespace(threads=0, device="gpu"))
    assert check_tile_batch(8) == 8


def test_a_model_is_a_builtin_name_or_something_that_exists(tiny_run, tmp_path):
    assert check_model_ref("isbi2012-membranes") == "builtin"
    assert check_model_ref(str(tiny_run)) == "checkpoint"  # a run folder
    assert check_model_ref(str(tiny_run / "last.pt")) == "checkpoint"
    (tmp_path / "net.onnx").write_bytes(b"")
    (tmp_path / "net.zip").write_bytes(b"")
    assert check_model_ref(str(tmp_path / "net.onnx")) == "exported"
    assert check_model_ref(str(tmp_path / "net.zip")) == "bioimageio"


@pytest.mark.parametrize(
    "ref, error, fragments",
    [
        ("", ConfigError, ["--model is empty; give a checkpoint (.pt), a run folder"]),
        (None, ConfigError, ["--model is empty"]),
        ("no-such-model", ConfigError, ["--model no-such-model: no built-in model (known: isbi2012-membranes"]),
        ("/no/such/run", CheckpointError, ["--model /no/such/run: no such file or folder", "built-in model's name"]),
        ("missing.pt", CheckpointError, ["--model missing.pt: no such file or folder"]),
    ],
)
def test_a_model_that_names_nothing_is_one_line_naming_the_option(ref, error, fragments):
    with pytest.raises(error) as info:
        check_model_ref(ref)
    for fragment in fragments:
        assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_where_pytorch_weights_are_needed_an_exported_model_is_refused(tmp_path):
    (tmp_path / "net.pt2").write_bytes(b"")
    with pytest.raises(ConfigError, match="--init-from .*net.pt2 is an exported model, but fine-tuning needs"):
        check_model_ref(str(tmp_path / "net.pt2"), "--init-from", exported=False, use="fine-tuning")
    with pytest.raises(CheckpointError) as info:
        check_model_ref("/no/net.pt", "--init-from", exported=False)
    assert "--init-from /no/net.pt" in str(info.value) and ".onnx" not in str(info.value)


def test_an_input_must_exist_and_a_volume_spec_is_checked_by_its_file(tmp_path):
    import zarr

    zarr.create_array(tmp_path / "v.zarr", data=np.zeros((1, 4, 4), np.uint8))
    (tmp_path / "v.h5").write_bytes(b"")
    check_input(str(tmp_path / "v.zarr"), "--data", "x")
    check_input(str(tmp_path / "v.zarr") + "/inner/array", "--data", "x")  # the array is the reader's to find
    check_input(str(tmp_path / "v.h5") + ":/raw", "--masks", "x")
    for missing in (tmp_path / "w.zarr", str(tmp_path / "w.h5") + ":/raw", tmp_path / "folder", " "):
        with pytest.raises(DataError, match="--data .*: no such file or folder; give the ISBI folder"):
            check_input(str(missing), "--data", "the ISBI folder")


def test_training_paths_come_from_flags_or_a_config_file(tiny_run, tmp_path):
    check_training_paths(tiny_config(init_from=str(tiny_run), masks=None))
    check_training_paths(tiny_config(init_from="isbi2012-membranes"))
    check_training_paths(tiny_config(resume=str(tiny_run), init_from="/ignored/when/resuming"))
    with pytest.raises(CheckpointError, match="--resume /no/run: no such run folder or checkpoint; give the folder"):
        check_training_paths(tiny_config(resume="/no/run"))
    with pytest.raises(CheckpointError, match="--init-from /no/w.pt: no such file or folder"):
        check_training_paths(tiny_config(init_from="/no/w.pt"))
    with pytest.raises(DataError, match="--masks /no/labels.zarr: no such file or folder; give the label volume"):
        check_training_paths(tiny_config(masks="/no/labels.zarr"))


@pytest.mark.parametrize("url", ["https://example.org/isbi", "http://127.0.0.1:9/", "file:///srv/isbi", "ftp://h/d"])
def test_urls_the_downloader_opens(url):
    assert check_url(url) == url


@pytest.mark.parametrize("url", ["notaurl", "example.org/isbi", "https://", "gopher://h/x", "http://[::1", ""])
def test_urls_it_cannot_open_are_refused(url):
    with pytest.raises(ConfigError, match="--url .* is not a base URL; give one such as https://"):
        check_url(url)


def test_the_fold_evaluate_scores():
    assert checked_fold("1", 5) == "1" and checked_fold("none", 5) == "none"
    with pytest.raises(ConfigError, match="--fold must be one of 0..4"):
        checked_fold("5", 5)
    with pytest.raises(ConfigError, match="trained on every image"):
        checked_fold("all", 5)


def test_lists_and_numbers():
    assert parse_micro_sweep("1, 2,4") == [1, 2, 4] and parse_micro_sweep("") == []
    with pytest.raises(ConfigError, match="--micro-sweep must be comma-separated integers"):
        parse_micro_sweep("1,x")
    assert parse_indices("0,2") == [0, 2] and parse_indices(None) is None
    with pytest.raises(ConfigError, match="--indices must be comma-separated slice numbers"):
        parse_indices("a")
    assert check_timeout(5.0) == 5.0
    for bad in (0.0, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="--timeout must be a positive number"):
            check_timeout(bad)


def test_opsets():
    assert check_opset(1, "program") == 1  # only ONNX has opsets
    assert check_opset(18, "onnx") == 18
    with pytest.raises(ConfigError, match="--opset must be between 17 and"):
        check_opset(7, "onnx")
