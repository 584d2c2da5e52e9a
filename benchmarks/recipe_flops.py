"""A recipe's training speed as a fraction of the machine's peak, for networks `biounet bench` does not
build ('same' padding, batch norm, --context, --affinities): GFLOP per training tile counted as the bench
counts them (PyTorch's FLOP counter, forward and backward, on the meta device), times the images/s a
training run printed, over the fp32 or bf16 matrix-product peak a `biounet bench --json` file holds.

    biounet bench --precision fp32 --base-width 8 --tile-size 252 --batch-size 8 --json runs/bench.json
    python benchmarks/recipe_flops.py configs/isbi-aff-cpu.yaml --images-per-s 15.34 --bench runs/bench.json
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.utils.flop_counter import FlopCounterMode

from biounet.core.config import TrainConfig, from_dict, load_yaml
from biounet.data.context import input_channels
from biounet.train.memory import meta_model


def train_gflop_per_tile(cfg: TrainConfig) -> float:
    """Forward + backward GFLOP of one training tile of ``cfg``'s network."""
    model = meta_model(cfg)
    x = torch.empty(1, input_channels(cfg), cfg.tile_size, cfg.tile_size, device="meta")
    with FlopCounterMode(display=False) as counter:
        model(x).float().sum().backward()
    return counter.get_total_flops() / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="a training YAML file (configs/...)")
    parser.add_argument("--images-per-s", type=float, required=True, help="the training run's median images/s")
    parser.add_argument("--bench", required=True, help="a `biounet bench --json` file from the same machine")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="whose peak to divide by")
    args = parser.parse_args()
    cfg = from_dict(load_yaml(args.config), source=args.config)
    with open(args.bench) as f:
        peak = json.load(f)[f"matmul_{args.precision}_tflops"]
    gflop = train_gflop_per_tile(cfg)
    tflops = gflop * args.images_per_s / 1e3
    print(f"{args.config}: {gflop:.2f} GFLOP per {cfg.tile_size}x{cfg.tile_size} training tile")
    share = 100 * tflops / peak
    print(f"{args.images_per_s} images/s = {tflops:.3f} TFLOP/s = {share:.0f} % of the {args.precision} peak", end=" ")
    print(f"({peak:.3f} TFLOP/s)")


if __name__ == "__main__":
    main()
