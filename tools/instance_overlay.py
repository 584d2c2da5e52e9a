"""Draw a model's membranes and instances on one slice of an image stack, for the docs.

    python benchmarks/instance_overlay.py --model isbi2012-membranes --slice 0 \
        --methods watershed,multicut --param multicut:beta=0.4 --tta --crop 0,0,256 \
        --out docs/images/builtin-test-00.png

Panels, left to right: the predicted membrane (probability > 0.5) over the image, then each
method's instances, each cell in its own colour. Prints the number of cells per method. The
default stack is the ISBI 2012 test volume (no labels: a picture, not a score).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import tifffile

from biounet.data.readers import scale_image
from biounet.instances.methods import instance_labels, parse_params
from biounet.instances.overlays import instance_overlay, side_by_side
from biounet.io.fileio import write_png
from biounet.models import open_model
from biounet.segment.inference import segment
from biounet.segment.predict import overlay

ROOT = Path(__file__).resolve().parent.parent
TEST = ROOT.parent / "shared" / "data" / "isbi2012" / "test-volume.tif"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="isbi2012-membranes", help="built-in name, checkpoint, run folder or export")
    p.add_argument("--stack", type=Path, default=TEST)
    p.add_argument("--slice", type=int, default=0)
    p.add_argument("--methods", default="watershed,multicut")
    p.add_argument("--param", action="append", default=[], metavar="METHOD:KEY=VALUE")
    p.add_argument("--tta", action="store_true")
    p.add_argument("--crop", default=None, metavar="Y,X,SIZE", help="draw only this SIZE x SIZE window")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    predictor, cfg, _ = open_model(args.model, device="cpu", precision="fp32")
    image = scale_image(tifffile.imread(args.stack, key=args.slice), cfg.in_channels, f"slice {args.slice}")
    start = time.perf_counter()
    probs = segment(image, predictor, cfg.depth, cfg.padding, None, 4, args.tta)
    print(f"segmented slice {args.slice} in {time.perf_counter() - start:.1f} s (tta: {args.tta})")
    window = (slice(None), slice(None))
    if args.crop:
        y, x, size = (int(v) for v in args.crop.split(","))
        window = (slice(y, y + size), slice(x, x + size))
    panels = [overlay(image[(slice(None), *window)], probs[0][window])]
    for method in args.methods.split(","):
        items = [item.split(":", 1)[1] for item in args.param if item.startswith(f"{method}:")]
        labels = instance_labels(probs[1], method, **parse_params(method, items))
        print(f"{method}: {int(labels.max())} cells")
        panels.append(instance_overlay(image[(slice(None), *window)], labels[window]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_png(args.out, side_by_side(*panels))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
