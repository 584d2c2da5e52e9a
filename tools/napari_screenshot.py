"""The screenshots of docs/napari.md: napari with the synthetic EM sample, the "Segment with biounet"
widget docked and its result layers (membrane probability and watershed cells); with ``--finetune IMAGE
LABELS``, the "Fine-tune biounet" widget after a short run on a painted image (its preview layer shown).

    xvfb-run -a .venv/bin/python tools/napari_screenshot.py --out docs/images/napari-widget.png
    xvfb-run -a .venv/bin/python tools/napari_screenshot.py --finetune IMG.tif PAINTED.png \
        --out docs/images/napari-finetune.png

Runs the widget as a user would (sample, built-in model, Segment), waits for its worker, then grabs
the whole window and stores it as a palette PNG (256 colours) to keep the file small.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from PIL import Image
from qtpy.QtWidgets import QApplication

from biounet.integrations.napari.widget import SegmentWidget


def wait_for(widget, timeout: float, what: str) -> None:
    """Let Qt run until the widget's worker has ended (at most ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while widget.worker is not None:
        if time.monotonic() > deadline:
            raise SystemExit(f"the {what} did not end within {timeout:.0f} s")
        QApplication.processEvents()
        time.sleep(0.05)


def segment(viewer: napari.Viewer, cells: str, timeout: float) -> str:
    """The sample, segmented by the Segment widget with the built-in model; returns the widget's status line."""
    (image,) = viewer.open_sample("biounet", "synthetic-em")
    _, widget = viewer.window.add_plugin_dock_widget("biounet", "Segment with biounet")
    assert isinstance(widget, SegmentWidget)
    widget._image.value = image
    widget._cells.value = cells
    widget._run.native.click()
    wait_for(widget, timeout, "segmentation")
    return str(widget._status.value)


def fine_tune(viewer: napari.Viewer, image: Path, labels: Path, steps: int, timeout: float, root: str) -> str:
    """``image`` with ``labels`` painted on it (napari's convention), fine-tuned by the Fine-tune widget (its run
    folder under ``root``); returns the widget's status line."""
    import tifffile

    from biounet.integrations.napari.finetune import FineTuneWidget

    tiff = image.suffix.lower() in (".tif", ".tiff")
    layer = viewer.add_image(tifffile.imread(image) if tiff else np.asarray(Image.open(image)))
    paint = viewer.add_labels(np.asarray(Image.open(labels)).astype(np.uint8), name="painted", opacity=0.5)
    dock, widget = viewer.window.add_plugin_dock_widget("biounet", "Fine-tune biounet")
    assert isinstance(widget, FineTuneWidget)
    dock.setMaximumWidth(620)  # the legend's line would take the canvas's room
    widget._image.value, widget._painted.value = layer, paint
    widget._steps.value, widget._every.value = steps, max(1, steps // 2)
    widget._root.value = root
    widget._run.native.click()
    wait_for(widget, timeout, "fine-tuning")
    return str(widget._status.value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/napari-widget.png"))
    parser.add_argument("--size", type=int, nargs=2, default=(1280, 760), metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--cells", default="watershed", help="the widget's instance method (or none)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the widget's work")
    parser.add_argument("--finetune", type=Path, nargs=2, metavar=("IMAGE", "LABELS"), help="fine-tune instead")
    parser.add_argument("--steps", type=int, default=40, help="the fine-tuning's steps (--finetune)")
    args = parser.parse_args()

    scratch = tempfile.TemporaryDirectory(prefix="biounet-screenshot-")  # the run folder, removed at exit
    viewer = napari.Viewer(show=True, title="biounet in napari")
    viewer.window.resize(*args.size)
    if args.finetune:
        status = fine_tune(viewer, *args.finetune, args.steps, args.timeout, scratch.name)
    else:
        status = segment(viewer, args.cells, args.timeout)
    layers = [layer.name for layer in viewer.layers]
    if len(layers) < 2 or (args.finetune and "fine-tuned membrane" not in layers):
        raise SystemExit(f"the widget added no layer ({status}); layers: {layers}")
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
