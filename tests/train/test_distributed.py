"""Data-parallel training with torchrun (gloo on this CPU): equivalence, a dying rank, resume."""

import json
import os
import re
import subprocess
import sys
import time

import pytest
import torch
from support import TINY_NET

pytestmark = pytest.mark.slow

TINY = [
    "--fold",
    "1",
    *TINY_NET,
    "--batch-size",
    "4",
    "--steps",
    "4",
    "--checkpoint-every",
    "2",
    "--log-every",
    "1",
    "--precision",
    "fp32",
    "--no-validation",
    "--progress",
    "off",
    "--dist-timeout",
    "60",
]


def _torchrun(nproc, args, env=None, timeout=300):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "biounet",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def _single(args):
    return subprocess.run([sys.executable, "-m", "biounet", *args], capture_output=True, text=True, timeout=300)


def _losses(run):
    return [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]


def _assert_same_weights(a, b):
    wa = torch.load(a / "last.pt", weights_only=True)
    wb = torch.load(b / "last.pt", weights_only=True)
    assert wa["step"] == wb["step"]
    for key in wa["model"]:
        torch.testing.assert_close(wb["model"][key], wa["model"][key], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def single_run(tmp_path_factory, isbi_dir):
    run = tmp_path_factory.mktemp("dist") / "single"
    proc = _single(["train", "--data", str(isbi_dir), "--out", str(run), *TINY])
    assert proc.returncode == 0, proc.stderr
    return run


def test_two_processes_match_one_process(single_run, isbi_dir, tmp_path):
    run = tmp_path / "ddp"
    proc = _torchrun(2, ["train", "--data", str(isbi_dir), "--out", str(run), *TINY])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "over 2 processes, 2 each" in proc.stdout
    assert sorted(p.name for p in run.glob("*.pt")) == ["last.pt", "step_0000002.pt", "step_0000004.pt"]
    torch.testing.assert_close(torch.tensor(_losses(run)), torch.tensor(_losses(single_run)), rtol=1e-5, atol=1e-6)
    _assert_same_weights(single_run, run)


def test_a_killed_rank_fails_the_job_and_the_run_resumes(single_run, isbi_dir, tmp_path):
    run = tmp_path / "killed"
    started = time.monotonic()
    proc = _torchrun(
        2,
        ["train", "--data", str(isbi_dir), "--out", str(run), *TINY],
        env={"BIOUNET_FAULT_KILL_RANK": "1", "BIOUNET_FAULT_KILL_AFTER_STEP": "2"},
    )
    assert proc.returncode != 0
    assert time.monotonic() - started < 200
    # torchrun's summary names the rank that died first
    assert re.search(r"Root Cause.*?rank\s*:\s*1\b.*?SIGKILL", proc.stderr, re.S), proc.stderr[-2000:]
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 2  # the checkpoint before the death
    # resume with a different world size (1 process): the run ends as the uninterrupted one
    more = _single(["train", "--resume", str(run)])
    assert more.returncode == 0, more.stderr
    assert _losses(run) == pytest.approx(_losses(single_run), rel=1e-5, abs=1e-6)
    _assert_same_weights(single_run, run)


def test_batch_must_divide_over_the_processes(isbi_dir, tmp_path):
    proc = _torchrun(2, ["train", "--data", str(isbi_dir), "--out", str(tmp_path / "odd"), *TINY, "--batch-size", "3"])
    assert proc.returncode != 0 and "does not divide over 2 processes" in proc.stderr


STALL = """import os, sys, time
import biounet.train.engine as engine
real = engine.train_step
def stalling(*args, **kwargs):
    if os.environ.get("RANK") == "1" and args[6] == 3:  # rank 1 hangs (alive) before its step-3 collective
        time.sleep(600)
    return real(*args, **kwargs)
engine.train_step = stalling
from biounet.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_dist_timeout_ends_a_job_stuck_in_a_collective(isbi_dir, tmp_path):
    """Rank 1 stays alive but never reaches step 3's collective (it sleeps 600 s); rank 0 waits in
    it. With --dist-timeout 5 the job must fail within about that, not hang for gloo's 30 minutes."""
    script = tmp_path / "stall.py"
    script.write_text(STALL)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        "train",
        "--data",
        str(isbi_dir),
        "--out",
        str(tmp_path / "stuck"),
        *TINY,
        "--dist-timeout",
        "5",
    ]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    elapsed = time.monotonic() - started
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "step 2/4" in proc.stdout and "step 3/4" not in proc.stdout
    assert elapsed < 120, (elapsed, proc.stderr[-3000:])  # start-up, two steps, 5 s of waiting, tear-down
    assert torch.load(tmp_path / "stuck" / "last.pt", weights_only=True)["step"] == 2
