"""biounet.models: one way to open every kind of model, and one set of refusals."""

from __future__ import annotations

import numpy as np
import pytest

from biounet.core.errors import ConfigError
from biounet.deploy.export import ExportError, load_exported
from biounet.models import model_kind, open_model


def test_kinds_by_what_was_typed(tmp_path):
    assert model_kind("isbi2012-membranes") == "builtin"
    assert model_kind(tmp_path / "net.onnx") == "exported"
    assert model_kind(tmp_path / "net.pt2") == "exported"
    assert model_kind(tmp_path / "net.zip") == "bioimageio"  # a bioimage.io package
    assert model_kind(tmp_path) == "checkpoint"  # a run folder
    assert model_kind(tmp_path / "last.pt") == "checkpoint"


def test_suffixes_are_read_case_insensitively(tmp_path):
    assert model_kind(tmp_path / "net.ONNX") == model_kind(tmp_path / "net.Pt2") == "exported"
    assert model_kind(tmp_path / "net.ZIP") == "bioimageio"
    # load_exported takes them as ONNX / ExportedProgram files: a missing one is reported, not refused by name
    for name in ("net.ONNX", "net.PT2"):
        with pytest.raises(ExportError, match="does not exist"):
            load_exported(tmp_path / name)


def test_the_kind_a_reference_is_opened_as(tmp_path):
    assert model_kind("isbi2012-membranes") == "builtin"
    assert model_kind(tmp_path) == model_kind(tmp_path / "best.pt") == "checkpoint"  # a run folder, a .pt file
    # how a worker opens the client's model is tests/cli/test_volumes.py's (biounet.cli.volumes.model_loader)


def test_an_unknown_name_lists_the_builtin_models():
    with pytest.raises(ConfigError, match="isbi2012-membranes"):
        model_kind("no-such-model")


def test_builtin_model_opens_and_segments():
    predictor, cfg, ckpt = open_model("isbi2012-membranes", device="cpu", precision="fp32", threads=1)
    assert cfg.classes == 2 and ckpt["step"] > 0
    probs = predictor(np.zeros((1, cfg.in_channels, 64, 64), np.float32))
    assert probs.shape[:2] == (1, 2)


def test_an_exported_model_refuses_a_lower_precision(tmp_path):
    with pytest.raises(ConfigError, match="float32"):
        open_model(tmp_path / "net.onnx", precision="bf16")
