"""Open any model biounet can run, by what the user typed: a built-in model's name, a checkpoint or
run folder, an exported file (``.onnx``, ``.pt2``) or a bioimage.io package biounet wrote (``.zip``).
The command line, the Dask workers and the napari widget all open models here, so each accepts the
same things and refuses them alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from biounet.core.config import TrainConfig
from biounet.core.errors import ConfigError

EXPORTED_SUFFIXES = (".onnx", ".pt2")
PACKAGE_SUFFIX = ".zip"  # a bioimage.io model package (`biounet export --format bioimageio`)


def model_kind(ref: str | Path) -> str:
    """'builtin', 'exported', 'bioimageio' or 'checkpoint' for what ``--model`` was given (nothing is
    opened; an unknown name without a suffix that is not a file lists the built-in models)."""
    from biounet.model.pretrained import builtin_path, is_builtin

    text = str(ref)
    if is_builtin(text):
        return "builtin"
    path = Path(text)
    suffix = path.suffix.lower()  # net.ONNX is an ONNX file: every caller reads the suffix alike
    if suffix in EXPORTED_SUFFIXES:
        return "exported"
    if suffix == PACKAGE_SUFFIX:
        return "bioimageio"
    if not path.suffix and not path.exists():
        builtin_path(text)  # raises: neither a file nor a built-in name
    return "checkpoint"


def open_model(
    ref: str | Path, device: str = "auto", precision: str = "auto", threads: int = 0, kind: str | None = None
) -> tuple[Any, TrainConfig, dict[str, Any]]:
    """(predictor, TrainConfig, description) of ``ref`` (``kind`` from :func:`model_kind` unless
    given). Checkpoints and packages run under ``precision``; an exported file runs in float32 (another
    precision is refused)."""
    kind = kind or model_kind(ref)
    if kind == "bioimageio":
        from biounet.deploy.bioimageio_rdf import open_package

        return open_package(ref, device, precision, threads)
    if kind == "exported":
        from biounet.deploy.export import load_exported

        if precision not in ("auto", "fp32"):
            raise ConfigError(f"--precision {precision}: an exported model runs in float32; drop --precision")
        return load_exported(ref, device, threads)
    from biounet.core.device import set_threads
    from biounet.model.pretrained import builtin_path

    set_threads(threads)
    path = builtin_path(str(ref)) if kind == "builtin" else ref
    return load_predictor(path, device, precision)


def load_predictor(
    path: str | Path, device: str = "auto", precision: str = "auto"
) -> tuple[Any, TrainConfig, dict[str, Any]]:
    """(predictor, TrainConfig, checkpoint) for a checkpoint or run folder, under ``precision``."""
    from biounet.core.device import resolve_device, resolve_precision
    from biounet.model.checkpoint import load_model
    from biounet.segment.inference import torch_predictor

    model, cfg, ckpt = load_model(path, device)
    dev = resolve_device(device)
    return torch_predictor(model, dev, resolve_precision(precision, dev)), cfg, ckpt


@dataclass(frozen=True)
class ModelRef:
    """How a worker loads the model: ``path`` of ``kind`` (:func:`biounet.models.model_kind`; a
    built-in model is its checkpoint), on ``device`` in ``precision`` (resolved by the client, so
    every worker computes alike) with ``threads``."""

    path: str
    kind: str
    device: str
    precision: str
    threads: int

    def load(self) -> Any:
        device = self.device
        if device.startswith("cuda") and ":" not in device:  # one GPU per worker, by the worker's number
            device = _worker_gpu()
        return open_model(self.path, device, self.precision, self.threads, kind=self.kind)[0]


def _worker_gpu() -> str:
    import torch
    from distributed import get_worker

    name = get_worker().name
    index = name if isinstance(name, int) else abs(hash(name))
    return f"cuda:{index % max(1, torch.cuda.device_count())}"
