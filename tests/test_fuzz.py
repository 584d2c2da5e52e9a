"""benchmarks/fuzz.py with a small, derandomized budget: damaged images through the readers, broken
configs through load_yaml/from_dict/validate, and nonsense command lines through ``main(argv)``.
Every input ends in a valid result or a clean one-line error; the long run is the benchmark's."""

import shutil

import pytest
from conftest import load_benchmark
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

fuzz = load_benchmark("fuzz")

FAST = settings(
    deadline=None,
    derandomize=True,
    max_examples=60,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
SLOW = settings(FAST, max_examples=20)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return fuzz.Workspace.create(tmp_path_factory.mktemp("fuzz") / "ws")


def _fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@FAST
@given(
    image=fuzz.image_files(),
    in_channels=st.sampled_from((1, 3)),
    classes=st.sampled_from((2, 3)),
    threshold=st.sampled_from((None, 127.0)),
)
def test_readers_return_an_array_or_a_data_error(tmp_path, image, in_channels, classes, threshold):
    suffix, data, _ = image
    path = _fresh(tmp_path / "case") / f"x{suffix}"
    path.write_bytes(data)
    outcome = fuzz.check_readers(path, in_channels, classes, threshold, limit=30)
    assert outcome.status in ("ok", "clean"), outcome.detail


@FAST
@given(text=fuzz.yaml_texts())
def test_configs_load_or_raise_one_config_error(tmp_path, text):
    outcome = fuzz.check_config(text, tmp_path / "c.yaml", limit=30)
    assert outcome.status in ("ok", "clean"), outcome.detail


@SLOW
@given(data=st.data())
@pytest.mark.parametrize("command", ["predict", "evaluate", "score", "fetch", "bench", "export"])
def test_command_lines_end_in_success_or_one_clean_line(ws, tmp_path, command, data):
    case = _fresh(tmp_path / "case")
    fuzz.write_files(case, data.draw(fuzz.fuzz_files()), ws, data.draw(st.none() | fuzz.checkpoint_damage))
    argv = data.draw(fuzz.argvs(ws, case, command))
    outcome = fuzz.check_cli(argv, limit=30)
    assert outcome.status in ("ok", "clean"), (argv, outcome.detail, outcome.stderr)


@settings(SLOW, max_examples=8)
@given(data=st.data())
@pytest.mark.parametrize("command", ["train", "cv", "demo"])
def test_training_command_lines_end_in_success_or_one_clean_line(ws, tmp_path, command, data):
    case = _fresh(tmp_path / "case")
    fuzz.write_files(case, data.draw(fuzz.fuzz_files()), ws)
    argv = data.draw(fuzz.argvs(ws, case, command))
    outcome = fuzz.check_cli(argv, limit=30)
    assert outcome.status in ("ok", "clean"), (argv, outcome.detail, outcome.stderr)


def test_the_checker_tells_failures_from_clean_errors(ws, tmp_path, monkeypatch):
    assert fuzz.check_cli(["predict"]).status == "clean"  # argparse: one line, exit 2
    assert fuzz.check_cli(["score", str(tmp_path / "a.tif"), str(tmp_path / "b.tif")]).status == "clean"
    import biounet.cli

    monkeypatch.setitem(biounet.cli.COMMANDS, "score", lambda args: 1 / 0)
    outcome = fuzz.check_cli(["score", "a", "b"])
    assert outcome.status == "failure" and "ZeroDivisionError" in outcome.detail
    monkeypatch.setitem(biounet.cli.COMMANDS, "score", lambda args: __import__("time").sleep(5))
    assert fuzz.check_cli(["score", "a", "b"], limit=0.2).status == "hang"


def test_patched_headers_declare_huge_images(tmp_path):
    import numpy as np
    import tifffile
    from PIL import Image

    png = tmp_path / "x.png"
    png.write_bytes(fuzz.encode_png(np.zeros((4, 5), np.uint8), declared=(fuzz.HUGE, fuzz.HUGE)))
    old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(png) as img:
            assert img.size == (fuzz.HUGE, fuzz.HUGE)
    finally:
        Image.MAX_IMAGE_PIXELS = old
    tif = tmp_path / "x.tif"
    tif.write_bytes(fuzz.patch_tiff_size(fuzz.encode_tiff(np.zeros((4, 5), np.uint8), shaped=False)))
    with tifffile.TiffFile(tif) as t:
        assert t.pages[0].shape == (fuzz.HUGE, fuzz.HUGE)
