"""Block-wise prediction on Dask: local clusters on 127.0.0.1 with free ports, always torn down."""

import numpy as np
import pytest
import zarr
from support import tiny_config

import biounet.segment.cluster as cluster
from biounet.cli import main
from biounet.core.errors import DataError
from biounet.io.volumes import open_volume
from biounet.models import ModelRef, load_predictor
from biounet.segment.blockwise import VolumeSettings, file_digest, predict_volume
from biounet.segment.cluster import dask_client, predict_volume_dask
from biounet.train.engine import train

pytestmark = pytest.mark.slow  # each test starts worker processes (a few seconds)
SETTINGS = VolumeSettings(tile=60, dtype="float32", chunks=(32, 32))


@pytest.fixture(scope="module")
def setup(tmp_path_factory, isbi_dir):
    tmp = tmp_path_factory.mktemp("cluster")
    train(tiny_config(data=str(isbi_dir), out=str(tmp / "run"), steps=2), quiet=True)
    data = np.random.default_rng(0).integers(0, 256, (4, 70, 90), dtype=np.uint8)
    zarr.create_array(tmp / "vol.zarr", shape=data.shape, chunks=(1, 32, 32), dtype="uint8")[:] = data
    predictor, cfg, ckpt = load_predictor(tmp / "run", "cpu", "fp32")
    volume = open_volume(str(tmp / "vol.zarr"))
    reference = predict_volume(volume, predictor, cfg, tmp / "single", SETTINGS, file_digest(ckpt["path"]), print)
    return tmp, cfg, ckpt, volume, zarr.open_group(reference, mode="r")["0"][:]


def _model(ckpt):
    return ModelRef(str(ckpt["path"]), kind="checkpoint", device="cpu", precision="fp32", threads=1)


def _image(path):
    return zarr.open_group(path, mode="r")["0"][:]


def test_two_local_workers_give_the_single_process_result(setup, capsys):
    tmp, _, _, _, reference = setup
    args = ["predict", str(tmp / "vol.zarr"), "--model", str(tmp / "run"), "--out", str(tmp / "two")]
    assert main([*args, "--dask-workers", "2", "--precision", "fp32", "--chunks", "32,32", "--dtype", "float32"]) == 0
    np.testing.assert_allclose(_image(tmp / "two" / "vol.ome.zarr"), reference, rtol=0, atol=1e-4)


def test_a_killed_worker_s_block_runs_on_another_and_an_existing_scheduler_is_used(setup, monkeypatch):
    tmp, cfg, ckpt, volume, reference = setup
    monkeypatch.setenv("BIOUNET_FAULT_KILL_BLOCK", "b_1_0_0")  # the worker that starts it dies (SIGKILL)
    with dask_client(2, None) as local:
        address = local.scheduler.address
        with dask_client(None, address) as client:  # as with `dask scheduler` + `dask worker`
            out = predict_volume_dask(volume, _model(ckpt), cfg, tmp / "killed", SETTINGS, "d", client, print)
            loads = client.run(lambda: len(cluster._LOADED))
    assert (out / ".biounet" / "fault-killed-b_1_0_0").exists()  # the kill did happen
    assert all(n <= 1 for n in loads.values())  # each worker loaded the model at most once
    np.testing.assert_allclose(_image(out), reference, rtol=0, atol=1e-4)


def test_a_block_that_keeps_failing_stops_the_run_which_resumes(setup, monkeypatch):
    tmp, cfg, ckpt, volume, reference = setup
    monkeypatch.setenv("BIOUNET_FAULT_FAIL_BLOCK", "b_2_0_0")
    with dask_client(2, None) as client:
        with pytest.raises(DataError, match="block b_2_0_0 failed 2 times.*resume"):
            predict_volume_dask(volume, _model(ckpt), cfg, tmp / "failing", SETTINGS, "d", client, print, retries=1)
    store = tmp / "failing" / "vol.ome.zarr"
    assert "b_2_0_0" not in {p.name for p in (store / ".biounet" / "done").iterdir()}
    monkeypatch.delenv("BIOUNET_FAULT_FAIL_BLOCK")
    with dask_client(1, None) as client:
        out = predict_volume_dask(volume, _model(ckpt), cfg, tmp / "failing", SETTINGS, "d", client, print)
    np.testing.assert_allclose(_image(out), reference, rtol=0, atol=1e-4)


def test_an_unreachable_scheduler_is_one_clear_line(monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1)
    with pytest.raises(DataError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        with dask_client(None, "tcp://127.0.0.1:9"):
            pass


def test_a_scheduler_file_names_the_scheduler(setup, tmp_path):
    tmp, cfg, ckpt, volume, reference = setup
    with dask_client(1, None) as local:
        local.write_scheduler_file(str(tmp_path / "scheduler.json"))
        with dask_client(None, str(tmp_path / "scheduler.json")) as client:
            out = predict_volume_dask(volume, _model(ckpt), cfg, tmp / "file", SETTINGS, "d", client, print)
    np.testing.assert_allclose(_image(out), reference, rtol=0, atol=1e-4)
