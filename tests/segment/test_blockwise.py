"""Block-wise prediction of volumes: equal to the in-memory path, resumable, refusing a mixed store."""

import dataclasses
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import zarr
from support import tiny_config

import biounet.segment.blockwise as blockwise
from biounet.core.errors import ConfigError
from biounet.data.readers import scale_image
from biounet.instances.methods import instance_labels
from biounet.io.volumes import open_volume
from biounet.model.unet import build_model
from biounet.segment.blockwise import VolumeSettings, block_regions, predict_volume
from biounet.segment.inference import segment, torch_predictor
from biounet.train.engine import train


def _volume(tmp_path, shape=(3, 70, 90), seed=0):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, shape, dtype=np.uint8)
    path = tmp_path / "vol.zarr"
    arr = zarr.create_array(path, shape=shape, chunks=(1, 32, 32), dtype="uint8")
    arr[:] = data
    return path, data


def _setup(padding="valid", seed=0):
    torch.manual_seed(seed)
    cfg = tiny_config(padding=padding, base_width=2)
    return cfg, torch_predictor(build_model(cfg), "cpu", "fp32")


def _in_memory(data, predictor, cfg, tile, tta=False):
    return np.stack(
        [
            segment(scale_image(s, 1), predictor, cfg.depth, cfg.padding, tile, 4, tta)
            for s in data  # the whole slices at once, as `predict` does for a TIFF stack
        ]
    )


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of one 32 x 48 chunk, so that a small volume has many blocks and block borders."""
    monkeypatch.setitem(blockwise.BLOCK_TARGET, "valid", 1)
    monkeypatch.setitem(blockwise.BLOCK_TARGET, "same", 1)


@pytest.mark.parametrize("padding, tile, tta", [("valid", 60, False), ("valid", None, True), ("same", 32, False)])
def test_blocks_equal_the_whole_slices_in_memory(tmp_path, small_blocks, padding, tile, tta):
    path, data = _volume(tmp_path)
    cfg, predictor = _setup(padding)
    settings = VolumeSettings(tile=tile, tta=tta, dtype="float32", chunks=(32, 48))
    out = predict_volume(
        open_volume(str(path)), predictor, cfg, tmp_path / "out", settings, "digest", log=lambda s: None
    )
    got = zarr.open_group(out, mode="r")["0"][:]
    expected = _in_memory(data, predictor, cfg, tile, tta)[:, 0]
    assert got.shape == data.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    mask = zarr.open_group(out, mode="r")["labels/mask/0"][:]
    np.testing.assert_array_equal(mask, (got > 0.5).astype(np.uint8))


def test_a_region_of_interest_is_the_same_crop_of_the_whole(tmp_path, small_blocks):
    path, data = _volume(tmp_path)
    cfg, predictor = _setup()
    settings = VolumeSettings(tile=60, dtype="float32", chunks=(32, 32), roi="1:3,5:61,17:90")
    out = predict_volume(open_volume(str(path)), predictor, cfg, tmp_path / "out", settings, "d", log=lambda s: None)
    got = zarr.open_group(out, mode="r")["0"][:]
    expected = _in_memory(data, predictor, cfg, 60)[1:3, 0, 5:61, 17:90]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("method", ["watershed", "multicut", "gasp", "objects"])
def test_instances_are_the_in_memory_ones_with_ids_unique_across_slices(tmp_path, method):
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(np.random.default_rng(1).standard_normal((2, 64, 80)), (0, 4, 4))
    data = np.round(255 * (smooth - smooth.min()) / np.ptp(smooth)).astype(np.uint8)  # bright blobs: "cells"
    path = tmp_path / "vol.zarr"
    zarr.create_array(path, shape=data.shape, chunks=(1, 32, 32), dtype="uint8")[:] = data
    cfg = tiny_config()
    margin = 20  # a valid "network" of depth 2 with 60-pixel tiles: scores from the centre of its input

    def predictor(batch):
        centre = batch[:, :, margin:-margin, margin:-margin]
        return np.concatenate([-8 * centre, 8 * centre], 1)

    settings = VolumeSettings(tile=60, dtype="uint8", chunks=(32, 32), labels=method)
    out = predict_volume(open_volume(str(path)), predictor, cfg, tmp_path / "out", settings, "d", log=lambda s: None)
    cells = zarr.open_group(out, mode="r")["labels/cells/0"][:]
    probs = _in_memory(data, predictor, cfg, 60)
    for z in range(2):
        expected = instance_labels(probs[z, 1], method)
        assert expected.max() > 0  # the test means something: there are cells
        ids = cells[z]
        # the same partition: each in-memory cell is one block-wise cell, and background stays background
        np.testing.assert_array_equal(ids == 0, expected == 0)
        pairs = {(int(a), int(b)) for a, b in zip(ids[expected > 0], expected[expected > 0])}
        assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})
    assert not set(np.unique(cells[0])[1:]) & set(np.unique(cells[1])[1:])


def test_an_interrupted_run_resumes_with_only_the_unfinished_blocks(tmp_path, small_blocks, monkeypatch):
    path, _ = _volume(tmp_path)
    cfg, predictor = _setup()
    settings = VolumeSettings(tile=60, dtype="float32", chunks=(32, 32))
    volume = open_volume(str(path))
    whole = predict_volume(volume, predictor, cfg, tmp_path / "a", settings, "d", log=lambda s: None)
    total = len(block_regions((3, 70, 90), (1, 32, 32)))
    real, calls = blockwise._run_block, []

    def dies_after_five(*args):
        if len(calls) == 5:
            raise KeyboardInterrupt
        calls.append(args[-1])
        return real(*args)

    monkeypatch.setattr(blockwise, "_run_block", dies_after_five)
    with pytest.raises(KeyboardInterrupt):
        predict_volume(volume, predictor, cfg, tmp_path / "b", settings, "d", log=lambda s: None)
    monkeypatch.setattr(blockwise, "_run_block", lambda *args: calls.append(args[-1]) or real(*args))
    out = predict_volume(volume, predictor, cfg, tmp_path / "b", settings, "d", log=lambda s: None)
    assert len(calls) == total  # 5 before the interruption, the other blocks after it: none twice
    np.testing.assert_array_equal(zarr.open_group(out, mode="r")["0"][:], zarr.open_group(whole, mode="r")["0"][:])


def test_a_store_from_other_settings_is_refused_and_kept(tmp_path):
    path, _ = _volume(tmp_path)
    cfg, predictor = _setup()
    volume = open_volume(str(path))
    out = predict_volume(volume, predictor, cfg, tmp_path / "out", VolumeSettings(tile=60), "d", log=lambda s: None)
    before = sorted((p, p.stat().st_mtime_ns) for p in out.rglob("*"))
    for settings, digest in [(VolumeSettings(tile=60, tta=True), "d"), (VolumeSettings(tile=60), "other model")]:
        with pytest.raises(ConfigError, match="delete it|another --out"):
            predict_volume(volume, predictor, cfg, tmp_path / "out", settings, digest, log=lambda s: None)
    assert sorted((p, p.stat().st_mtime_ns) for p in out.rglob("*")) == before


def test_the_table_of_objects_is_no_part_of_the_store(tmp_path):
    """A store made without the table is not refused with it: the table is made from the complete store."""
    path, _ = _volume(tmp_path, shape=(2, 48, 48))
    cfg, predictor = _setup()
    volume, run = open_volume(str(path)), (predictor, cfg, tmp_path / "out")
    plain = VolumeSettings(tile=60, chunks=(32, 32), labels="watershed")
    predict_volume(volume, *run, plain, "d", log=lambda s: None)
    assert not (tmp_path / "out" / "vol_objects.csv").exists()
    predict_volume(volume, *run, dataclasses.replace(plain, measure=True), "d", log=lambda s: None)
    assert (tmp_path / "out" / "vol_objects.csv").read_text().startswith("slice,label,area,")


def test_bad_volume_settings_are_one_clear_error(tmp_path):
    path, _ = _volume(tmp_path)
    cfg, predictor = _setup()
    volume = open_volume(str(path))
    with pytest.raises(ConfigError, match="multiples of 16"):
        predict_volume(volume, predictor, cfg, tmp_path / "o", VolumeSettings(chunks=(30, 32)), "d")
    with pytest.raises(ConfigError, match="roi|ROI|outside"):
        predict_volume(volume, predictor, cfg, tmp_path / "o", VolumeSettings(roi="0:9,:,:"), "d")
    three = tiny_config(classes=3)
    with pytest.raises(ConfigError, match="2-class"):
        predict_volume(volume, predictor, three, tmp_path / "o", VolumeSettings(), "d")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, isbi_dir):
    run = tmp_path_factory.mktemp("blockwise") / "run"
    train(tiny_config(data=str(isbi_dir), out=str(run), steps=2), quiet=True)
    return run


def _predict_cmd(volume, run_dir, out):
    return [sys.executable, "-m", "biounet", "predict", str(volume), "--model", str(run_dir), "--out", str(out)]


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_result(tmp_path, run_dir):
    path, _ = _volume(tmp_path, (6, 96, 96))
    args = ["--chunks", "32,32", "--dtype", "float32", "--precision", "fp32", "--threads", "1"]
    ref = subprocess.run(_predict_cmd(path, run_dir, tmp_path / "ref") + args, capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen(_predict_cmd(path, run_dir, out) + args, stdout=subprocess.DEVNULL)
    store = out / "vol.ome.zarr"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if store.is_dir() and any("b_" in p.name for p in store.rglob("b_*")):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    again = subprocess.run(_predict_cmd(path, run_dir, out) + args, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stdout
    np.testing.assert_array_equal(
        zarr.open_group(store, mode="r")["0"][:], zarr.open_group(tmp_path / "ref" / "vol.ome.zarr", mode="r")["0"][:]
    )


def test_the_command_line_segments_a_volume_and_says_what_is_wrong_in_one_line(tmp_path, run_dir, capsys):
    from biounet.cli import main

    path, data = _volume(tmp_path, (2, 40, 50))
    out = tmp_path / "out"
    assert main(["predict", str(path), "--model", str(run_dir), "--out", str(out), "--precision", "fp32"]) == 0
    image = zarr.open_group(out / "vol.ome.zarr", mode="r")["0"]
    assert image.shape == data.shape and image.dtype == np.uint8
    capsys.readouterr()
    bad = [
        ([str(tmp_path / "missing.zarr")], 1, "does not exist"),
        ([str(path), "--roi", "0:5,:,:"], 2, "roi"),
        ([str(path), "--chunks", "20,20"], 2, "multiples of 16"),
        ([str(path), "--chunks", "big"], 2, "Y,X"),
        ([str(path), "--overlay"], 2, "--overlay"),
        ([str(path), "--level", "-1"], 2, "--level"),
    ]
    for args, code, phrase in bad:
        rc = main(["predict", *args, "--model", str(run_dir), "--out", str(tmp_path / "bad")])
        err = capsys.readouterr().err.strip()
        assert rc == code and phrase in err and "\n" not in err, (args, rc, err)


def test_a_three_page_tiff_that_reads_as_rgb_is_named_with_the_axes_fix(tmp_path, run_dir, capsys):
    import tifffile

    from biounet.cli import main

    stack = np.random.default_rng(0).integers(0, 256, (3, 40, 48), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "three.tif", stack)  # no photometric: tifffile stores planar RGB
    args = ["predict", str(tmp_path / "three.tif"), "--format", "ome-zarr", "--model", str(run_dir)]
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    assert "--axes zyx" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "b"), "--axes", "zyx"]) == 0
    assert zarr.open_group(tmp_path / "b" / "three.ome.zarr", mode="r")["0"].shape == (3, 40, 48)


def test_a_volume_of_absurdly_many_blocks_is_refused_before_any_store_is_made(tmp_path, monkeypatch):
    path, _ = _volume(tmp_path)
    cfg, predictor = _setup()
    monkeypatch.setattr(blockwise, "MAX_BLOCKS", 5)  # the real bound: 10**7 blocks
    monkeypatch.setitem(blockwise.BLOCK_TARGET, "valid", 1)
    with pytest.raises(blockwise.DataError, match="make 27 blocks.*declared size"):
        predict_volume(open_volume(str(path)), predictor, cfg, tmp_path / "o", VolumeSettings(chunks=(32, 32)), "d")
    assert not (tmp_path / "o" / "vol.ome.zarr").exists()
