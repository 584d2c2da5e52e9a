"""A user's painted patches, simulated from a labelled EM stack: the data of the fine-tuning measurement.

    python experiments/painted_patches.py --stack VNC/stack1 --out /tmp/vnc --train 0-9 --test 10-19

``--stack`` is a folder in the layout of the Drosophila larval VNC ssTEM set (Gerhard et al. 2013,
doi:10.6084/m9.figshare.856713; docs/finetune.md says where to get it): ``raw/`` (8-bit sections),
``membranes/`` (binary, membrane = nonzero) and, for ``--mitochondria``, ``mitochondria/`` (nonzero
above 127 = mitochondrion), one file per section, sorted by name. It writes, under ``--out``:

- ``train/images``, ``train/masks``: the ``--train`` sections, each mask painted as napari's Labels layer
  holds annotations (0 not painted, 1 membrane, 2 cell, 3 mitochondrion with ``--mitochondria``) in
  ``--patches`` squares of ``--side`` pixels per section, copied from the ground truth at places drawn
  uniformly (``--seed``): what a user paints when they label a few patches densely;
- ``test/images``, ``test/masks``: the ``--test`` sections with every pixel labelled (same values);
- ``volume.tif``: the whole stack (Z, Y, X), for ``biounet predict`` on the volume.

It prints the painted pixels (the count the measurement reports). Existing output is never overwritten.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

MEMBRANE, CELL, MITO = 1, 2, 3  # the painted values: class k - 1 (0 = not painted)


def parse_range(text: str) -> list[int]:
    """'0-9' or '0,2,5' (or both, comma-separated) -> the section indices."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if not (lo.isdigit() and (hi.isdigit() or not hi)):
            raise SystemExit(f"painted_patches: {text!r} is not a list of sections; write e.g. 0-9 or 0,2,5")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def read_sections(folder: Path) -> list[np.ndarray]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".tif", ".tiff"))
    if not files:
        raise SystemExit(f"painted_patches: no PNG or TIFF sections in {folder}; pass the stack folder (raw/, ...)")
    return [np.asarray(Image.open(p)) for p in files]


def dense_labels(membranes: np.ndarray, mitochondria: np.ndarray | None) -> np.ndarray:
    """Every pixel's painted value: membrane 1, cell 2, mitochondrion 3 (where given; membrane wins)."""
    labels = np.where(membranes > 0, MEMBRANE, CELL).astype(np.uint8)
    if mitochondria is not None:
        labels[(mitochondria > 127) & (membranes == 0)] = MITO
    return labels


def paint_patches(labels: np.ndarray, patches: int, side: int, rng: np.random.Generator) -> np.ndarray:
    """``labels`` kept inside ``patches`` squares of ``side`` pixels at uniform places, 0 elsewhere."""
    painted = np.zeros_like(labels)
    h, w = labels.shape
    for _ in range(patches):
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        painted[y : y + side, x : x + side] = labels[y : y + side, x : x + side]
    return painted


def write_pair(root: Path, name: str, image: np.ndarray, mask: np.ndarray) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(root / "images" / f"{name}.tif", image)
    Image.fromarray(mask).save(root / "masks" / f"{name}.png")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stack", type=Path, required=True, help="folder with raw/, membranes/ (and mitochondria/)")
    ap.add_argument("--out", type=Path, required=True, help="new folder for train/, test/ and volume.tif")
    ap.add_argument("--train", default="0-9", help="sections painted for training (default 0-9)")
    ap.add_argument("--test", default="10-19", help="sections labelled in full for scoring (default 10-19)")
    ap.add_argument("--patches", type=int, default=4, help="painted squares per training section (default 4)")
    ap.add_argument("--side", type=int, default=128, help="side of a painted square in pixels (default 128)")
    ap.add_argument("--mitochondria", action="store_true", help="paint mitochondria as a third class (3)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.out.exists():
        raise SystemExit(f"painted_patches: {args.out} exists; choose a new --out (nothing is overwritten)")
    raw = read_sections(args.stack / "raw")
    membranes = read_sections(args.stack / "membranes")
    mito = read_sections(args.stack / "mitochondria") if args.mitochondria else [None] * len(raw)
    if len(membranes) != len(raw) or len(mito) != len(raw):
        raise SystemExit(
            f"painted_patches: {args.stack} holds {len(raw)} raw sections but {len(membranes)} membrane and "
            f"{len(mito)} mitochondria labels; give one label file per section"
        )
    train, test = parse_range(args.train), parse_range(args.test)
    if set(train) & set(test) or max(train + test) >= len(raw):
        raise SystemExit(f"painted_patches: --train and --test must be disjoint sections of 0..{len(raw) - 1}")
    if not 0 < args.side <= min(raw[0].shape):
        raise SystemExit(f"painted_patches: --side {args.side} must be 1..{min(raw[0].shape)} (the section's side)")
    rng = np.random.default_rng(args.seed)
    painted_total = 0
    for z in train:
        painted = paint_patches(dense_labels(membranes[z], mito[z]), args.patches, args.side, rng)
        painted_total += int((painted > 0).sum())
        write_pair(args.out / "train", f"z{z:02d}", raw[z], painted)
    for z in test:
        write_pair(args.out / "test", f"z{z:02d}", raw[z], dense_labels(membranes[z], mito[z]))
    volume = np.stack(raw)
    tifffile.imwrite(args.out / "volume.tif", volume)
    pixels = len(train) * raw[0].size
    print(
        f"painted {painted_total} pixels ({100 * painted_total / pixels:.2f} % of {len(train)} training sections, "
        f"{args.patches} squares of {args.side} px each); {len(test)} test sections; volume {volume.shape}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
