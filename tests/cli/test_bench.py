"""biounet.cli.bench: the flags bench shares with train and predict reach BenchConfig under their one
name; the measurements themselves are tests/bench's, so run_bench only records its config here."""

import pytest

import biounet.bench.runner as runner
from biounet.cli import main


@pytest.fixture
def handed(monkeypatch):
    calls = []

    def run_bench(cfg, log=print):
        calls.append(cfg)
        log("timing the default path")
        return {"figures": 1}

    monkeypatch.setattr(runner, "run_bench", run_bench)
    monkeypatch.setattr(runner, "format_table", lambda result: "| measure | value |")
    return calls


def _run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


def test_the_shared_flags_reach_the_bench_config(capsys, tmp_path, handed):
    network = ["--tile-size", "188", "--batch-size", "8", "--tile-batch", "2", "--base-width", "8", "--depth", "3"]
    runtime = ["--device", "cpu", "--precision", "fp32", "--threads", "2", "--no-compile"]
    args = [*network, *runtime, "--json", tmp_path / "b.json"]
    code, said, err = _run(capsys, "bench", *args)
    assert code == 0 and said.strip() == "| measure | value |" and err == "timing the default path"
    cfg = handed[0]
    assert (cfg.tile_size, cfg.batch_size, cfg.infer_batch, cfg.base_width, cfg.depth) == (188, 8, 2, 8, 3)
    assert (cfg.device, cfg.precision, cfg.threads, cfg.compile) == ("cpu", "fp32", 2, False)
    assert (tmp_path / "b.json").read_text().strip().startswith("{")


def test_the_defaults_are_train_s(capsys, handed):
    assert _run(capsys, "bench")[0] == 0
    cfg = handed[0]
    assert (cfg.tile_size, cfg.batch_size, cfg.infer_batch, cfg.base_width, cfg.compile) == (572, 16, 4, 64, None)


def test_infer_batch_is_the_old_spelling_of_tile_batch(capsys, handed):
    code, _, err = _run(capsys, "bench", "--infer-batch", "8", "--progress", "off")
    assert code == 0 and handed[0].infer_batch == 8
    assert err == "biounet: --infer-batch is deprecated; use --tile-batch"  # and no progress lines


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tile-batch", "0"], "--tile-batch must be at least 1, got 0"),
        (["--threads", "-2"], "--threads must not be negative"),
        (["--device", "gpu"], "--device must be auto, cpu, cuda or cuda:N"),
        (["--micro-sweep", "1,x"], "--micro-sweep must be comma-separated integers"),
        (["--json", "{tmp}"], "--json {tmp} is a folder; give a file name"),
    ],
)
def test_bad_values_are_refused_before_any_measurement(capsys, tmp_path, handed, args, message):
    code, _, err = _run(capsys, "bench", *[a.format(tmp=tmp_path) for a in args])
    assert code == 2 and message.format(tmp=tmp_path) in err and len(err.splitlines()) == 1 and not handed
