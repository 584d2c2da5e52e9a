"""The benchmark runs end to end on a tiny network and reports every figure the speed issue names."""

import json

from biounet.cli import main


def test_bench_runs_end_to_end_on_a_tiny_network(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["bench", "--device", "cpu", "--base-width", "4", "--depth", "2", "--tile-size", "60",
               "--batch-size", "4", "--repeats", "1", "--warmup", "0", "--micro-sweep", "1,2", "--json", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    for key in ("train_frac_of_peak", "infer_frac_of_peak", "slice512_s", "train_speedup_vs_fp32",
                "infer_speedup_vs_fp32", "peak_rss_gib_batch16", "augment_frac_of_step"):
        assert r[key] > 0, key
    assert r["gflop_train_tile"] > 2 * r["gflop_infer_tile"]  # backward costs about twice the forward
    assert [s["micro"] for s in r["micro_sweep"]] == [1, 2]
    assert r["matmul_fp32_tflops"] > 0 and r["matmul_bf16_tflops"] > 0
    assert "| training" in capsys.readouterr().out


def test_bench_refuses_a_micro_batch_that_does_not_divide(capsys):
    assert main(["bench", "--batch-size", "4", "--micro-sweep", "3"]) == 2
    assert "--micro-sweep 3" in capsys.readouterr().err


def test_flop_count_matches_the_paper_network():
    """The counter sees the whole network: 572x572 at width 64 costs about 301 GFLOP forward and
    902 GFLOP forward+backward (the figures the speed issue derives by hand)."""
    from biounet.bench import probe_flops

    r = probe_flops({"base_width": 64, "depth": 4, "tile_size": 572, "batch_size": 16, "precision": "auto",
                     "device": "cpu", "slice_tile": 700})
    assert abs(r["gflop_infer_tile"] - 301) < 3 and abs(r["gflop_train_tile"] - 902) < 9
    assert r["gflop_infer_slice_tile"] > r["gflop_infer_tile"] * (700 / 572) ** 2 * 0.9


def test_bench_compiled_path_reports_what_compiling_buys(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["bench", "--device", "cpu", "--base-width", "4", "--depth", "2", "--tile-size", "60",
               "--batch-size", "2", "--repeats", "1", "--warmup", "1", "--infer-batch", "2", "--compile",
               "--no-baseline", "--no-memory", "--json", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["compile"] is True
    for key in ("eager_train_images_per_s", "eager_infer_images_per_s", "compile_speedup_train",
                "compile_speedup_infer"):
        assert r[key] > 0, key
    assert r["compile_speedup_train"] == r["train_images_per_s"] / r["eager_train_images_per_s"]
    table = capsys.readouterr().out
    assert "torch.compile speed-up" in table and ", torch.compile" in table
