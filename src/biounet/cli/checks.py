"""Every user-facing value of the command line checked in one place, before any work.

The training options (train, demo, cv) are one :class:`biounet.core.config.TrainConfig`, checked by its
``validate``; the other commands' values, and the paths and references every command is given, are
checked here. A path that names nothing is refused by the option that named it, with what fits: as
the library would refuse it (a missing input or model: exit status 1), but before any work.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from biounet.core.config import TrainConfig, check_device
from biounet.core.errors import CheckpointError, ConfigError, DataError
from biounet.segment.tiling import MAX_TILE_SIDE

# the file of a volume spec: PATH.zarr[/ARRAY], PATH.h5[:/DATASET] (biounet.io.volumes reads the rest)
_VOLUME_FILE = re.compile(r"^(?P<file>.+?\.(?:zarr|h5|hdf5|hdf))(?:[/:].*)?$", re.IGNORECASE)
URL_SCHEMES = ("http", "https", "ftp", "file")  # what urllib, the downloader's client, opens


def check_tile_batch(tile_batch: int) -> int:
    """``--tile-batch``: tiles per inference pass, at least 1."""
    if tile_batch < 1:
        raise ConfigError(f"--tile-batch must be at least 1, got {tile_batch}; 4 is a good start")
    return tile_batch


def check_runtime(args: argparse.Namespace) -> None:
    """``--device`` and ``--threads`` of a command that runs the network but is not training (whose
    values ``TrainConfig.validate`` checks)."""
    if args.threads < 0:
        raise ConfigError(f"--threads must not be negative, got {args.threads}; 0 takes one per core")
    check_device(args.device)


def check_inference_options(args: argparse.Namespace) -> None:
    """The inference flags of ``predict`` and ``evaluate``, checked before any file is read."""
    check_runtime(args)
    check_tile_batch(args.tile_batch)
    if args.tile is not None and not 1 <= args.tile <= MAX_TILE_SIDE:
        raise ConfigError(
            f"--tile {args.tile}: a tile side must be between 1 and {MAX_TILE_SIDE} pixels; omit "
            "--tile to let biounet choose"
        )


def check_model_ref(ref: str | None, option: str = "--model", exported: bool = True, use: str = "") -> str:
    """The kind of model ``ref`` names (:func:`biounet.models.model_kind`): a built-in model's name, or
    a checkpoint, run folder or (``exported``) exported model that exists; else one line naming
    ``option`` and what fits. ``use``: what needs a PyTorch checkpoint where exported models are refused."""
    from biounet.model.pretrained import builtin_models, is_builtin
    from biounet.models import model_kind

    fits = (
        "a checkpoint (.pt), a run folder"
        + (", an exported .onnx or .pt2, a bioimage.io .zip" if exported else "")
        + " or a built-in model's name (`biounet models` lists them)"
    )
    text = "" if ref is None else str(ref)
    if not text.strip():
        raise ConfigError(f"{option} is empty; give {fits}")
    if is_builtin(text):
        return "builtin"
    if not Path(text).exists():
        if "/" not in text and not Path(text).suffix:  # typed as a name
            known = ", ".join(builtin_models()) or "none"
            raise ConfigError(
                f"{option} {text}: no built-in model (known: {known}), file or folder of that name; give {fits}"
            )
        raise CheckpointError(f"{option} {text}: no such file or folder; give {fits}")
    kind = model_kind(text)
    if kind in ("exported", "bioimageio") and not exported:
        raise ConfigError(
            f"{option} {text} is an exported model, but {use or 'this'} needs the PyTorch weights: give a "
            "checkpoint (.pt), a run folder or a built-in model's name"
        )
    return kind


def check_input(spec: str, option: str, expected: str) -> None:
    """An input the command reads exists (for a volume spec, its file); else one line naming ``option``."""
    match = _VOLUME_FILE.match(spec)
    if not spec.strip() or not Path(match["file"] if match else spec).exists():
        raise DataError(f"{option} {spec}: no such file or folder; give {expected}")


def check_training_paths(cfg: TrainConfig) -> None:
    """The run to continue (``--resume``), the starting weights (``--init-from``) and the label volume
    (``--masks``), whether typed or from a ``--config`` file, before the data is read. (``--data`` is
    checked by its reader, ``--out`` by the run's setup.)"""
    if cfg.resume and not Path(cfg.resume).exists():
        raise CheckpointError(
            f"--resume {cfg.resume}: no such run folder or checkpoint; give the folder of the run to continue "
            "(it holds last.pt) or one of its checkpoints"
        )
    if cfg.init_from and not cfg.resume:  # a resumed run continues its own weights
        check_model_ref(cfg.init_from, "--init-from", exported=False, use="fine-tuning")
    if cfg.masks:
        check_input(cfg.masks, "--masks", "the label volume of --data (PATH.zarr, PATH.h5:/DATASET or PATH.tif)")


def check_url(url: str) -> str:
    """``fetch --url``: a base URL the downloader can open."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        fits = parts.scheme in URL_SCHEMES and (parts.scheme == "file" or bool(parts.hostname))
    except ValueError:  # e.g. an unclosed [IPv6 bracket
        fits = False
    if not fits:
        raise ConfigError(
            f"--url {url!r} is not a base URL; give one such as https://example.org/isbi2012 ({', '.join(URL_SCHEMES)})"
        )
    return url


def checked_fold(fold: str, folds: int) -> str:
    """The fold ``evaluate`` scores: one of the model's ``folds``, or "none" (every image: a separate set)."""
    if fold == "none":
        return fold
    if fold == "all" or not (str(fold).isdigit() and 0 <= int(fold) < folds):
        raise ConfigError(
            f"--fold must be one of 0..{folds - 1} (the model's {folds} folds) or none (every image of a separate "
            f"labelled set), got {fold!r}"
            + ("; the model was trained on every image (--fold all), so name a fold to score" if fold == "all" else "")
        )
    return fold


def parse_micro_sweep(text: str) -> list[int]:
    """``bench --micro-sweep``: comma-separated micro-batch sizes."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--micro-sweep must be comma-separated integers, got {text!r}") from None


def parse_indices(text: str | None) -> list[int] | None:
    """``score --indices``: comma-separated slice numbers (None: all)."""
    if text is None:
        return None
    try:
        return [int(i) for i in text.split(",")]
    except ValueError:
        raise ConfigError(f"--indices must be comma-separated slice numbers, got {text!r}") from None


def check_timeout(timeout: float) -> float:
    """``fetch --timeout``: positive seconds."""
    if not 0 < timeout <= 1e6:  # NaN too; an infinite or huge one overflows the socket's timeout
        raise ConfigError(f"--timeout must be a positive number of seconds (at most 1e6), got {timeout}")
    return timeout


MIN_OPSET = 17  # torch.onnx writes opset 18; 17 converts cleanly, lower ones fail inside the converter


def check_opset(opset: int, fmt: str) -> int:
    """``export --opset``: an ONNX opset the exporter can write."""
    if fmt != "onnx":
        return opset
    try:
        from onnx.defs import onnx_opset_version
    except ImportError:
        return opset  # export_model says which packages to install
    newest = onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise ConfigError(
            f"--opset must be between {MIN_OPSET} and {newest} (the installed onnx's newest), got "
            f"{opset}; the default, 18, is what torch.onnx writes natively"
        )
    return opset
