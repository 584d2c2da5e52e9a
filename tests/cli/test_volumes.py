"""biounet.cli.volumes: predict's volume options handed to biounet.segment.volumes, through the real
command line on tiny inputs; the progress modes; how a Dask worker opens the client's model."""

from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
import zarr

import biounet.segment.volumes as library
from biounet.cli import main
from biounet.cli.volumes import bar_reports, model_loader, progress_bar, shows_bar


def _run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


@pytest.fixture
def inputs(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, (2, 48, 56), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", data)
    zarr.create_array(tmp_path / "vol.zarr", data=data, chunks=(1, 16, 16))
    return tmp_path


def test_format_auto_writes_tiff_for_a_stack_and_ome_zarr_for_a_volume(capsys, tiny_run, inputs):
    out = inputs / "out"
    code, said, err = _run(capsys, "predict", inputs / "stack.tif", inputs / "vol.zarr", "--model", tiny_run,
                           "--out", out, "--progress", "off", "--device", "cpu")  # fmt: skip
    assert code == 0, err
    assert (out / "stack_membrane.tif").is_file() and (out / "vol.ome.zarr").is_dir()
    assert f"{inputs / 'vol.zarr'} -> {out / 'vol.ome.zarr'}" in said


def test_format_auto_follows_the_declared_size_of_a_tiff(capsys, tiny_run, inputs, monkeypatch):
    monkeypatch.setattr(library, "BLOCKWISE_PIXELS", 2 * 48 * 56 - 1)
    code, said, err = _run(capsys, "predict", inputs / "stack.tif", "--model", tiny_run, "--out", inputs / "o",
                           "--progress", "off", "--device", "cpu")  # fmt: skip
    assert code == 0, err
    assert (inputs / "o" / "stack.ome.zarr").is_dir() and not (inputs / "o" / "stack_membrane.tif").exists()
    assert "declares" in said


@pytest.mark.parametrize(
    "scheduler, message",
    [
        ("missing.json", "--scheduler {}: no such scheduler file, and not an address; give the scheduler's address"),
        ("bad.json", "--scheduler {} is not a Dask scheduler file"),
    ],
)
def test_a_scheduler_that_is_no_file_or_address_is_one_line(capsys, tiny_run, inputs, scheduler, message):
    (inputs / "bad.json").write_text("{")
    path = inputs / scheduler
    code, _, err = _run(capsys, "predict", inputs / "vol.zarr", "--model", tiny_run, "--out", inputs / "o",
                        "--scheduler", path)  # fmt: skip
    assert code == 2 and err.startswith("biounet predict: error: ") and len(err.splitlines()) == 1, err
    assert message.format(path) in err and err.endswith("or the file `dask scheduler --scheduler-file FILE` wrote")
    assert not (inputs / "o" / "vol.ome.zarr").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--dask-workers", "0"], "--dask-workers 0: give at least 1 worker"),
        (["--level", "-1"], "--level -1: levels count from 0"),
        (["--chunks", "16"], "--chunks '16': give two chunk sides Y,X"),
        (["--overlay"], "--overlay writes PNGs of whole images; drop it for volumes"),
    ],
)
def test_volume_options_are_checked_before_the_model_is_opened(capsys, inputs, extra, message):
    code, _, err = _run(capsys, "predict", inputs / "vol.zarr", "--model", "/no/model.pt", "--out", inputs / "o",
                        *extra)  # fmt: skip
    assert code == 2 and message in err and len(err.splitlines()) == 1, err


def test_dask_without_a_volume_is_refused(capsys, tiny_run, inputs):
    code, _, err = _run(capsys, "predict", inputs / "stack.tif", "--model", tiny_run, "--out", inputs / "o",
                        "--dask-workers", "2")  # fmt: skip
    assert code == 2 and "--dask-workers and --scheduler run volumes block-wise; add --format ome-zarr" in err


def test_progress_modes(monkeypatch):
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert not shows_bar("auto") and not shows_bar("off") and shows_bar("on")
    assert progress_bar(3, "image", "off") is None and bar_reports("off") is None
    bar = progress_bar(3, "image", "on")
    try:
        bar.update(2)
        assert bar.n == 2
    finally:
        bar.close()
    with bar_reports("on")() as report:
        report.progress(3, 4, 100)  # a block bar learns its total from the library
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert shows_bar("auto")


def test_the_client_and_its_dask_workers_open_the_same_kind(tmp_path):
    (tmp_path / "net.ONNX").write_bytes(b"")
    predictor = SimpleNamespace(device="cuda:1", precision="bf16")
    builtin = str(tmp_path / "isbi2012-membranes.pt")  # a built-in model's description names its checkpoint
    cases = [
        (str(tmp_path / "net.ONNX"), str(tmp_path / "net.ONNX"), "exported"),
        (str(tmp_path / "net.zip"), str(tmp_path / "net.zip"), "bioimageio"),
        ("isbi2012-membranes", builtin, "checkpoint"),
        (str(tmp_path), str(tmp_path / "last.pt"), "checkpoint"),  # a run folder: the file the client opened
    ]
    for model, path, kind in cases:
        ref = model_loader(model, predictor, {"path": path})(3)
        assert (ref.path, ref.kind, ref.device, ref.precision, ref.threads) == (path, kind, "cuda", "bf16", 3)
    on_cpu = model_loader(str(tmp_path), SimpleNamespace(), {"path": "p"})(1)  # a predictor that says nothing
    assert (on_cpu.device, on_cpu.precision) == ("cpu", "fp32")
