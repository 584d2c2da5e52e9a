"""biounet.cli (the package's __init__): one parser for every command, one line per user error with
its exit status, no traceback unless BIOUNET_DEBUG asks for it. Each command's own tests are in
tests/cli/test_<module>.py."""

import errno
import subprocess
import sys

import pytest
from support import TINY_NET

import biounet.cli
from biounet.cli import build_parser, main
from biounet.core.errors import ConfigError, DataError


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


def test_bad_flag_value_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--steps", "ten"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "expected int" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.endswith("(see `biounet train --help`)")


def _raising(exc):
    def command(args):
        raise exc

    return command


@pytest.mark.parametrize(
    "exc, status, fragment",
    [
        (ConfigError("--x must be 1"), 2, "biounet score: error: --x must be 1"),
        (DataError("a\n  broken\nfile"), 1, "biounet score: error: a broken file"),  # always one line
        (
            OSError(errno.ENOSPC, "No space left on device", "/o/x.tif"),
            1,
            "/o/x.tif: No space left on device; the disk",
        ),
        (MemoryError(), 1, "out of memory: the input or the chosen sizes need more memory than this machine has"),
    ],
)
def test_expected_errors_become_one_line_and_an_exit_status(capsys, monkeypatch, exc, status, fragment):
    monkeypatch.setitem(biounet.cli.COMMANDS, "score", _raising(exc))
    assert main(["score", "l.tif", "p.tif"]) == status
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1, err


def test_out_of_memory_names_the_sizes_to_lower(capsys, monkeypatch):
    monkeypatch.setitem(biounet.cli.COMMANDS, "score", _raising(MemoryError()))
    main(["score", "l.tif", "p.tif"])
    err = capsys.readouterr().err
    assert "--tile-batch or --tile (inference) or --batch-size (training)" in err


def test_debug_shows_the_traceback_and_an_interrupt_exits_130(monkeypatch):
    monkeypatch.setitem(biounet.cli.COMMANDS, "score", _raising(DataError("broken")))
    monkeypatch.setenv("BIOUNET_DEBUG", "1")
    with pytest.raises(DataError, match="broken"):
        main(["score", "l.tif", "p.tif"])
    monkeypatch.setitem(biounet.cli.COMMANDS, "score", _raising(KeyboardInterrupt()))
    assert main(["score", "l.tif", "p.tif"]) == 130


def test_a_bug_keeps_its_traceback(monkeypatch):
    monkeypatch.setitem(biounet.cli.COMMANDS, "score", _raising(ZeroDivisionError("a bug")))
    with pytest.raises(ZeroDivisionError):
        main(["score", "l.tif", "p.tif"])


def test_every_command_has_a_runner_and_a_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(biounet.cli.COMMANDS)
    for name, command in sub.choices.items():
        assert command.format_help().startswith(f"usage: biounet {name}")


def test_notices_go_to_stderr_once_per_command(capsys):
    from biounet.data.readers import LOG

    biounet.cli._setup_notices()
    biounet.cli._setup_notices()  # a second command in the same process adds no second handler
    LOG.info("a notice")
    assert capsys.readouterr().err == "biounet: a notice\n"


def _option_help(help_text: str, flag: str) -> str:
    """The help entry of one option in `--help` output: from its flag to the next option, one line."""
    lines = help_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == [flag])
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("-") or not lines[i].strip()),
        len(lines),
    )
    return " ".join(" ".join(lines[start:end]).split())


def _help(command: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[command].format_help()


def test_help_documents_defaults():
    for flag, default in [
        ("--micro-batch-size", "0"),
        ("--batch-size", "16"),
        ("--tile-size", "572"),
        ("--lr", "0.0001"),
        ("--dist-timeout", "600.0"),
    ]:
        entry = _option_help(_help("train"), flag)
        assert entry.endswith(f"(default: {default})"), entry
    demo = _help("demo")  # the demo preset's own defaults, not train's
    assert _option_help(demo, "--tile-size").endswith("(default: 252)")
    assert _option_help(demo, "--batch-size").endswith("(default: 4)")
    assert _option_help(demo, "--device").endswith("(default: auto)")


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


def test_version():
    proc = _run(["--version"])
    assert proc.returncode == 0 and proc.stdout.startswith("biounet ")
