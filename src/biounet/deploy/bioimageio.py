"""bioimage.io model packages (model description format 0.5, as bioimageio.spec 0.5.12 validates it):
written from a checkpoint or a built-in model by ``biounet export --format bioimageio``, and run by
``predict``/``evaluate --model PACKAGE.zip`` when biounet wrote them.

A package is a zip of ``rdf.yaml`` and the files it names, each with its sha256:

- ``weights.pt``: the float32 state dict (``pytorch_state_dict``) of ``UNet`` in ``unet.py``, built
  with the kwargs in rdf.yaml. ``unet.py`` is biounet's model source (the classes of
  ``biounet/model.py`` and the size checks of ``biounet/geometry.py``) made standalone, so that
  bioimage.io software runs the package without biounet installed.
- ``weights.onnx``: the same network as ``biounet export --format onnx`` writes it.
- ``test_input.npy`` (uint8, (1, C, N, N)) and ``test_output.npy`` (float32 class probabilities),
  computed by biounet's predictor at export time; ``cover.png`` (the test input beside it with the
  predicted membrane); ``README.md``.

The input is declared uint8, preprocessed by ``ensure_dtype`` float32 and ``scale_linear`` (gain
2/255, offset -1): biounet's scaling of 8-bit images (:func:`biounet.data.readers.scale_image`). The
network returns logits; the postprocessing ``softmax`` over the channels gives the probabilities
biounet reports. A valid-padding network's output is ``2 * margin`` smaller than its input on each
side (a size reference with a negative offset: the network crops its halo itself); a same-padding
one's has the input's size and a halo for stitched tiles.

What rdf.yaml says, and opening a package (:func:`biounet.deploy.bioimageio_rdf.open_package`), are in
:mod:`biounet.deploy.bioimageio_rdf`. docs/bioimageio.md has the choices and the measurements.
"""

from __future__ import annotations

import re
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from biounet.core.config import TrainConfig
from biounet.core.errors import ConfigError, DataError
from biounet.deploy.bioimageio_rdf import (
    ARCH,
    COVER,
    INPUT_ID,
    ISBI_TERMS,
    ONNX,
    OUTPUT_ID,
    PACKAGE_FORMAT,
    RDF_NAME,
    README,
    SAMPLE_INPUT,
    SAMPLE_OUTPUT,
    STATE,
    TEST_INPUT,
    TEST_OUTPUT,
    input_sides,
    output_id,
    rdf_content,
    same_padding_halo,
    trained_on_isbi,
)
from biounet.io.fileio import atomic_write, write_png

TEST_OUTPUT_SIDE = 256  # the test output's side (at least): large enough for a readable cover

_ARCH_HEADER = '''"""biounet's U-Net (biounet {version}), standalone: the network classes of biounet/model.py and the
size checks of biounet/geometry.py, written by `biounet export --format bioimageio` so that this
package runs without biounet. Input (N, C, H, W) float32 scaled to [-1, 1]; output (N, K, H', W')
class scores (logits)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Padding = Literal["valid", "same"]
CONV_LOSS = {conv_loss}


class ConfigError(ValueError):
    """A size or an option this network cannot take."""
'''


def architecture_source() -> str:
    """The standalone source of biounet's U-Net (``unet.py`` of a package): no biounet import."""
    import inspect

    from biounet import __version__
    from biounet.model import geometry
    from biounet.model import unet as model

    parts = [
        inspect.getsource(obj)
        for obj in (
            geometry.output_or_none,
            geometry.valid_sizes_near,
            geometry.output_size,
            geometry.valid_margin,
            geometry.check_input_size,
            model.DoubleConv,
            model.Down,
            model.Up,
            model.UNet,
        )
    ]
    return "\n\n".join([_ARCH_HEADER.format(version=__version__, conv_loss=geometry.CONV_LOSS)] + parts)


def _sample_channels(pixels: np.ndarray, in_channels: int, sample: str | Path) -> np.ndarray:
    """(C, H, W) of a sample image: grey (H, W); a grey stack (Z, H, W) or a colour stack (Z, H, W, C):
    its first slice; colour (H, W, C), an alpha channel dropped. A colour image for a grey model (or
    the reverse) is refused: its channels are not the model's."""
    from biounet.data.readers import is_channels_last

    if (pixels.ndim == 3 and not is_channels_last(pixels)) or (pixels.ndim == 4 and is_channels_last(pixels[0])):
        pixels = pixels[0]  # the first slice of a stack
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    elif not is_channels_last(pixels):
        raise DataError(
            f"--sample-image {sample}: pixels of shape {pixels.shape}; give one 8-bit image: grey (H, W), "
            f"RGB (H, W, 3) or a stack of either"
        )
    if pixels.shape[-1] in (2, 4) and pixels.shape[-1] != in_channels:
        pixels = pixels[..., :-1]  # grey + alpha, RGBA: the colours
    channels = pixels.shape[-1]
    if channels != in_channels:
        have = "a greyscale" if channels == 1 else "an RGB" if channels == 3 else f"a {channels}-channel"
        fix = (
            "give a greyscale 8-bit image (Fiji: Image > Type > 8-bit)"
            if in_channels == 1
            else "give an RGB image (Fiji: Image > Type > RGB Color)"
            if in_channels == 3
            else f"give an image of {in_channels} channels"
        )
        raise DataError(f"--sample-image {sample} is {have} image; the model takes {in_channels} channel(s): {fix}")
    return np.moveaxis(pixels, -1, 0)


def _test_pixels(cfg: TrainConfig, side: int, sample: str | Path | None) -> np.ndarray:
    """(C, side, side) uint8: the centre of ``sample``'s first slice, or a synthetic EM-like image."""
    from biounet.data.readers import read_image_file

    if sample is None:
        from biounet.data.synthetic import synthetic_em_image

        grey, _ = synthetic_em_image(np.random.default_rng(0), size=side)
        return np.repeat(grey[None], cfg.in_channels, axis=0)  # with --context, one section: sample_tensors
    pixels = _sample_channels(read_image_file(sample), cfg.in_channels, sample)
    if pixels.dtype != np.uint8:
        raise DataError(
            f"--sample-image {sample}: {pixels.dtype} pixels; the package declares uint8 input: give an 8-bit image"
        )
    h, w = pixels.shape[1:]
    if min(h, w) < side:
        raise DataError(f"--sample-image {sample} is {h}x{w}; the test input needs {side}x{side}: give a larger image")
    y, x = (h - side) // 2, (w - side) // 2
    return np.ascontiguousarray(pixels[:, y : y + side, x : x + side])


def sample_tensors(model: Any, cfg: TrainConfig, sample: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(input uint8 (1, C, N, N), output float32 (1, K, N', N') class probabilities) of the network
    on a test image, computed by biounet's predictor in float32. A network with affinity channels gives
    its raw scores (the package's output is not postprocessed); one with --context takes the test
    image as every section (a stack of one section, repeated)."""
    from biounet.data.readers import scale_image
    from biounet.model.geometry import valid_input_size
    from biounet.segment.inference import torch_predictor
    from biounet.segment.tiling import softmax

    step = 2**cfg.depth
    if cfg.padding == "valid":
        side = valid_input_size(TEST_OUTPUT_SIDE, cfg.depth, exact=False)
    else:
        side = -(-TEST_OUTPUT_SIDE // step) * step
    pixels = _test_pixels(cfg, side, sample)
    image = scale_image(np.moveaxis(pixels, 0, -1) if cfg.in_channels > 1 else pixels[0], cfg.in_channels)
    sections = 2 * cfg.context + 1
    pixels, image = np.concatenate([pixels] * sections), np.concatenate([image] * sections)
    logits = torch_predictor(model, "cpu", "fp32")(image[None])
    out = softmax(logits, axis=1) if cfg.affinities == "none" else logits
    return pixels[None], np.ascontiguousarray(out, dtype=np.float32)


def cover_png(test_input: np.ndarray, test_output: np.ndarray, path: Path, cfg: TrainConfig | None = None) -> None:
    """A 2:1 PNG: the test input (cropped to the output) beside it with the predicted class 0 in colour
    (``cfg``: the network's, for one with --context or affinity channels: the middle section, the classes'
    softmax)."""
    from biounet.segment.predict import overlay
    from biounet.segment.tiling import softmax

    if cfg is not None:
        first = cfg.context * cfg.in_channels  # the middle section's channels
        test_input = test_input[:, first : first + cfg.in_channels]
        if cfg.affinities != "none":
            test_output = softmax(test_output[:, : cfg.classes], axis=1)
    pixels = test_input[0].astype(np.float32)
    m = (pixels.shape[-1] - test_output.shape[-1]) // 2
    pixels = pixels[:, m : pixels.shape[1] - m, m : pixels.shape[2] - m]
    scaled = pixels / 127.5 - 1.0  # overlay takes the network's input scaling
    grey = np.repeat(pixels[:1].astype(np.uint8)[..., None], 3, axis=-1)[0]
    write_png(path, np.concatenate([grey, overlay(scaled, test_output[0, 0])], axis=1))


def _readme(about: dict[str, Any], cfg: TrainConfig, meta: dict[str, Any]) -> str:
    """The package's documentation (README.md), with the Validation section bioimage.io asks for."""
    from biounet import __version__

    scores = about.get("scores")
    if scores:
        validation = (
            "The same recipe, trained per fold of the reference's 5-fold split and scored on the held-out slices "
            "with the ISBI 2012 challenge's measures (test-time augmentation, float32; mean of 5 folds): "
            + ", ".join(f"{k} {v}" for k, v in scores.items())
            + "."
        )
    else:
        validation = f"Score this checkpoint's held-out fold ({cfg.fold}) with `biounet evaluate`."
    margin = meta["contract"]["margin"]
    if margin:
        size = f"{2 * margin} pixels smaller than the input on each axis (valid padding: no halo to crop)"
    else:
        size = (
            f"the input's size, with a halo of {same_padding_halo(cfg.depth)} pixels (same padding: software "
            "that stitches tiles drops that border of each tile)"
        )
    smallest, step = input_sides(cfg)  # rdf.yaml's: for same padding, larger than the two halos
    sides = (
        f"{smallest} + {step}·k pixels (k = 0, 1, ...: {', '.join(str(smallest + step * j) for j in range(3))}, ...)"
    )
    onnx = f", and `{ONNX}`, the same network as `biounet export --format onnx` writes it" if about["onnx"] else ""
    terms = ISBI_TERMS if about["isbi"] else "The weights are under the MIT license, as the code."
    return f"""# {about["name"]}

{about["description"]}

Written by biounet {__version__} (`biounet export --format bioimageio`) from `{meta["source"]}`, step {meta["step"]}.

## Inputs and outputs

- `{INPUT_ID}`: (batch, channel, y, x) uint8, scaled to [-1, 1] by the preprocessing (x / 127.5 - 1) as
  biounet scales 8-bit images; y and x of {sides}{_input_channels(cfg)}.
{_output_line(cfg, size)}
- Weights: `{STATE}`, the float32 state dict of `UNet` in `{ARCH}` (biounet's model source made
  standalone){onnx}.

## Validation

{validation}

`bioimageio test PACKAGE.zip` checks that both weight formats reproduce the test output. On your own labelled
images: `biounet evaluate --model PACKAGE.zip --data FOLDER --fold none` (a folder of image/mask pairs), or
`biounet score LABELS.tif PROBS.tif` (the challenge's measures of any probability map).

## License and terms

Code (including `{ARCH}`): MIT. {terms}
"""


def _input_channels(cfg: TrainConfig) -> str:
    if not cfg.context:
        return ""
    return (
        f"; its {2 * cfg.context + 1} sections z - {cfg.context} .. z + {cfg.context} of a stack as channels, "
        f"{cfg.in_channels} each, in that order (mirrored at the stack's ends)"
    )


def _output_line(cfg: TrainConfig, size: str) -> str:
    """The README's line on the output: class probabilities, or the scores of classes and affinities."""
    from biounet.data.affinities import offsets_for

    classes = "class 0 membrane (background), class 1 cell (foreground)" if cfg.classes == 2 else "one per class"
    offsets = offsets_for(cfg.affinities)
    if not offsets:
        return (
            f"- `{OUTPUT_ID}`: (batch, channel, y, x) float32, {cfg.classes} channels ({classes}): the softmax of\n"
            f"  the network's scores (the postprocessing); {size}."
        )
    listed = ", ".join(f"({dy}, {dx})" for dy, dx in offsets)
    return (
        f"- `{output_id(cfg)}`: (batch, channel, y, x) float32, the network's scores, not postprocessed (one softmax "
        f"over every channel would mix two kinds): {cfg.classes} class scores ({classes}; their softmax gives the "
        f"class probabilities), then {len(offsets)} affinity scores, channel {cfg.classes} + j for offset j of "
        f"{listed} (dy, dx): the sigmoid of channel {cfg.classes} + j at (y, x) is the probability that pixels "
        f"(y, x) and (y + dy, x + dx) lie in the same cell; {size}."
    )


def write_package(
    checkpoint: str | Path,
    out: str | Path,
    opset: int | None = 18,
    sample: str | Path | None = None,
    authors: Sequence[str] = (),
) -> Path:
    """Write a bioimage.io package of ``checkpoint`` (a .pt file, run folder or built-in model name)
    to ``out`` (.zip), atomically. ``opset``: of the ONNX weights (None: none, no onnx package
    needed); ``sample``: an 8-bit image whose centre is the test input (default: synthetic)."""
    from biounet.deploy.export import contract
    from biounet.model.checkpoint import load_model
    from biounet.model.pretrained import builtin_models, builtin_path, is_builtin
    from biounet.model.unet import count_parameters

    out = Path(out)
    if out.suffix != ".zip":
        raise ConfigError(f"--out {out}: a bioimage.io package is a .zip file; name it {out.with_suffix('.zip').name}")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a file name")
    builtin = str(checkpoint) if is_builtin(str(checkpoint)) else None
    path = builtin_path(builtin) if builtin else Path(checkpoint)
    model, cfg, ckpt = load_model(path, "cpu")
    model = model.float().eval()  # a built-in model stores float16: the package holds float32
    info = builtin_models()[builtin] if builtin else {}
    stem = builtin or (Path(ckpt["path"]).parent.name + "-" + Path(ckpt["path"]).stem)
    isbi = trained_on_isbi(cfg, builtin)
    description = info.get("description") or (
        f"biounet U-Net for 2D segmentation: {cfg.in_channels} channel(s) in, {cfg.classes} classes out, "
        + (f"{cfg.context} section(s) of context on each side, " if cfg.context else "")
        + (f"affinities ({cfg.affinities}), " if cfg.affinities != "none" else "")
        + f"trained {ckpt['step']} steps."
    )
    about = {
        "name": re.sub(r"[^A-Za-z0-9_+() -]", "-", f"biounet U-Net {stem}")[:64],  # the characters the spec admits
        "description": description
        + (" Weights for non-commercial use (ISBI 2012 data terms; README)." if isbi else ""),
        "authors": list(authors) or (["biounet developers"] if builtin else ["unknown"]),
        "isbi": isbi,
        "parameters": count_parameters(model),
        "scores": info.get("recipe_scores", {}).get("five_fold_mean"),
        "onnx": opset is not None,
    }
    meta = {
        "format": PACKAGE_FORMAT,
        "source": builtin or str(ckpt["path"]),
        "step": ckpt["step"],
        "train_digests": list(ckpt.get("train_digests") or []),
        "contract": contract(cfg),
    }
    with tempfile.TemporaryDirectory(prefix="biounet-bioimageio-") as tmp:
        _write_files(Path(tmp), model, cfg, path, opset, sample)
        (Path(tmp) / README).write_text(_readme(about, cfg, meta), encoding="utf-8")
        rdf = rdf_content(Path(tmp), cfg, about, meta, opset)
        (Path(tmp) / RDF_NAME).write_text(yaml.safe_dump(rdf, sort_keys=False, allow_unicode=True), encoding="utf-8")
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, lambda p: _zip(Path(tmp), p))
    return out


def _write_files(folder: Path, model: Any, cfg: TrainConfig, checkpoint: Path, opset: int | None, sample: Any) -> None:
    """The package's files but README.md and rdf.yaml, into ``folder``."""
    import tifffile
    import torch

    from biounet.deploy.export import export_model

    test_input, test_output = sample_tensors(model, cfg, sample)  # first: a bad --sample-image fails fast
    (folder / ARCH).write_text(architecture_source(), encoding="utf-8")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, folder / STATE)
    if opset is not None:
        export_model(checkpoint, "onnx", folder / ONNX, opset)
    np.save(folder / TEST_INPUT, test_input)
    np.save(folder / TEST_OUTPUT, test_output)
    tifffile.imwrite(folder / SAMPLE_INPUT, test_input[0, 0] if test_input.shape[1] == 1 else test_input[0])
    tifffile.imwrite(folder / SAMPLE_OUTPUT, test_output[0])
    cover_png(test_input, test_output, folder / COVER, cfg)


def _zip(folder: Path, target: Path) -> None:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(p.name for p in folder.iterdir()):
            zf.write(folder / name, name)
