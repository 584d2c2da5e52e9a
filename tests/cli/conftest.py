"""Fixtures of the command line's tests: a tiny trained run and the image/mask pairs it was trained on."""

from pathlib import Path

import pytest
from support import tiny_config


@pytest.fixture(scope="session")
def pairs(tmp_path_factory) -> Path:
    """Four synthetic EM-like 64x64 image/mask pairs."""
    from biounet.data import write_synthetic_dataset

    return write_synthetic_dataset(tmp_path_factory.mktemp("cli-data") / "pairs", count=4, size=64)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, pairs) -> Path:
    """A run folder of a width-4 U-Net trained 2 steps on fold 1 of 2 (valid padding)."""
    from biounet.train.engine import train

    out = tmp_path_factory.mktemp("cli-run") / "run"
    train(tiny_config(data=str(pairs), out=str(out), steps=2, folds=2, fold="1"), quiet=True)
    return out
