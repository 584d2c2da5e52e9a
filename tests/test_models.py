"""biounet.models: one way to open every kind of model, and one set of refusals."""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest

from biounet.core.errors import ConfigError
from biounet.deploy.export import ExportError, load_exported
from biounet.models import model_kind, open_model, requested_kind


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


def test_the_client_and_its_dask_workers_open_the_same_kind(tmp_path, monkeypatch):
    from biounet.cli.volumes import predict_volumes_dask
    from biounet.segment import cluster

    sent = []

    @contextmanager
    def no_cluster(workers, scheduler):
        yield None

    monkeypatch.setattr(cluster, "dask_client", no_cluster)
    monkeypatch.setattr(cluster, "predict_volume_dask", lambda volume, model, *args, **kw: sent.append(model))
    builtin = str(tmp_path / "isbi2012-membranes.pt")  # a built-in model's description names its checkpoint
    cases = [
        (str(tmp_path / "net.ONNX"), str(tmp_path / "net.ONNX"), "exported"),  # was "checkpoint" on the workers
        (str(tmp_path / "net.zip"), str(tmp_path / "net.zip"), "bioimageio"),
        ("isbi2012-membranes", builtin, "checkpoint"),
        (None, str(tmp_path / "last.pt"), "checkpoint"),
    ]
    for model, path, kind in cases:
        args = argparse.Namespace(model=model, dask_workers=1, threads=0, scheduler=None, out=str(tmp_path))
        predict_volumes_dask([SimpleNamespace(spec="v")], SimpleNamespace(), None, {"path": path}, args, None, "")
        assert (sent[-1].path, sent[-1].kind) == (path, kind)
        if model is not None and kind != "checkpoint":
            assert sent[-1].kind == requested_kind(model)  # what cli/inference.py opened on the client
    assert requested_kind(None) == "checkpoint" and requested_kind(tmp_path) == "exported"  # the exporter refuses it


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
