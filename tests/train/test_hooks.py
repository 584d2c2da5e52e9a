"""The hooks a caller hands to train(): by default they hear nothing and never stop a run (the engine's
use of them is tested in test_engine.py)."""

from pathlib import Path

from biounet.train.hooks import TrainHooks


def test_default_hooks_do_nothing_and_never_stop():
    hooks = TrainHooks()
    assert hooks.on_step(1, 10, 0.5) is None and hooks.on_checkpoint(Path("last.pt")) is None
    assert hooks.should_stop() is False


def test_a_hook_replaces_only_its_own_default():
    stops = iter([False, True])
    hooks = TrainHooks(should_stop=lambda: next(stops))
    assert [hooks.should_stop(), hooks.should_stop()] == [False, True]
    assert hooks.on_step(2, 10, 0.1) is None
