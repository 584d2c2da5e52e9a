"""Segment and measure: load a trained model, score a fold's validation images, predict files.

Everything runs through :func:`biounet.inference.segment` at full resolution, so what is scored
is what ``predict`` writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .config import TrainConfig, from_dict
from .data.readers import IMAGE_SUFFIXES, SegmentationData, read_image_file, scale_image
from .errors import CheckpointError, ConfigError, DataError
from .fileio import atomic_write, atomic_write_text
from .inference import Predictor, segment
from .metrics import challenge_scores, dice_coeff, dice_coeff_388, hard_scores


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder means its best checkpoint (else last.pt); a file means itself."""
    from . import checkpoint as ckpt_io

    path = Path(path)
    if path.is_dir():
        for name in (ckpt_io.BEST, ckpt_io.LAST):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path} holds neither {ckpt_io.BEST} nor {ckpt_io.LAST}; pass a run folder or a .pt file")
    return path


def load_model(path: str | Path, device: str = "auto"):
    """(model in eval mode, its TrainConfig, the checkpoint dict) from a checkpoint or run folder."""
    from . import checkpoint as ckpt_io
    from .device import resolve_device
    from .engine import build_model

    ckpt = ckpt_io.load(resolve_checkpoint(path))
    cfg = from_dict(ckpt["config"], source=ckpt["path"])
    model = build_model(cfg)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{ckpt['path']}: its weights do not fit its own config ({str(exc)[:200]})") from None
    return model.to(resolve_device(device)).eval(), cfg, ckpt


def load_predictor(path: str | Path, device: str = "auto", precision: str = "auto"):
    """(predictor, TrainConfig, checkpoint) for a checkpoint or run folder, under ``precision``."""
    from .device import resolve_device, resolve_precision
    from .inference import torch_predictor

    model, cfg, ckpt = load_model(path, device)
    dev = resolve_device(device)
    return torch_predictor(model, dev, resolve_precision(precision, dev)), cfg, ckpt


def evaluate_images(predictor: Predictor, data: SegmentationData, indices: list[int], depth: int, padding: str,
                    tile: int | None = None, batch_size: int = 4, tta: bool = False,
                    progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Segment ``data`` images ``indices`` at full resolution and score them.

    Returns the report: means of ``dice_coeff``, ``dice_coeff_388``, ``pixel_mismatch`` and,
    for two classes, the challenge's ``pixel_error``, ``v_rand`` and ``v_info`` with their
    thresholds; ``per_image`` holds every image's values.
    """
    if data.masks is None:
        raise DataError("evaluation needs masks, but the dataset has none")
    if not indices:
        raise ConfigError("no images to evaluate: the fold's validation set is empty (--fold all has none)")
    per_image, cell_probs, masks = [], [], []
    for n, i in enumerate(indices):
        probs = segment(data.images[i], predictor, depth, padding, tile, batch_size, tta)
        mask = data.masks[i]
        hard = hard_scores(probs, mask)
        row = {"name": data.names[i], "index": i, "dice_coeff": dice_coeff(probs, mask),
               "pixel_mismatch": hard["pixel_mismatch"], "dice": hard["dice"], "iou": hard["iou"]}
        if not (mask < 0).any():
            row["dice_coeff_388"] = dice_coeff_388(probs, mask)
        per_image.append(row)
        if probs.shape[0] == 2:
            cell_probs.append(probs[1])
            masks.append(mask)
        if progress:
            progress(n + 1)
    report: dict[str, Any] = {"n_images": len(indices)}
    for key in ("dice_coeff", "dice_coeff_388", "pixel_mismatch"):
        values = [r[key] for r in per_image if key in r]
        if values:
            report[key] = float(np.mean(values))
    if masks:
        challenge = challenge_scores(cell_probs, masks)
        thresholds = {}
        for name in ("pixel_error", "v_rand", "v_info"):
            report[name] = challenge[name]
            thresholds[name] = challenge[f"{name}_threshold"]
            for row, value in zip(per_image, challenge[f"{name}_per_image"]):
                row[name] = value
        report["thresholds"] = thresholds
    report["per_image"] = per_image
    return report


def write_json_atomic(obj: Any, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def check_not_training_slices(ckpt: dict[str, Any], ckpt_cfg: TrainConfig, data: SegmentationData,
                              data_path: str | Path, scored: list[int]) -> None:
    """Refuse to score a model on images it was trained on.

    The checkpoint's fingerprints of its training images (``train_digests``) are compared with the
    scored images' content, so a copy of the data, another path to it or another working folder is
    caught too. Checkpoints written before fingerprints were stored fall back to comparing the data
    folder (resolved) and the split.
    """
    from .data.readers import image_digest
    from .data.split import kfold_split

    digests = set(ckpt.get("train_digests") or ())
    if digests:
        overlap = [i for i in scored if image_digest(data.images[i]) in digests]
    elif ckpt_cfg.data and Path(ckpt_cfg.data).resolve() == Path(data_path).resolve() and len(data) > 1:
        trained, _ = kfold_split(len(data), ckpt_cfg.fold, ckpt_cfg.folds)
        overlap = sorted(set(trained) & set(scored))
    else:
        return
    if overlap:
        names = [data.names[i] for i in overlap[:6]]
        raise ConfigError(
            f"{len(overlap)} of the {len(scored)} images to score were used to train the checkpoint (fold "
            f"{ckpt_cfg.fold!r} of {ckpt_cfg.data}): {', '.join(names)}{'...' if len(overlap) > 6 else ''}; "
            f"scores on training images are not validation scores. Evaluate the fold the model held out "
            f"({ckpt_cfg.fold}) or pass --allow-train-slices")


# --- predict ------------------------------------------------------------------------------------


def list_inputs(inputs: list[str]) -> list[Path]:
    """Files to segment: each input is an image file, a multi-page TIFF, or a folder of them.

    Outputs are named after the input's stem, so two inputs of one stem (``a/x.png b/x.png``,
    ``x.png x.tif``) are refused rather than one overwriting the other's outputs; a file given
    twice is segmented once.
    """
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"folder {p} holds no PNG or TIFF images")
            files.extend(found)
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                raise DataError(f"{p} is not a PNG or TIFF image")
            files.append(p)
        else:
            raise DataError(f"input {p} does not exist")
    unique: dict[Path, Path] = {}
    stems: dict[str, Path] = {}
    for f in files:
        key = f.resolve()
        if key in unique:
            continue
        if f.stem in stems:
            raise ConfigError(f"inputs {stems[f.stem]} and {f} would both write {f.stem}_*.tif into the output "
                              f"folder; segment them into separate --out folders, or rename one")
        unique[key], stems[f.stem] = f, f
    return list(unique.values())


def read_stack(path: Path, in_channels: int) -> np.ndarray:
    """(Z, C, H, W) float32 in [-1, 1] from an image file or a multi-page TIFF."""
    pixels = read_image_file(path)
    if pixels.ndim not in (2, 3, 4):
        raise DataError(f"{path} holds an array of shape {pixels.shape}; expected an image (H, W) or (H, W, C), "
                        f"or a stack of them (Z, H, W)")
    is_tiff = path.suffix.lower() in (".tif", ".tiff")
    colour = pixels.ndim == 3 and pixels.shape[-1] in (2, 3, 4) and pixels.shape[0] > 4
    single = not is_tiff or pixels.ndim == 2 or colour  # a PNG is one image; a TIFF may be a stack
    slices = [pixels] if single else list(pixels)
    return np.stack([scale_image(s, in_channels, f"{path.name} slice {z}") for z, s in enumerate(slices)])


def overlay(image: np.ndarray, membrane: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: the grey image with predicted membrane (probability > 0.5) in colour."""
    grey = ((image[0] + 1) * 127.5).clip(0, 255).astype(np.uint8)
    rgb = np.stack([grey] * 3, -1).astype(np.float32)
    on = membrane > 0.5
    rgb[on] = 0.45 * rgb[on] + 0.55 * np.array([255, 40, 160], np.float32)
    return rgb.astype(np.uint8)


def instance_labels(cell_prob: np.ndarray) -> np.ndarray:
    """uint32 cell instances: a watershed of the cell probability from its confident cores."""
    from scipy import ndimage
    from skimage.segmentation import watershed

    cells = cell_prob > 0.5
    cores, _ = ndimage.label(cell_prob > 0.9)
    labels = watershed(-cell_prob, cores, mask=cells)
    return labels.astype(np.uint32)


def predict_files(files: list[Path], predictor: Predictor, cfg: TrainConfig, out_dir: str | Path,
                  tile: int | None = None, batch_size: int = 4, tta: bool = False, labels: bool = False,
                  overlays: bool = False, log=print, progress: Callable[[int], None] | None = None) -> list[Path]:
    """Segment every file and write the outputs (atomically); returns the paths written."""
    import tifffile
    from PIL import Image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for f in files:
        stack = read_stack(f, cfg.in_channels)
        slices = []
        for img in stack:
            slices.append(segment(img, predictor, cfg.depth, cfg.padding, tile, batch_size, tta))
            if progress:
                progress(1)
        probs = np.stack(slices)
        outputs: dict[Path, Callable[[Path], None]] = {}
        if probs.shape[1] == 2:
            membrane = probs[:, 0]
            outputs[out_dir / f"{f.stem}_membrane.tif"] = lambda p, a=membrane: tifffile.imwrite(
                p, a.astype(np.float32), photometric="minisblack")
        else:
            outputs[out_dir / f"{f.stem}_probs.tif"] = lambda p, a=probs: tifffile.imwrite(
                p, a.astype(np.float32), photometric="minisblack")
        # two classes: the labels' convention (255 = cell, 0 = membrane), cut where membrane > 0.5
        hard = np.where(probs[:, 0] > 0.5, 0, 255) if probs.shape[1] == 2 else probs.argmax(1)
        outputs[out_dir / f"{f.stem}_mask.tif"] = lambda p, a=hard.astype(np.uint8): tifffile.imwrite(
            p, a, photometric="minisblack")
        if labels and probs.shape[1] == 2:
            inst = np.stack([instance_labels(p[1]) for p in probs])
            outputs[out_dir / f"{f.stem}_labels.tif"] = lambda p, a=inst: tifffile.imwrite(
                p, a, photometric="minisblack")
        if overlays and probs.shape[1] == 2:
            for z, (img, pr) in enumerate(zip(stack, probs)):
                name = f"{f.stem}_overlay.png" if len(stack) == 1 else f"{f.stem}_overlay_{z:03d}.png"
                outputs[out_dir / name] = lambda p, a=overlay(img, pr[0]): Image.fromarray(a).save(p, format="PNG")
        for path, write in outputs.items():
            atomic_write(path, write)
            written.append(path)
        log(f"{f}: {len(stack)} slice(s) -> {', '.join(p.name for p in outputs if 'overlay' not in p.name)}")
    return written


# --- score a probability map written by any tool ------------------------------------------------


def _read_score_stack(path: str | Path, what: str) -> np.ndarray:
    import tifffile

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} file {path} does not exist")
    try:
        stack = np.asarray(tifffile.imread(path))
    except Exception as exc:  # tifffile raises many kinds for a file that is not a TIFF
        raise DataError(f"{path} is not a readable TIFF ({type(exc).__name__}: {str(exc)[:120]})") from None
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3 or stack.size == 0:  # empty: a damaged strip tifffile could not decode
        raise DataError(f"{path}: expected a (Z, H, W) stack or one (H, W) image, got shape {stack.shape}")
    return stack


def score_files(labels: str | Path, probs: str | Path, indices: list[int] | None = None,
                polarity: str = "membrane") -> dict[str, Any]:
    """The ISBI 2012 challenge's scores of a probability TIFF written by any tool.

    labels: (Z, H, W) label TIFF, cell where the value is above 0 (ISBI: 255 cell, 0 membrane;
    0/1 works too), as the challenge's code binarises it. probs: (Z, H, W) float TIFF of
    probabilities in [0, 1] (uint8 is read as value / 255); ``polarity`` "membrane" (1 =
    membrane, what ``biounet predict`` writes, scored as the cell map 1 - p) or "cell" (1 = cell,
    the labels' polarity). ``indices`` picks slices (default all). Returns the report of
    :func:`biounet.metrics.challenge_scores`: pixel_error, v_rand, v_info, their thresholds,
    the value at every threshold and per slice.
    """
    if polarity not in ("membrane", "cell"):
        raise ConfigError(f"polarity must be 'membrane' or 'cell', got {polarity!r}")
    lab = _read_score_stack(labels, "labels")
    prob = _read_score_stack(probs, "probabilities")
    if lab.shape != prob.shape:
        raise DataError(f"{probs} has shape {prob.shape} but the labels {labels} have {lab.shape}: "
                        f"expected the same (Z, H, W)")
    if prob.dtype == np.uint8:
        prob = prob.astype(np.float32) / np.float32(255)
    elif np.issubdtype(prob.dtype, np.floating):
        prob = prob.astype(np.float32)
        if not np.isfinite(prob).all() or prob.min() < 0 or prob.max() > 1:
            raise DataError(f"{probs}: probabilities must be finite and within [0, 1], found "
                            f"{float(np.nanmin(prob)):.4g}..{float(np.nanmax(prob)):.4g}")
    else:
        raise DataError(f"{probs}: expected float32/float64 probabilities or uint8 (0..255), got {prob.dtype}")
    chosen = list(range(len(lab))) if indices is None else list(indices)
    bad = [i for i in chosen if not 0 <= i < len(lab)]
    if bad or not chosen:
        raise ConfigError(f"indices must name slices 0..{len(lab) - 1} of {labels}, got {bad or chosen}")
    cells = [(np.float32(1) - prob[i]) if polarity == "membrane" else prob[i] for i in chosen]
    masks = [(lab[i] > 0).astype(np.int64) for i in chosen]
    scores = challenge_scores(cells, masks)
    report: dict[str, Any] = {"labels": str(labels), "probabilities": str(probs), "polarity": polarity,
                              "indices": chosen, "n_images": len(chosen)}
    per_image: list[dict[str, Any]] = [{"index": i} for i in chosen]
    for name in ("pixel_error", "v_rand", "v_info"):
        report[name] = scores[name]
        report.setdefault("thresholds", {})[name] = scores[f"{name}_threshold"]
        report.setdefault("per_threshold", {})[name] = scores[f"{name}_per_threshold"]
        for row, value in zip(per_image, scores[f"{name}_per_image"]):
            row[name] = value
    report["threshold_values"] = scores["thresholds"]
    report["per_image"] = per_image
    return report
