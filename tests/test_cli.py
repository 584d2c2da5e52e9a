import subprocess
import sys

import pytest
from support import TINY_NET

from biounet.cli import main


def _run(args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "biounet", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


@pytest.mark.parametrize(
    "args,match,status",
    [
        (["train", "--data", "/no/such/folder", "--steps", "1"], "data folder /no/such/folder does not exist", 1),
        (["train", "--data", ".", "--fold", "9"], "--fold must be 0..4", 2),
        (["train", "--data", ".", "--tile-size", "570"], "nearest valid input sizes: 540, 556, 572, 588", 2),
        (["train", "--config", "/no/such.yaml"], "config file /no/such.yaml does not exist", 2),
    ],
)
def test_usage_errors_are_one_line_without_traceback(args, match, status, capsys):
    # 2: a bad command line (flags, values); 1: a failure while running (a missing data folder)
    assert main(args) == status
    err = capsys.readouterr().err.strip()
    assert match in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_bad_flag_value_is_an_argparse_error():
    proc = _run(["train", "--steps", "ten"])
    assert proc.returncode == 2 and "expected int" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def _option_help(help_text: str, flag: str) -> str:
    """The help entry of one option in `--help` output: from its flag to the next option, one line."""
    lines = help_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == [flag])
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("-") or not lines[i].strip()),
        len(lines),
    )
    return " ".join(" ".join(lines[start:end]).split())


def test_help_documents_defaults():
    proc = _run(["train", "--help"])
    assert proc.returncode == 0
    for flag, default in [
        ("--micro-batch-size", "0"),
        ("--batch-size", "16"),
        ("--tile-size", "572"),
        ("--lr", "0.0001"),
        ("--dist-timeout", "600.0"),
    ]:
        entry = _option_help(proc.stdout, flag)
        assert entry.endswith(f"(default: {default})"), entry
    demo = _run(["demo", "--help"])  # the demo preset's own defaults, not train's
    assert demo.returncode == 0
    assert _option_help(demo.stdout, "--tile-size").endswith("(default: 252)")
    assert _option_help(demo.stdout, "--batch-size").endswith("(default: 4)")


@pytest.mark.slow
def test_train_on_isbi_from_the_command_line_then_resume(isbi_dir, tmp_path):
    run = tmp_path / "run"
    args = [
        "train",
        "--data",
        str(isbi_dir),
        "--fold",
        "1",
        *TINY_NET,
        "--batch-size",
        "4",
        "--steps",
        "4",
        "--checkpoint-every",
        "2",
        "--precision",
        "fp32",
        "--out",
        str(run),
        "--log-every",
        "2",
    ]
    proc = _run(args)
    assert proc.returncode == 0, proc.stderr
    assert "step 4/4" in proc.stdout and "24 training / 6 held-out" in proc.stdout
    assert {"config.yaml", "metrics.jsonl", "loss.png", "last.pt"} <= {p.name for p in run.iterdir()}
    again = _run(args)
    assert again.returncode == 2 and "--resume" in again.stderr
    more = _run(["train", "--resume", str(run), "--steps", "6"])
    assert more.returncode == 0, more.stderr
    assert "resuming" in more.stdout and "step 6/6" in more.stdout


@pytest.mark.slow
def test_demo_runs_to_completion(tmp_path):
    proc = _run(["demo", "--out", str(tmp_path / "demo"), "--steps", "6", "--log-every", "3"])
    assert proc.returncode == 0, proc.stderr
    names = {p.name for p in (tmp_path / "demo").iterdir()}
    assert {"config.yaml", "metrics.jsonl", "loss.png", "last.pt", "synthetic"} <= names
    assert len(list((tmp_path / "demo" / "synthetic" / "images").glob("*.png"))) == 12


def test_a_damaged_tiff_gives_one_line_without_tifffile_log_lines(tmp_path, capsys):
    # found by tests/support/fuzzing.py: tifffile logs each broken page ("<tifffile.TiffPages @8> invalid page
    # offset ...") on stderr before raising, above biounet's one-line error
    import struct

    import numpy as np
    import tifffile

    good, bad = tmp_path / "labels.tif", tmp_path / "probs.tif"
    tifffile.imwrite(good, np.zeros((8, 8), np.uint8))
    data = bytearray(good.read_bytes())
    data[4:8] = struct.pack("<I", len(data) + 1000)  # the first page lies past the end of the file
    bad.write_bytes(bytes(data))
    assert main(["score", str(good), str(bad)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("biounet score: error:"), err


@pytest.mark.parametrize("timeout", ["inf", "1e300", "nan", "0"])
def test_fetch_refuses_a_timeout_a_socket_cannot_take(tmp_path, capsys, timeout):
    # found by tests/support/fuzzing.py: --timeout inf reached socket.settimeout, an OverflowError traceback
    code = main(["fetch", "isbi2012", str(tmp_path / "d"), "--url", "http://127.0.0.1:9/", "--timeout", timeout])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--timeout must be a positive number" in err, err


def test_an_empty_model_path_is_a_clean_error(tmp_path, capsys):
    # found by tests/support/fuzzing.py: --model '' counted as no --model, so the missing --checkpoint (None) crashed
    code = main(["evaluate", "--model", "", "--data", str(tmp_path), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code in (1, 2) and len(err.splitlines()) == 1 and err.startswith("biounet evaluate: error:"), err
