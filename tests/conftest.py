"""Shared fixtures. The ISBI 2012 data must be present: tests fail (never skip) without it."""

from pathlib import Path

import pytest
import torch

from support import ISBI_DIR


torch.set_num_threads(2)


@pytest.fixture(scope="session")
def isbi_dir() -> Path:
    assert (ISBI_DIR / "train-volume.tif").is_file(), (
        f"the ISBI 2012 data is expected at {ISBI_DIR} (../shared/data/isbi2012 from the project root)"
    )
    return ISBI_DIR


@pytest.fixture(scope="session")
def isbi_data(isbi_dir):
    from biounet.data import read_isbi

    return read_isbi(isbi_dir)
