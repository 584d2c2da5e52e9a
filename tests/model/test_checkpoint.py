"""Checkpoints: loading refuses damaged and foreign files with a clear error."""

import pytest
import torch

from biounet.core.errors import CheckpointError
from biounet.model import checkpoint as ckpt_io


def test_corrupt_checkpoint_gives_a_clear_error(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        ckpt_io.load(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        ckpt_io.load(tmp_path / "missing.pt")


def test_a_checkpoint_cut_short_is_a_checkpoint_error(tmp_path):
    # found by tests/support/fuzzing.py: torch.load of a cut file raises a bare EOFError (no message), whose
    # empty first line made load() itself fail with an IndexError
    good = tmp_path / "good.pt"
    torch.save({"format_version": 1, "step": 0, "config": {}, "model": {"w": torch.zeros(3)}}, good)
    data = good.read_bytes()
    for cut in (0, 1, len(data) // 2, len(data) - 1):
        (tmp_path / "cut.pt").write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="not a readable checkpoint") as info:
            ckpt_io.load(tmp_path / "cut.pt")
        assert "\n" not in str(info.value)
