"""Write a built-in model from a finished training run: the checkpoint's weights in float16 (the
optimizer and training state dropped) and its metadata, into src/biounet/pretrained/.

    python benchmarks/make_pretrained.py runs/isbi-all-cpu --name isbi2012-membranes \
        --metadata docs/results/isbi2012-membranes.meta.json

The metadata file gives what the run folder cannot: the training command, the scores of the same
recipe on held-out folds, the data's terms. The script adds the config, the step and the size, and
prints the largest difference between the float16 and float32 weights' probabilities on ISBI test
slices (the price of halving the file).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import tifffile
import torch

from biounet.data.readers import scale_image
from biounet.io.fileio import atomic_write, atomic_write_text
from biounet.models import load_predictor
from biounet.segment.inference import segment

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "biounet" / "model" / "pretrained"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--metadata", type=Path, required=True)
    p.add_argument("--test", type=Path, default=ROOT.parent / "shared" / "data" / "isbi2012" / "test-volume.tif")
    args = p.parse_args()
    ckpt = torch.load(args.run / "last.pt", weights_only=False, map_location="cpu")
    small = {
        "format_version": ckpt["format_version"],
        "step": ckpt["step"],
        "config": {**ckpt["config"], "out": None, "resume": None, "compile": False},
        "model": {k: v.half() if v.is_floating_point() else v for k, v in ckpt["model"].items()},
        "train_digests": ckpt.get("train_digests", []),
        "versions": ckpt.get("versions", {}),
    }
    path = OUT / f"{args.name}.pt"
    atomic_write(path, lambda tmp: torch.save(small, tmp))
    meta = json.loads(args.metadata.read_text())
    meta.update(name=args.name, step=ckpt["step"], config=small["config"], bytes=path.stat().st_size)
    atomic_write_text(OUT / f"{args.name}.json", json.dumps(meta, indent=1) + "\n")
    full, cfg, _ = load_predictor(args.run / "last.pt", "cpu", "fp32")
    half, _, _ = load_predictor(path, "cpu", "fp32")
    worst = 0.0
    for page in tifffile.imread(args.test)[:3]:
        image = scale_image(page, cfg.in_channels)
        a = segment(image, full, cfg.depth, cfg.padding)[0]
        b = segment(image, half, cfg.depth, cfg.padding)[0]
        worst = max(worst, float(np.abs(a - b).max()))
    print(
        f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB); float16 vs float32 weights, ISBI test slices 0-2: "
        f"largest probability difference {worst:.2e}"
    )


if __name__ == "__main__":
    main()
