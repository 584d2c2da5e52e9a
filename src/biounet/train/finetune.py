"""Fine-tuning a model on painted annotations held in memory: what the napari Fine-tune widget runs.

The annotations follow napari's Labels layer (and ilastik): 0 is unpainted and left out of the loss, value
k is class k - 1; for the 2-class membrane models 1 = membrane and 2 = cell. Only the slices with painted
pixels train (:class:`biounet.data.TileSampler` places each tile over a painted pixel). The run is an
ordinary ``biounet train`` run (``--init-from`` the base model, ``--fold all``, no validation) in a folder
of its own that also keeps the painted labels (``labels.tif``): nothing painted is lost, and the weights
open wherever a run folder does (``--model RUN``, the Segment widget).

:func:`plan_fine_tune` checks everything that can be checked at once (cheaply: the widget calls it on
napari's thread) and :func:`run_fine_tune` does the work (in a worker thread); :func:`preview_slice`
segments one slice with a checkpoint of the run while it trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from biounet.core.config import TrainConfig, from_dict
from biounet.core.errors import ConfigError, DataError
from biounet.data.readers import SegmentationData, painted_to_classes, scale_image
from biounet.io.fileio import atomic_write, check_output_dir
from biounet.model.checkpoint import load, resolve_checkpoint
from biounet.model.geometry import output_or_none
from biounet.model.pretrained import builtin_path
from biounet.model.unet import tile_geometry
from biounet.models import model_kind
from biounet.train.hooks import TrainHooks

LEGEND = "paint 1 = membrane, 2 = cell (the 2-class membrane models); label k is class k - 1; 0 = not painted"
LABELS_FILE = "labels.tif"  # the painted labels, as they were when the run started
LR = 3e-4  # Adam's peak learning rate, decaying to 0 (cosine): moves a trained model without wrecking it
# the paper's loss weights: classes balanced, plus w0 = 10 (sigma 5) on the membrane between two cells.
# Without them the fine-tuned membranes thin out and break (docs/finetune.md: V_rand 0.94 against 0.98).
CLASS_BALANCE, BORDER_WEIGHT, BORDER_SIGMA = True, 10.0, 5.0
DEFAULT_ROOT = Path("~") / "biounet-finetune"  # the widget's default for the folder of runs


@dataclass(frozen=True)
class FineTune:
    """A checked fine-tuning run: its configuration (``cfg.out``: the run folder, not yet made), the image it
    learns from (any array-like that slices like NumPy, read one painted slice at a time) and a copy of the
    painted labels, of the image's shape without its colour axis."""

    cfg: TrainConfig
    image: Any
    rgb: bool
    labels: np.ndarray
    slices: tuple[int, ...]  # the painted slices' z (0 for a 2D image)
    name: str  # the image's, for messages and the names of the training images

    @property
    def run_dir(self) -> Path:
        return Path(str(self.cfg.out))

    @property
    def stacked(self) -> bool:
        return self.labels.ndim == 3

    def read(self, z: int) -> np.ndarray:
        """Slice ``z`` of the image, (Y, X) or (Y, X, C), as a NumPy array."""
        return np.asarray(self.image[z] if self.stacked else self.image)


def base_config(model: str) -> tuple[TrainConfig, str]:
    """(the network's TrainConfig, the ``--init-from`` reference) of a built-in model's name, a checkpoint
    or a run folder (its best.pt, else last.pt)."""
    kind = model_kind(model)
    if kind in ("exported", "bioimageio"):
        raise ConfigError(
            f"{model} is an exported model: fine-tuning starts from weights biounet trains, a built-in model, a "
            f"checkpoint (.pt) or a run folder; choose the checkpoint it was exported from"
        )
    path = builtin_path(model) if kind == "builtin" else resolve_checkpoint(model)
    ckpt = load(path)
    cfg = from_dict(ckpt["config"], source=str(ckpt["path"]))
    return cfg, (model if kind == "builtin" else str(Path(ckpt["path"]).resolve()))


def check_image(shape: tuple[int, ...], rgb: bool, name: str) -> tuple[int, ...]:
    """The spatial shape, (Y, X) or (Z, Y, X), of an image of ``shape`` (plus a colour axis when ``rgb``)."""
    spatial = tuple(int(n) for n in shape[: len(shape) - bool(rgb)])
    if len(spatial) not in (2, 3):
        raise DataError(
            f"image layer {name!r} has {len(spatial)} dimensions (shape {tuple(shape)}); fine-tuning takes a 2D "
            f"image (Y, X) or a stack of slices (Z, Y, X): take a 2D or 3D part of it first"
        )
    if min(spatial) < 1:
        raise DataError(f"image layer {name!r} is empty (shape {tuple(shape)}); it holds no pixels to learn from")
    return spatial


def check_labels(labels: np.ndarray, spatial: tuple[int, ...], names: tuple[str, str]) -> tuple[int, ...]:
    """The painted slices (their z; (0,) for a 2D image) of ``labels``, painted on an image of shape
    ``spatial``; ``names``: the image's and the labels' (for the messages)."""
    image, painted = names
    if labels.shape != spatial:
        raise DataError(
            f"labels layer {painted!r} has shape {labels.shape} but image layer {image!r} has {spatial}: paint on "
            f"a labels layer of the image's shape (select the image, then Layers > New Labels Layer)"
        )
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise DataError(f"labels layer {painted!r} holds {labels.dtype} values; painted labels are integers")
    if labels.min() < 0:
        raise DataError(f"labels layer {painted!r} holds negative labels; paint with 1, 2, ... (0 = not painted)")
    per_slice = labels.reshape(labels.shape[0], -1).any(axis=1) if labels.ndim == 3 else np.array([labels.any()])
    if not per_slice.any():
        raise DataError(f"nothing is painted in labels layer {painted!r}: {LEGEND}; paint a few strokes of each")
    return tuple(int(z) for z in np.flatnonzero(per_slice))


def check_classes(top: int, cfg: TrainConfig, model: str, new_classes: bool, painted: str) -> int:
    """The class count of the fine-tuned model for painted labels up to ``top`` on ``model`` (``cfg``):
    the model's, or with ``new_classes`` as many as the labels need (its output layer is then trained anew)."""
    if cfg.affinities != "none" or cfg.context:
        raise ConfigError(
            f"{model} also sees neighbouring sections or predicts affinities (context {cfg.context}, affinities "
            f"{cfg.affinities}); fine-tuning from painted labels trains 2D class models: choose another model"
        )
    if top > cfg.classes and not new_classes:
        raise DataError(
            f"labels layer {painted!r} holds label {top}, but {model} has {cfg.classes} classes (labels "
            f"1..{cfg.classes}); paint with 1..{cfg.classes}, or tick 'new classes' to add class(es) "
            f"{cfg.classes + 1}..{top} (the output layer then learns from scratch)"
        )
    return max(top, cfg.classes)


def fit_tile(cfg: TrainConfig, side: int, model: str) -> int:
    """The base model's tile size, or the largest one whose output fits into an image side of ``side``."""
    if tile_geometry(cfg)[1] <= side:
        return cfg.tile_size
    if cfg.padding == "same":
        tile = side // 2**cfg.depth * 2**cfg.depth
    else:  # the largest valid input below the base tile whose output fits
        fitting = (t for t in range(cfg.tile_size, 0, -1) if 0 < (output_or_none(t, cfg.depth) or side + 1) <= side)
        tile = next(fitting, 0)
    if tile < 2**cfg.depth:
        raise DataError(
            f"the image is {side} pixels across, too small for {model} (depth {cfg.depth}, {cfg.padding} padding); "
            f"paint on a larger image"
        )
    return tile


def new_run_dir(root: str | Path, now: datetime | None = None) -> Path:
    """Make a new folder under ``root`` named by the date and time (``-2``, ``-3``... when taken): never an
    existing run's; returns it."""
    root = check_output_dir(Path(root).expanduser(), "output folder")
    stem = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    path, k = root / stem, 1
    while path.exists():
        k += 1
        path = root / f"{stem}-{k}"
    path.mkdir(parents=True)  # taken now: a second run started in the same second gets the next name
    return path


def fine_tune_config(
    base: TrainConfig, init_from: str, classes: int, tile: int, steps: int, out: Path, preview_every: int
) -> TrainConfig:
    """The run: the base model's network and augmentation (without elastic deformation), the recipe of
    configs/finetune-cpu.yaml (lr, schedule, loss weights), ``init_from`` its weights, every painted slice
    trained (no held-out fold, no validation), a checkpoint (and a preview) every ``preview_every`` steps."""
    if steps < 1:
        raise ConfigError(f"steps {steps}: fine-tuning needs at least one step")
    return base.replace(
        data=None,
        masks=None,
        painted=True,
        ignore_value=None,
        mask_threshold=None,
        fold="all",
        validation=False,
        val_every=0,
        classes=classes,
        tile_size=tile,
        steps=steps,
        lr=LR,
        lr_schedule="cosine",
        class_balance=CLASS_BALANCE,
        border_weight=BORDER_WEIGHT,
        border_sigma=BORDER_SIGMA,
        elastic=False,  # in short runs it cost dice (configs/isbi-cpu.yaml)
        warmup_steps=steps // 10,  # a tenth of the run warms up, as configs/finetune-cpu.yaml
        micro_batch_size=0,
        device="auto",
        compile=False,
        workers=0,
        progress="off",
        out=str(out),
        name=None,
        resume=None,
        init_from=init_from,
        log_every=max(1, min(base.log_every, steps)),
        checkpoint_every=max(1, min(preview_every, steps)),
        keep_checkpoints=1,
    )


def plan_fine_tune(
    image: Any,
    rgb: bool,
    labels: np.ndarray,
    model: str,
    steps: int,
    root: str | Path,
    *,
    new_classes: bool = False,
    preview_every: int = 25,
    names: tuple[str, str] = ("image", "labels"),
) -> FineTune:
    """Check a fine-tuning run of ``model`` on ``image`` (an array-like, (Y, X) or (Z, Y, X), plus a colour
    axis when ``rgb``) painted in ``labels`` (copied), ``steps`` long, in a new folder under ``root``.
    ``names``: the image's and the labels' layer names. A DataError or ConfigError says what is wrong."""
    spatial = check_image(tuple(image.shape), rgb, names[0])
    labels = np.array(labels, copy=True)
    slices = check_labels(labels, spatial, names)
    base, init_from = base_config(model)
    if base.in_channels != (int(image.shape[-1]) if rgb else 1):
        raise DataError(
            f"image layer {names[0]!r} has {image.shape[-1] if rgb else 1} channel(s) but {model} takes "
            f"{base.in_channels}: choose a model for {'RGB' if rgb else 'grey'} images"
        )
    classes = check_classes(int(labels.max()), base, model, new_classes, names[1])
    tile = fit_tile(base, min(spatial[-2:]), model)
    cfg = fine_tune_config(base, init_from, classes, tile, steps, Path(root), preview_every).validate()
    cfg = cfg.replace(out=str(new_run_dir(root)))  # made last: a refused run leaves no folder behind
    return FineTune(cfg, image, bool(rgb), labels, slices, names[0])


def painted_data(plan: FineTune) -> SegmentationData:
    """The painted slices as a dataset in memory: images scaled to [-1, 1] whole (as ``predict`` scales
    them), masks as class indices (IGNORE where nothing is painted)."""
    images, masks, names = [], [], []
    for z in plan.slices:
        where = f"{plan.name} slice {z}" if plan.stacked else plan.name
        images.append(scale_image(plan.read(z), plan.cfg.in_channels, where))
        masks.append(painted_to_classes(plan.labels[z] if plan.stacked else plan.labels, plan.cfg.classes, where))
        names.append(where)
    return SegmentationData(images, masks, names)


def save_labels(plan: FineTune) -> Path:
    """Write the painted labels into the run folder (``labels.tif``), atomically; returns the path."""
    import tifffile

    plan.run_dir.mkdir(parents=True, exist_ok=True)
    return atomic_write(plan.run_dir / LABELS_FILE, lambda tmp: tifffile.imwrite(tmp, plan.labels))


def run_fine_tune(plan: FineTune, hooks: TrainHooks | None = None, export: bool = False) -> dict[str, Any]:
    """Save the painted labels, train (``hooks`` hear the steps and may stop it) and, when asked and not
    stopped, write a bioimage.io package of the result (``RUN/RUN.zip``); returns the run's summary (with
    ``"package"``: the package's path, or None)."""
    from biounet.train.engine import train

    save_labels(plan)
    summary = train(plan.cfg, data=painted_data(plan), quiet=True, hooks=hooks)
    summary["package"] = None
    if export and not summary["stopped"]:
        from biounet.deploy.bioimageio import write_package

        summary["package"] = str(write_package(plan.run_dir, plan.run_dir / f"{plan.run_dir.name}.zip", opset=None))
    return summary


def preview_slice(plan: FineTune, z: int, checkpoint: str | Path, device: str = "auto") -> np.ndarray:
    """(classes, Y, X) float32 class probabilities of slice ``z`` by the weights in ``checkpoint``."""
    from biounet.models import load_predictor
    from biounet.segment.inference import segment

    predictor, cfg, _ = load_predictor(checkpoint, device)
    image = scale_image(plan.read(z), cfg.in_channels, plan.name)
    return segment(image, predictor, cfg.depth, cfg.padding)
