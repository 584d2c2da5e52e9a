"""Stop signals: Ctrl-C and SIGTERM are held until the step in flight is counted."""

import json

import pytest
import torch
from support import tiny_config

from biounet.model import checkpoint as ckpt_io
from biounet.train import engine
from biounet.train.engine import train


def test_a_stop_signal_during_the_update_is_held_until_the_step_is_counted(isbi_data, tmp_path, monkeypatch):
    """SIGINT or SIGTERM arriving while the weights are updated must not save step N's weights as step
    N - 1 (a resume would then apply step N twice): the step completes, is counted and logged, then
    the run stops. Resuming ends with the uninterrupted run's weights, bit for bit."""
    import os
    import signal

    cfg = tiny_config(steps=4, checkpoint_every=10)
    train(cfg.replace(out=str(tmp_path / "straight")), data=isbi_data, quiet=True)
    for sig in (signal.SIGINT, signal.SIGTERM):
        run = tmp_path / f"stopped-{sig.name}"
        real_step, calls = engine.train_step, {"n": 0}

        def step_then_signal(*args, real_step=real_step, calls=calls, sig=sig, **kwargs):
            value = real_step(*args, **kwargs)  # the optimizer has updated the weights ...
            calls["n"] += 1
            if calls["n"] == 2:
                os.kill(os.getpid(), sig)  # ... and the signal lands before the step is counted
            return value

        monkeypatch.setattr(engine, "train_step", step_then_signal)
        with pytest.raises(KeyboardInterrupt):
            train(cfg.replace(out=str(run)), data=isbi_data, quiet=True)
        monkeypatch.setattr(engine, "train_step", real_step)
        assert ckpt_io.load(run)["step"] == 2
        assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]
        train(cfg.replace(resume=str(run)), {"resume": str(run)}, data=isbi_data, quiet=True)
        a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["model"]
        b = torch.load(run / "last.pt", weights_only=True)["model"]
        assert all(torch.equal(a[k], b[k]) for k in a), sig.name
