"""The run log: metrics.jsonl and validation.jsonl survive a kill mid-append."""

import json

from support import tiny_config

from biounet.train.runlog import Logger


def _rows(step, loss=0.5):
    return json.dumps({"step": step, "loss": loss}) + "\n"


def test_a_torn_last_log_line_is_dropped_when_the_run_resumes(tmp_path):
    """A SIGKILL in the middle of an append leaves half a line: resuming must not choke on it."""
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(_rows(1) + _rows(2) + _rows(3) + _rows(4)[:17])
    (tmp_path / "validation.jsonl").write_text(_rows(2) + '{"step": 4, "dice')
    Logger(tmp_path, tiny_config(), first_step=3, quiet=True)
    assert metrics.read_text() == _rows(1) + _rows(2) + _rows(3)
    assert (tmp_path / "validation.jsonl").read_text() == _rows(2)
    # torn just before its newline: the row parses, but the next append would join it
    metrics.write_text(_rows(1) + _rows(2).rstrip("\n"))
    Logger(tmp_path, tiny_config(), first_step=2, quiet=True)
    assert metrics.read_text() == _rows(1) + _rows(2)
    # a fresh start over a torn log (killed before the first checkpoint) empties it
    metrics.write_text(_rows(1) + '{"st')
    Logger(tmp_path, tiny_config(), first_step=0, quiet=True)
    assert metrics.read_text() == ""
