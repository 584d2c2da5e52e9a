"""Checkpoints: loading refuses damaged and foreign files with a clear error."""

import pytest
import torch
from support import tiny_config, tiny_run

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


def test_adopt_network_takes_the_base_models_network_where_none_is_set(tmp_path):
    base = tiny_run(tmp_path / "base", base_width=6, batch_norm=True)
    fresh = tiny_config(init_from=str(base))  # width 4 and no batch norm, as any config not told otherwise
    cfg, taken = ckpt_io.adopt_network(fresh, explicit={"init_from": str(base), "steps": 3})
    assert taken == {"base_width": 6, "batch_norm": True}
    assert (cfg.base_width, cfg.batch_norm, cfg.steps) == (6, True, fresh.steps)
    mine, taken = ckpt_io.adopt_network(fresh.replace(base_width=4), explicit={"base_width": 4})
    assert mine.base_width == 4 and taken == {"batch_norm": True}  # what the user set stays theirs
    assert ckpt_io.adopt_network(tiny_config(), explicit={}) == (tiny_config(), {})  # no --init-from
    resumed = tiny_config(init_from=str(base), resume=str(base))
    assert ckpt_io.adopt_network(resumed, explicit={})[1] == {}  # a resumed run keeps its own network


def test_init_from_a_run_folder_reads_the_checkpoint_model_reads(tmp_path):
    run = tiny_run(tmp_path / "run")
    assert ckpt_io.load_init_source(str(run))["path"] == str(run / ckpt_io.LAST)  # no best.pt: last.pt
    best = ckpt_io.load(run)
    best["step"] = 99
    torch.save({k: v for k, v in best.items() if k != "path"}, run / ckpt_io.BEST)
    source = ckpt_io.load_init_source(str(run))
    assert source["path"] == str(ckpt_io.resolve_checkpoint(run)) == str(run / ckpt_io.BEST) and source["step"] == 99
