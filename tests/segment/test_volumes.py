"""biounet.segment.volumes: the output format decided by the input alone, the checks of a volume run,
and the run itself in this process or handed to Dask."""

import json
from contextlib import contextmanager

import numpy as np
import pytest
import tifffile
import zarr
from support import tiny_config

import biounet.segment.volumes as volumes
from biounet.core.errors import ConfigError
from biounet.segment.blockwise import VolumeSettings
from biounet.segment.volumes import (
    BLOCKWISE_PIXELS,
    Report,
    VolumeRun,
    check_scheduler,
    declared_pixels,
    open_volumes,
    output_format,
    predict_volumes,
    worker_threads,
)


def _tiff(path, shape=(2, 16, 16)):
    tifffile.imwrite(path, np.zeros(shape, np.uint8))
    return str(path)


def test_a_volume_is_ome_zarr_and_an_image_or_stack_is_tiff(tmp_path):
    stack = _tiff(tmp_path / "stack.tif")
    (tmp_path / "a.png").write_bytes(b"")
    assert output_format(stack) == "tiff"
    assert output_format(str(tmp_path / "a.png")) == "tiff"
    assert output_format(str(tmp_path)) == "tiff"  # a folder of images
    for spec in ("v.zarr", "v.ome.zarr/0", "v.h5:/raw", "v.hdf5"):
        assert output_format(str(tmp_path / spec)) == "ome-zarr"
        assert output_format(str(tmp_path / spec), "tiff") == "ome-zarr"  # nothing else reads a Zarr or HDF5
    assert output_format(stack, "ome-zarr") == "ome-zarr"
    with pytest.raises(ConfigError, match="--format must be one of auto, tiff, ome-zarr, got 'png'"):
        output_format(stack, "png")


def test_a_tiff_is_a_volume_by_its_declared_size_not_by_the_memory_free(tmp_path, monkeypatch):
    import biounet.core.system as system

    stack = _tiff(tmp_path / "stack.tif", (3, 16, 20))
    assert declared_pixels(stack) == 3 * 16 * 20
    monkeypatch.setattr(system, "available_ram_bytes", lambda: 1)  # the old rule took this for "too large"
    assert output_format(stack) == "tiff"
    said = []
    monkeypatch.setattr(volumes, "BLOCKWISE_PIXELS", 3 * 16 * 20 - 1)
    assert output_format(stack, log=said.append) == "ome-zarr"
    assert "declares" in said[0] and "--format tiff" in said[0]
    assert output_format(stack, "tiff") == "tiff"
    monkeypatch.setattr(system, "available_ram_bytes", lambda: 2**50)
    assert output_format(stack, log=said.append) == "ome-zarr"  # the same on a machine with more memory


def test_an_unreadable_tiff_is_left_to_the_image_reader(tmp_path):
    (tmp_path / "junk.tif").write_bytes(b"not a tiff")
    assert declared_pixels(tmp_path / "junk.tif") is None
    assert output_format(str(tmp_path / "junk.tif")) == "tiff"
    assert BLOCKWISE_PIXELS == 2**28


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:8786", "localhost:8786", "tls://[::1]:8786", "sched.host:1/"])
def test_scheduler_addresses(address):
    assert check_scheduler(address) == address


def test_scheduler_files(tmp_path):
    good, bad, empty = tmp_path / "good.json", tmp_path / "bad.json", tmp_path / "empty.json"
    good.write_text(json.dumps({"address": "tcp://127.0.0.1:8786", "type": "Scheduler"}))
    bad.write_text("{not json")
    empty.write_text("[]")
    assert check_scheduler(str(good)) == str(good)
    for path in (bad, empty):
        with pytest.raises(ConfigError, match="is not a Dask scheduler file .*; give the scheduler's address"):
            check_scheduler(str(path))
    with pytest.raises(ConfigError, match="is a folder"):
        check_scheduler(str(tmp_path))
    with pytest.raises(ConfigError, match="no-such.json: no such scheduler file, and not an address"):
        check_scheduler(str(tmp_path / "no-such.json"))


def test_a_volume_run_is_checked():
    assert VolumeRun("o").check() == VolumeRun("o") and not VolumeRun("o").on_dask
    assert VolumeRun("o", dask_workers=2).on_dask and VolumeRun("o", scheduler="h:1").on_dask
    for run, message in [
        (VolumeRun("o", level=-1), "--level -1: levels count from 0"),
        (VolumeRun("o", dask_workers=0), "--dask-workers 0: give at least 1 worker"),
        (VolumeRun("o", dask_workers=2, scheduler="h:1"), "give one of them"),
        (VolumeRun("o", scheduler="nowhere"), "--scheduler nowhere: no such scheduler file"),
    ]:
        with pytest.raises(ConfigError, match=message):
            run.check()


def test_worker_threads():
    assert worker_threads(VolumeRun("o", dask_workers=4), cores=16) == 4  # the cores shared
    assert worker_threads(VolumeRun("o", dask_workers=32), cores=16) == 1
    assert worker_threads(VolumeRun("o", scheduler="h:1")) == 1  # a cluster: one worker per core
    assert worker_threads(VolumeRun("o", scheduler="h:1", threads=3)) == 3


def _zarr(path, seed=0):
    data = np.random.default_rng(seed).integers(0, 256, (2, 40, 48), dtype=np.uint8)
    zarr.create_array(path, data=data, chunks=(1, 16, 16))
    return str(path)


def test_two_inputs_that_would_write_one_store_are_refused(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    a, b = _zarr(tmp_path / "a" / "vol.zarr"), _zarr(tmp_path / "b" / "vol.zarr")
    assert [v.name for v in open_volumes([a], VolumeRun(str(tmp_path / "o")))] == ["vol"]
    with pytest.raises(ConfigError, match="two volumes would write one .*<stem>.ome.zarr .*use two --out"):
        open_volumes([a, b], VolumeRun(str(tmp_path / "o")))


def _setup(tmp_path):
    import torch

    from biounet.model.unet import build_model
    from biounet.segment.inference import torch_predictor

    torch.manual_seed(0)
    cfg = tiny_config(base_width=2)
    (tmp_path / "model.pt").write_bytes(b"the model's bytes")  # only its digest marks the store
    return cfg, torch_predictor(build_model(cfg), "cpu", "fp32")


def test_volumes_run_in_this_process_with_a_report_each(tmp_path):
    cfg, predictor = _setup(tmp_path)
    specs = [_zarr(tmp_path / "one.zarr"), _zarr(tmp_path / "two.zarr", seed=1)]
    run = VolumeRun(str(tmp_path / "out")).check()
    lines, progress, opened = [], [], []

    @contextmanager
    def reports():
        opened.append(1)
        yield Report(lines.append, lambda done, total, voxels: progress.append((done, total)))

    paths = predict_volumes(
        open_volumes(specs, run), predictor, cfg, VolumeSettings(tile=60), tmp_path / "model.pt", run,
        log=lines.append, reports=reports,
    )  # fmt: skip
    assert [p.name for p in paths] == ["one.ome.zarr", "two.ome.zarr"] and len(opened) == 2
    assert f"{specs[0]} -> {paths[0]}" in lines and progress[-1][0] == progress[-1][1]
    assert zarr.open_group(paths[1], mode="r")["0"].shape == (2, 40, 48)


def test_a_dask_run_hands_each_worker_the_loader_with_its_threads(tmp_path, monkeypatch):
    cfg, predictor = _setup(tmp_path)
    volume = open_volumes([_zarr(tmp_path / "v.zarr")], VolumeRun("o"))
    sent = []

    @contextmanager
    def no_cluster(workers, scheduler, log):
        sent.append((workers, scheduler))
        yield "client"

    def on_cluster(volume, model, cfg, out, settings, digest, client, log, progress):
        sent.append((model, client))
        return tmp_path / "v.ome.zarr"

    monkeypatch.setattr(volumes, "dask_client", no_cluster)
    monkeypatch.setattr(volumes, "predict_volume_dask", on_cluster)
    run = VolumeRun(str(tmp_path), dask_workers=2)
    paths = predict_volumes(volume, predictor, cfg, VolumeSettings(), tmp_path / "model.pt", run, lambda n: f"x{n}")
    assert paths == [tmp_path / "v.ome.zarr"]
    assert sent == [(2, None), (f"x{worker_threads(run)}", "client")]
    with pytest.raises(ValueError, match="needs the model's loader"):
        predict_volumes(volume, predictor, cfg, VolumeSettings(), tmp_path / "model.pt", run)
