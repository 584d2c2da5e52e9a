"""The benchmark runs end to end on a tiny network and reports every figure the speed issue names."""

import json

from support import TINY_NET

from biounet.cli import main


def test_bench_runs_end_to_end_on_a_tiny_network(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(
        [
            "bench",
            "--device",
            "cpu",
            *TINY_NET,
            "--batch-size",
            "4",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--micro-sweep",
            "1,2",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    r = json.loads(out.read_text())
    for key in (
        "train_frac_of_peak",
        "infer_frac_of_peak",
        "slice512_s",
        "train_speedup_vs_fp32",
        "infer_speedup_vs_fp32",
        "peak_rss_gib_batch16",
        "augment_frac_of_step",
    ):
        assert r[key] > 0, key
    assert r["gflop_train_tile"] > 2 * r["gflop_infer_tile"]  # backward costs about twice the forward
    assert [s["micro"] for s in r["micro_sweep"]] == [1, 2]
    assert r["matmul_fp32_tflops"] > 0 and r["matmul_bf16_tflops"] > 0
    assert "| training" in capsys.readouterr().out


def test_bench_refuses_a_micro_batch_that_does_not_divide(capsys):
    assert main(["bench", "--batch-size", "4", "--micro-sweep", "3"]) == 2
    assert "--micro-sweep 3" in capsys.readouterr().err


def test_bench_compiled_path_reports_what_compiling_buys(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(
        [
            "bench",
            "--device",
            "cpu",
            *TINY_NET,
            "--batch-size",
            "2",
            "--repeats",
            "1",
            "--warmup",
            "1",
            "--tile-batch",
            "2",
            "--compile",
            "--no-baseline",
            "--no-memory",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["compile"] is True
    for key in (
        "eager_train_images_per_s",
        "eager_infer_images_per_s",
        "compile_speedup_train",
        "compile_speedup_infer",
    ):
        assert r[key] > 0, key
    table = capsys.readouterr().out
    assert "torch.compile speed-up" in table and ", torch.compile" in table


def test_bench_derives_its_ratios_from_the_right_measurements(monkeypatch):
    """With every probe replaced by fixed, known figures, the report's speed-ups and fractions of
    peak are the hand-computed ratios of the right probes (compiled vs eager, default vs baseline)."""
    import biounet.bench.runner as bench

    calls = []

    def fake(fn, spec):
        name = fn.__name__
        calls.append((name, spec["compile"], spec["baseline"]))
        if name == "probe_matmul":
            return {"matmul_bf16_tflops": 2.0, "matmul_fp32_tflops": 0.5, "matmul_bf16_n": 1, "matmul_fp32_n": 1}
        if name == "probe_flops":
            return {"gflop_infer_tile": 100.0, "gflop_train_tile": 300.0, "gflop_infer_slice_tile": 150.0}
        if name == "probe_train":
            ips = 1.5 if spec["baseline"] else (6.0 if spec["compile"] else 3.0)
            return {"images_per_s": ips, "micro": 2, "precision": "fp32", "peak_rss_gib": 1.0}
        if name == "probe_infer":
            ips = 2.0 if spec["baseline"] else (10.0 if spec["compile"] else 4.0)
            return {"images_per_s": ips, "batch": 4, "slice512_s": 0.5}
        if name == "probe_augment":
            return {"batch_s": 0.4}
        raise AssertionError(name)

    monkeypatch.setattr(bench, "in_fresh_process", fake)
    r = bench.run_bench(
        bench.BenchConfig(
            device="cpu", precision="fp32", base_width=4, depth=2, tile_size=60, batch_size=4, compile=True
        ),
        log=lambda _: None,
    )
    assert r["compile_speedup_train"] == 2.0 and r["compile_speedup_infer"] == 2.5
    assert r["train_speedup_vs_fp32"] == 4.0 and r["infer_speedup_vs_fp32"] == 5.0
    assert r["train_tflops"] == 6.0 * 300 / 1e3 and r["train_frac_of_peak"] == 1.8 / 0.5  # fp32 peak
    assert r["infer_frac_of_peak"] == 1.0 / 0.5
    assert r["augment_frac_of_step"] == 0.4 / (4 / 6.0)
    assert ("probe_train", True, False) in calls and ("probe_train", False, False) in calls
    assert ("probe_infer", True, False) in calls and ("probe_infer", False, False) in calls
