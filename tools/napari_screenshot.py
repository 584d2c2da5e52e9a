"""The screenshot of docs/napari.md: napari with the synthetic EM sample, the "Segment with biounet"
widget docked and its result layers (membrane probability and watershed cells).

    xvfb-run -a .venv/bin/python benchmarks/napari_screenshot.py --out docs/images/napari-widget.png

Runs the widget as a user would (sample, built-in model, Segment), waits for its worker, then grabs
the whole window and stores it as a palette PNG (256 colours) to keep the file small.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import napari
from PIL import Image
from qtpy.QtWidgets import QApplication

from biounet.integrations.napari.widget import SegmentWidget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/napari-widget.png"))
    parser.add_argument("--size", type=int, nargs=2, default=(1280, 760), metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--cells", default="watershed", help="the widget's instance method (or none)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the segmentation")
    args = parser.parse_args()

    viewer = napari.Viewer(show=True, title="biounet in napari")
    viewer.window.resize(*args.size)
    (image,) = viewer.open_sample("biounet", "synthetic-em")
    _, widget = viewer.window.add_plugin_dock_widget("biounet", "Segment with biounet")
    assert isinstance(widget, SegmentWidget)
    widget._image.value = image
    widget._cells.value = args.cells
    widget._run.native.click()
    deadline = time.monotonic() + args.timeout
    while widget.worker is not None:
        if time.monotonic() > deadline:
            raise SystemExit(f"the segmentation did not end within {args.timeout:.0f} s")
        QApplication.processEvents()
        time.sleep(0.05)
    layers = [layer.name for layer in viewer.layers]
    if len(layers) < 2:
        raise SystemExit(f"the widget added no layer ({widget._status.value}); layers: {layers}")
    viewer.layers.selection.active = viewer.layers[-1]
    viewer.reset_view()
    for _ in range(20):  # let the canvas and the dock settle before the grab
        QApplication.processEvents()
        time.sleep(0.05)
    pixels = viewer.screenshot(canvas_only=False, flash=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rgb = Image.fromarray(pixels[..., :3])
    rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    print(f"{args.out}: {rgb.width}x{rgb.height}, {args.out.stat().st_size / 1024:.0f} KiB; layers {layers}")
    viewer.close()


if __name__ == "__main__":
    main()
