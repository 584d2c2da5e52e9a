import json
import subprocess
import sys
from pathlib import Path

from support import load_script

from biounet.core.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
flops = load_script("benchmarks/recipe_flops.py")
SMALL = {"base_width": 8, "depth": 2, "tile_size": 64, "padding": "same"}


def gflop(**fields) -> float:
    return flops.train_gflop_per_tile(TrainConfig(**{**SMALL, **fields}))


def test_the_count_follows_the_network():
    """Twice the width is about 4x the arithmetic; context and affinity channels add to it."""
    base = gflop()
    assert 3.5 < gflop(base_width=16) / base < 4.1
    assert gflop(context=1) > base
    assert gflop(affinities="mws12") > base


def test_prints_the_fraction_of_the_bench_peak(tmp_path):
    config = tmp_path / "recipe.yaml"
    config.write_text("".join(f"{k}: {v}\n" for k, v in SMALL.items()))
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"matmul_fp32_tflops": 0.5, "matmul_bf16_tflops": 1.0}))
    script = "benchmarks/recipe_flops.py"
    command = [sys.executable, script, str(config), "--images-per-s", "100", "--bench", str(bench)]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    g = gflop()
    assert f"{g:.2f} GFLOP per 64x64 training tile" in out
    assert f"{g * 100 / 1e3:.3f} TFLOP/s = {100 * g * 100 / 1e3 / 0.5:.0f} % of the fp32 peak" in out
