"""Export a trained network for deployment, and run the exported file.

Two formats, both from one ``torch.export`` trace with a dynamic batch and dynamic height and width:

- ``onnx``: an ONNX model for onnxruntime (CPU or GPU), input ``image`` (N, C, H, W) float32 in
  [-1, 1], output ``logits`` (N, K, H', W'): the K class scores, then one affinity score per offset for a
  network trained with ``--affinities``; a network trained with ``--context`` takes each image's
  neighbouring sections as more input channels. Running it needs onnxruntime and NumPy only: this
  module, the tiler and the metrics import no PyTorch on that path.
- ``program``: a ``torch.export`` program (``.pt2``), PyTorch's successor to TorchScript, loaded
  with ``torch.export.load`` without biounet's model code.

Both carry the preprocessing contract as metadata (key ``biounet``, a JSON object): the
format version, input scaling, channels (and what they hold: sections, classes, affinity offsets),
depth, padding, the sizes the network takes, and the training configuration. A valid-padding
network takes sides ``step * k + offset`` (572, 556, 588, ...: every 16 pixels at depth 4) and returns
``side - 2 * margin``; a same-padding one takes multiples of ``2**depth`` and returns the same size.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from biounet.core.config import TrainConfig, from_dict
from biounet.core.errors import BiounetError, ConfigError
from biounet.data.affinities import offsets_for, output_channels
from biounet.data.context import input_channels
from biounet.io.fileio import atomic_write
from biounet.model.geometry import output_or_none, valid_margin

EXPORT_FORMAT = 1
METADATA_KEY = "biounet"
FORMATS = {"onnx": ".onnx", "program": ".pt2"}
INPUT_NAME, OUTPUT_NAME = "image", "logits"
MAX_SIDE = 8192  # the largest tile side the export admits


class ExportError(BiounetError):
    """An exported file that cannot be used: not a biounet export, unreadable, wrong input."""


def size_rule(depth: int, padding: str) -> tuple[int, int, int]:
    """(step, offset, smallest): the sides the network takes are ``offset + step * k >= smallest``."""
    step = 2**depth
    if padding == "same":
        return step, 0, step
    smallest = next(s for s in range(1, 64 * step) if output_or_none(s, depth))
    return step, smallest % step, smallest


def channel_names(cfg: TrainConfig) -> tuple[list[str], list[str]]:
    """(input, output) channel names: grey or red/green/blue (channelN for other counts), suffixed with the
    section (``grey_z-1``, ``grey_z+0``, ``grey_z+1``) with --context; membrane and cell for two classes
    (channelN for more), then ``affinity_dy-1_dx0`` for the affinity channel of offset (-1, 0)."""
    colours = {1: ["grey"], 3: ["red", "green", "blue"]}.get(cfg.in_channels)
    colours = colours or [f"channel{i}" for i in range(cfg.in_channels)]
    sections = range(-cfg.context, cfg.context + 1)
    inputs = [f"{c}_z{d:+d}" for d in sections for c in colours] if cfg.context else colours
    classes = ["membrane", "cell"] if cfg.classes == 2 else [f"channel{i}" for i in range(cfg.classes)]
    return inputs, classes + [f"affinity_dy{dy}_dx{dx}" for dy, dx in offsets_for(cfg.affinities)]


def contract(cfg: TrainConfig) -> dict[str, Any]:
    """The preprocessing contract stored in an export: what the network's input and output channels are
    (``in_channels`` and ``out_channels`` count them; a 2.5D network's input holds ``context`` sections on
    each side, an affinity network's output one channel per ``offsets`` entry after the classes)."""
    step, offset, smallest = size_rule(cfg.depth, cfg.padding)
    margin = valid_margin(cfg.depth) if cfg.padding == "valid" else 0
    offsets = offsets_for(cfg.affinities)
    return {
        "format": EXPORT_FORMAT,
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
        "input_scaling": "images scaled to [-1, 1]: 8-bit x / 127.5 - 1 (16-bit x / 32767.5 - 1), "
        "as biounet.data.readers.scale_image",
        "in_channels": input_channels(cfg),
        "image_channels": cfg.in_channels,
        "context": cfg.context,
        "input_channels": f"sections z - {cfg.context} .. z + {cfg.context} of a stack, {cfg.in_channels} channel(s) "
        "each, in that order (mirrored at the stack's ends; biounet.data.context.with_context)"
        if cfg.context
        else f"the image's {cfg.in_channels} channel(s)",
        "classes": cfg.classes,
        "affinities": cfg.affinities,
        "offsets": [list(o) for o in offsets],
        "out_channels": output_channels(cfg),
        "channel_names": dict(zip(("input", "output"), channel_names(cfg))),
        "depth": cfg.depth,
        "padding": cfg.padding,
        "output_shape": "logits (N, classes, H - 2 * margin, W - 2 * margin); softmax over axis 1 gives probabilities"
        if not offsets
        else "logits (N, classes + len(offsets), H - 2 * margin, W - 2 * margin): channels 0 .. classes - 1 are "
        "class scores (softmax over them gives probabilities), channel classes + j the affinity score of "
        "offsets[j] = (dy, dx) (its sigmoid: the probability that pixel p and p + (dy, dx) lie in the same cell)",
        "margin": margin,
        "sizes": f"H and W each {offset} + {step} * k, at least {smallest} (e.g. "
        f"{', '.join(str(smallest + step * j) for j in range(3))}, ...)",
        "size_step": step,
        "size_offset": offset,
        "size_min": smallest,
        "config": cfg.to_saved(),
    }


def _exported_program(model, cfg: TrainConfig):
    import torch
    from torch.export import Dim, export

    step, offset, smallest = size_rule(cfg.depth, cfg.padding)
    k_min, k_max = (smallest - offset) // step, (MAX_SIDE - offset) // step
    k_h, k_w = Dim("k_h", min=k_min, max=k_max), Dim("k_w", min=k_min, max=k_max)
    batch = Dim("batch", min=1, max=4096)
    side = smallest + step * 2
    example = torch.zeros(2, input_channels(cfg), side, side)
    shapes = {"x": {0: batch, 2: step * k_h + offset, 3: step * k_w + offset}}
    model = model.float().eval().to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        return export(model, (example,), dynamic_shapes=shapes), example


def export_model(checkpoint: str | Path, fmt: str, out: str | Path, opset: int = 18) -> Path:
    """Export ``checkpoint`` (a .pt file or run folder) as ``fmt`` to ``out``, atomically."""
    from biounet.model.checkpoint import load_model

    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    if out.suffix != FORMATS[fmt]:
        raise ConfigError(
            f"--out {out}: a {fmt} export is written to a {FORMATS[fmt]} file; name it "
            f"{out.with_suffix(FORMATS[fmt]).name}"
        )
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a file name")
    model, cfg, ckpt = load_model(checkpoint, "cpu")
    meta = contract(cfg) | {
        "checkpoint": str(ckpt["path"]),
        "step": ckpt["step"],
        "train_digests": list(ckpt.get("train_digests") or []),
    }
    program, example = _exported_program(model, cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "program":
        import torch

        atomic_write(out, lambda p: torch.export.save(program, p, extra_files={METADATA_KEY: json.dumps(meta)}))
        return out
    return _write_onnx(program, example, meta, out, opset)


def _write_onnx(program, example, meta: dict[str, Any], out: Path, opset: int) -> Path:
    import torch

    try:
        import onnx
    except ImportError:
        raise ConfigError("ONNX export needs the packages onnx and onnxscript: pip install 'biounet[export]'") from None
    onnx_program = torch.onnx.export(
        program,
        (example,),
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        opset_version=opset,
        verbose=False,
    )
    if onnx_program is None:  # only the legacy exporter (dynamo=False) returns None
        raise RuntimeError("torch.onnx.export returned no program")
    proto = onnx_program.model_proto
    names = ("batch", "height", "width")
    for i, name in zip((0, 2, 3), names):  # readable names for the dynamic input axes
        proto.graph.input[0].type.tensor_type.shape.dim[i].dim_param = name
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    proto.producer_name = "biounet"
    onnx.checker.check_model(proto)
    atomic_write(out, lambda p: onnx.save_model(proto, str(p)))
    return out


# ---------------------------------------------------------------- running an export


def _parse_meta(raw: str, path: Path) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise ExportError(f"{path}: its biounet metadata is not valid JSON (damaged file?); export it again") from None


def _check_meta(meta: dict[str, Any], path: Path) -> dict[str, Any]:
    if not isinstance(meta, dict) or "format" not in meta or "config" not in meta:
        raise ExportError(f"{path} has no biounet metadata; export a checkpoint with `biounet export`")
    if not isinstance(meta["format"], int) or meta["format"] > EXPORT_FORMAT:
        raise ExportError(
            f"{path} is a biounet export of format {meta['format']}, newer than this biounet "
            f"reads ({EXPORT_FORMAT}); upgrade biounet"
        )
    return meta


def check_batch(batch: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """The batch as contiguous float32; a clear error for one the exported network cannot take."""
    shape = batch.shape
    if batch.ndim != 4 or shape[1] != meta["in_channels"]:
        raise ExportError(f"input of shape {shape}: the model takes (N, {meta['in_channels']}, H, W) float32")
    step, offset, smallest = meta["size_step"], meta["size_offset"], meta["size_min"]
    for side in shape[2:]:
        if side < smallest or (side - offset) % step or side > MAX_SIDE:
            raise ExportError(
                f"input of shape {shape}: each side must be {offset} + {step} * k between "
                f"{smallest} and {MAX_SIDE} (e.g. {smallest + step * 2}); the tiler picks such sizes"
            )
    return np.ascontiguousarray(batch, dtype=np.float32)


class OnnxPredictor:
    """An exported ONNX model run by onnxruntime; callable as a tiler predictor. No PyTorch."""

    def __init__(self, path: str | Path, device: str = "auto", threads: int = 0):
        path = Path(path)
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError("running an ONNX model needs onnxruntime: pip install 'biounet[onnx]'") from None
        if not path.is_file():
            raise ExportError(f"model file {path} does not exist")
        available = ort.get_available_providers()
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in available:
                raise ConfigError(
                    f"--device {device}: this onnxruntime has no CUDA provider (providers: "
                    f"{', '.join(available)}); install onnxruntime-gpu or use --device cpu"
                )
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        elif device == "auto" and "CUDAExecutionProvider" in available:
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            text = str(exc).splitlines()[0][:300]
            hint = (
                "it was exported for a newer ONNX opset than this onnxruntime supports: upgrade "
                "onnxruntime or export again with a lower --opset"
                if "opset" in text.lower()
                else "it is not a readable ONNX model (truncated or corrupted?); export it again"
            )
            raise ExportError(f"{path}: onnxruntime cannot load it ({text}); {hint}") from None
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if raw is None:
            raise ExportError(
                f"{path} is an ONNX model but not a biounet export (no '{METADATA_KEY}' metadata); "
                f"export a checkpoint with `biounet export`"
            )
        self.meta = _check_meta(_parse_meta(raw, path), path)
        self.path = path
        self.providers = self.session.get_providers()
        self.device = "cuda" if self.providers[0] == "CUDAExecutionProvider" else "cpu"
        self.precision = "fp32"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = check_batch(batch, self.meta)
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]


class ProgramPredictor:
    """An exported ``torch.export`` program; callable as a tiler predictor."""

    def __init__(self, path: str | Path, device: str = "auto", threads: int = 0):
        import torch

        from biounet.core.device import resolve_device, set_threads

        set_threads(threads)
        path = Path(path)
        if not path.is_file():
            raise ExportError(f"model file {path} does not exist")
        extra = {METADATA_KEY: ""}
        try:
            program = torch.export.load(str(path), extra_files=extra)
        except Exception as exc:  # a zip or pickle error from a damaged file
            raise ExportError(
                f"{path}: torch.export cannot load it ({str(exc).splitlines()[0][:200]}); it is not a "
                f"readable exported program (truncated or corrupted?): export it again"
            ) from None
        if not extra[METADATA_KEY]:
            raise ExportError(f"{path} is an exported program but not a biounet export (no metadata)")
        self.meta = _check_meta(_parse_meta(extra[METADATA_KEY], path), path)
        self.device = resolve_device(device)
        self.module = program.module().to(self.device)
        self.path = path
        self.precision = "fp32"
        self._torch = torch

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = check_batch(batch, self.meta)
        with self._torch.inference_mode():
            return self.module(self._torch.from_numpy(batch).to(self.device)).float().cpu().numpy()


def load_exported(path: str | Path, device: str = "auto", threads: int = 0) -> tuple[Any, TrainConfig, dict[str, Any]]:
    """(predictor, TrainConfig, description) for an exported ``.onnx`` or ``.pt2`` file;
    ``threads`` CPU threads (0: the runtime's default)."""
    path = Path(path)
    predictor: OnnxPredictor | ProgramPredictor
    suffix = path.suffix.lower()  # as biounet.models.model_kind: net.ONNX is an ONNX file
    if suffix == ".onnx":
        predictor = OnnxPredictor(path, device, threads)
    elif suffix == ".pt2":
        predictor = ProgramPredictor(path, device, threads)
    else:
        raise ExportError(
            f"--model {path}: expected a .onnx or .pt2 file written by `biounet export`; a checkpoint (.pt), "
            f"a run folder or a built-in model's name are models too"
        )
    cfg = from_dict(predictor.meta["config"], source=str(path))
    return (
        predictor,
        cfg,
        {
            "path": str(path),
            "step": predictor.meta.get("step"),
            "train_digests": predictor.meta.get("train_digests") or [],
        },
    )
