"""experiments/average_weights.py: the weight-averaging probe the README's lever table cites."""

import pytest
import torch
from support import load_experiment, tiny_config

from biounet.model import checkpoint as ckpt_io
from biounet.model.checkpoint import load_model
from biounet.model.unet import build_model


@pytest.fixture(scope="module")
def average_weights():
    return load_experiment("average_weights")


@pytest.fixture
def run_dir(tmp_path):
    """A run folder with step checkpoints 2, 4 and 6 whose float tensors are 1, 2 and 6 plus a base."""
    cfg = tiny_config(batch_norm=True)
    base = build_model(cfg).state_dict()
    for step, shift in ((2, 1.0), (4, 2.0), (6, 6.0)):
        state = {k: v + shift if v.is_floating_point() else v + step for k, v in base.items()}
        ckpt_io.atomic_save(ckpt_io.payload(cfg.to_dict(), step, state), tmp_path / ckpt_io.step_name(step))
    return tmp_path, base


def test_averages_the_checkpoints_from_the_step_on(average_weights, run_dir, tmp_path_factory, capsys):
    run, base = run_dir
    out = tmp_path_factory.mktemp("avg") / "new-folder" / "averaged.pt"  # the README's runs/avg/...
    assert average_weights.main([str(run), "--from-step", "4", "--out", str(out)]) == 0
    assert "averaged steps 4, 6" in capsys.readouterr().out
    ckpt = ckpt_io.load(out)
    assert ckpt["averaged_steps"] == [4, 6] and ckpt["step"] == 6
    for key, value in base.items():
        if value.is_floating_point():  # (base + 2 + base + 6) / 2
            torch.testing.assert_close(ckpt["model"][key], value + 4.0)
        else:  # batch-norm counters: the newest checkpoint's
            assert torch.equal(ckpt["model"][key], value + 6)
    model, cfg, _ = load_model(out, "cpu")  # biounet evaluate reads it as any checkpoint
    assert cfg.batch_norm and not model.training


def test_refuses_too_few_checkpoints_and_never_overwrites(average_weights, run_dir, capsys):
    run, _ = run_dir
    assert average_weights.main([str(run), "--from-step", "6", "--out", str(run / "a.pt")]) == 2
    err = capsys.readouterr().err
    assert "1 step checkpoint(s) at or after step 6" in err and "lower --from-step" in err
    assert not (run / "a.pt").exists()
    existing = run / "keep.pt"
    existing.write_bytes(b"mine")
    assert average_weights.main([str(run), "--from-step", "2", "--out", str(existing)]) == 2
    assert "already exists" in capsys.readouterr().err and existing.read_bytes() == b"mine"
