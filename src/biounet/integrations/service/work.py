"""What one job of the service does, with biounet's own functions: the upload read as ``biounet predict``
reads a file (:func:`biounet.segment.predict.read_stack`), segmented and written by ``predict``'s own
writers (:func:`biounet.segment.predict.predict_files`: membrane probability, mask and cell labels as
TIFFs that Fiji and napari read), then one picture per slice for the web page: the membrane
probability, and the cells (:func:`biounet.instances.overlays.instance_overlay`) or, without cells,
the membranes over the image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from biounet.core.config import TrainConfig
from biounet.core.errors import ConfigError
from biounet.instances.overlays import instance_overlay
from biounet.io.fileio import write_png
from biounet.segment.inference import Predictor
from biounet.segment.predict import overlay, predict_files, read_stack

INPUT_STEM = "input"  # the upload's file in its job's folder: input.png or input.tif


@dataclass(frozen=True)
class ServedModel:
    """The model a service runs: a predictor (:func:`biounet.models.open_model`), its training config,
    a name to show, and the tiling predict would use (``tile`` None: the geometry that wastes least)."""

    predictor: Predictor
    cfg: TrainConfig
    name: str
    tile: int | None = None
    batch_size: int = 4


def check_served(cfg: TrainConfig, name: str) -> None:
    """The service shows membranes and cells: a 2-class model (membrane, cell) is needed."""
    if cfg.classes != 2:
        raise ConfigError(
            f"the model {name} has {cfg.classes} classes; `biounet serve` serves 2-class membrane models "
            f"(class 0 membrane, class 1 cell): run `biounet predict` for its per-class probabilities"
        )


def _as_stack(array: np.ndarray, slices: int) -> np.ndarray:
    """A predict output read back, (H, W) for one slice, as (Z, H, W)."""
    return array.reshape((slices, *array.shape[-2:]))


def _pictures(folder: Path, stack: np.ndarray, membrane: np.ndarray, labels: np.ndarray | None) -> dict[str, list]:
    """One membrane picture (bright = membrane) and one overlay per slice, named by the slice number."""
    found: dict[str, list[Path]] = {"membrane.png": [], "overlay.png": []}
    for z, image in enumerate(stack):
        grey = np.round(255 * np.clip(membrane[z], 0.0, 1.0)).astype(np.uint8)
        found["membrane.png"].append(write_png(folder / f"membrane-{z:04d}.png", grey))
        picture = overlay(image, membrane[z]) if labels is None else instance_overlay(image, labels[z])
        found["overlay.png"].append(write_png(folder / f"overlay-{z:04d}.png", picture))
    return found


def run_job(
    model: ServedModel, folder: Path, source: Path, labels: str | None, tta: bool, progress: Callable[[int, int], None]
) -> dict[str, Any]:
    """Segment the image file ``source`` (in ``folder``) and write the results into ``folder``;
    ``progress(done, total)`` is called before the first slice and after each. Returns the result
    files by name ("membrane.tif", "mask.tif", "labels.tif" with ``labels``, and per slice
    "membrane.png" and "overlay.png"), plus "slices" and "shape" (H, W)."""
    import tifffile

    stack = read_stack(source, model.cfg.in_channels)  # a channel mismatch fails before any inference
    total, done = len(stack), [0]
    progress(0, total)

    def step(n: int) -> None:
        done[0] += n
        progress(done[0], total)

    written = predict_files(
        [source],
        model.predictor,
        model.cfg,
        folder,
        model.tile,
        model.batch_size,
        tta,
        labels,
        False,
        log=lambda _: None,
        progress=step,
    )
    files = {path.name.removeprefix(f"{source.stem}_"): path for path in written}
    membrane = _as_stack(tifffile.imread(files["membrane.tif"]), total)
    cells = _as_stack(tifffile.imread(files["labels.tif"]), total) if "labels.tif" in files else None
    return {
        **files,
        **_pictures(folder, stack, membrane, cells),
        "slices": total,
        "shape": list(membrane.shape[-2:]),
    }
