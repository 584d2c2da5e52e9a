"""Measure: score a fold's held-out images, refuse training images, score a probability TIFF.

Everything runs through :func:`biounet.segment.inference.segment` at full resolution, so what is scored
is what ``predict`` (predict.py) writes. No PyTorch: the predictor may be an exported model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from biounet.core.config import TrainConfig
from biounet.core.errors import ConfigError, DataError
from biounet.data.readers import SegmentationData, image_digest, read_image_file
from biounet.data.split import kfold_split
from biounet.evaluation.challenge import SPLIT_MERGE, challenge_scores, truth_segmentation
from biounet.evaluation.metrics import (
    CHALLENGE_METRICS,
    IMAGE_METRICS,
    class_scores,
    dice_coeff,
    dice_coeff_388,
    hard_scores,
    mean_class_scores,
)
from biounet.instances.methods import check_inputs, instance_labels, method_params, needs_affinities
from biounet.instances.scoring import boundary_map, object_scores
from biounet.segment.inference import Predictor
from biounet.segment.predict import segment_outputs


def evaluate_images(
    predictor: Predictor,
    data: SegmentationData,
    indices: list[int],
    depth: int,
    padding: str,
    tile: int | None = None,
    batch_size: int = 4,
    tta: bool = False,
    progress: Callable[[int], None] | None = None,
    labels: Sequence[str] | None = None,
    label_params: Mapping[str, Mapping[str, Any]] | None = None,
    cell_probs_out: list[np.ndarray] | None = None,
    *,
    num_classes: int = 2,
    offsets: Sequence[Sequence[int]] = (),
    affinities_out: list[np.ndarray] | None = None,
) -> dict[str, Any]:
    """Segment ``data`` images ``indices`` at full resolution and score them (a lazy dataset's slices are read
    one at a time; the cell probabilities of every scored image are kept for the challenge's measures).

    Returns the report: means of ``dice_coeff``, ``dice_coeff_388``, ``pixel_mismatch`` and,
    for two classes, the challenge's ``pixel_error``, ``v_rand`` and ``v_info`` with their
    thresholds; ``per_class``, by class index, the means of every image's per-class dice, IoU, precision and
    recall over its labelled pixels (metrics.class_scores); ``per_image`` holds every image's values.
    ``labels`` (instance methods, each with its ``label_params[method]``) adds ``instances``: per method the
    scores of :func:`score_instances`.
    A model that predicts affinities after its ``num_classes`` classes passes their ``offsets``: the
    classes are scored, the affinities feed the methods that read them (and ``affinities_out``).
    """
    if data.masks is None:
        raise DataError("evaluation needs masks, but the dataset has none")
    if not indices:
        raise ConfigError("no images to evaluate: the fold's validation set is empty (--fold all has none)")
    check_inputs(labels or [], offsets)
    run: dict[str, Any] = {"depth": depth, "padding": padding, "tile": tile, "batch_size": batch_size, "tta": tta}
    seg = partial(segment_outputs, predictor=predictor, num_classes=num_classes, offsets=offsets, **run)
    keep_affinities = affinities_out is not None or any(needs_affinities(m) for m in labels or [])
    per_image, cell_probs, masks, affinities = _segment_all(seg, data, indices, keep_affinities, progress)
    report: dict[str, Any] = {"n_images": len(indices)}
    for key in IMAGE_METRICS:
        values = [r[key] for r in per_image if key in r]
        if values:
            report[key] = float(np.mean(values))
    report["per_class"] = mean_class_scores([r["per_class"] for r in per_image])
    if masks:
        _add_challenge_scores(report, per_image, cell_probs, masks)
    if masks and labels:
        params = label_params or {}
        report["instances"] = {
            m: score_instances(cell_probs, masks, m, params.get(m, {}), affinities or None, offsets) for m in labels
        }
    if cell_probs_out is not None:  # for a caller that scores them again (cv --labels)
        cell_probs_out.extend(cell_probs)
    if affinities_out is not None:
        affinities_out.extend(affinities)
    report["per_image"] = per_image
    return report


def _segment_all(
    seg: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]],
    data: SegmentationData,
    indices: list[int],
    keep_affinities: bool,
    progress: Callable[[int], None] | None,
) -> tuple[list[dict[str, Any]], list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Every image segmented by ``seg`` and scored: (rows of the report, and for two classes the cell
    probabilities, masks and, when kept, affinities)."""
    per_image: list[dict[str, Any]] = []
    cell_probs: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    affinities: list[np.ndarray] = []
    assert data.masks is not None
    for n, i in enumerate(indices):
        probs, aff = seg(data.images[i])
        mask = data.masks[i]
        per_image.append(_image_scores(data.names[i], i, probs, mask))
        if probs.shape[0] == 2:
            cell_probs.append(probs[1].copy())  # not a view that would keep every class's map alive
            masks.append(mask)
            if aff is not None and keep_affinities:
                affinities.append(aff)
        if progress:
            progress(n + 1)
    return per_image, cell_probs, masks, affinities


def _image_scores(name: str, index: int, probs: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """One image's row of the report; ``dice_coeff_388`` only for a mask without ignored pixels."""
    hard = hard_scores(probs, mask)
    row = {
        "name": name,
        "index": index,
        "dice_coeff": dice_coeff(probs, mask),
        "pixel_mismatch": hard["pixel_mismatch"],
        "dice": hard["dice"],
        "iou": hard["iou"],
        "per_class": class_scores(probs, mask),
    }
    if not (mask < 0).any():
        row["dice_coeff_388"] = dice_coeff_388(probs, mask)
    return row


def _add_challenge_scores(
    report: dict[str, Any], per_image: list[dict[str, Any]], cell_probs: list[np.ndarray], masks: list[np.ndarray]
) -> None:
    """The challenge's measures of the stack into ``report`` (with their thresholds) and each image's
    values into its row of ``per_image``."""
    challenge = challenge_scores(cell_probs, masks)
    thresholds = {}
    for name in CHALLENGE_METRICS:
        report[name] = challenge[name]
        thresholds[name] = challenge[f"{name}_threshold"]
        for row, value in zip(per_image, challenge[f"{name}_per_image"]):
            row[name] = value
    report["thresholds"] = thresholds


def score_instances(
    cell_probs: list[np.ndarray],
    masks: list[np.ndarray],
    method: str,
    params: Mapping[str, Any],
    affinities: list[np.ndarray] | None = None,
    offsets: Sequence[Sequence[int]] = (),
) -> dict[str, Any]:
    """The challenge's measures of instance maps made by ``method``: each map's one-pixel boundary map
    (:func:`biounet.instances.scoring.boundary_map`) is the proposal, scored at one threshold (an instance
    map has no threshold to sweep); per image and the mean, with the split and merge parts of V_rand and
    V_info per image (``v_rand_split_per_image``, ...). A method that reads affinities takes image k's
    from ``affinities[k]`` (channels of ``offsets``). ``objects`` adds object-level scores (matched
    F1 at IoU 0.5, mean IoU of the matched objects, foreground IoU), means over the images."""
    check_inputs([method], offsets if affinities else ())
    maps = [
        instance_labels(p, method, affinities=affinities[k] if affinities else None, offsets=offsets, **params)
        for k, p in enumerate(cell_probs)
    ]
    cells = [1.0 - boundary_map(m).astype(np.float32) for m in maps]
    scores = challenge_scores(cells, masks, thresholds=(0.5,), parts=True)
    out: dict[str, Any] = {"method": method, "params": method_params(method, **params)}
    for name in CHALLENGE_METRICS:
        out[name] = scores[name]
        out[f"{name}_per_image"] = scores[f"{name}_per_image"]
    for name in SPLIT_MERGE:
        out[f"{name}_per_image"] = scores[f"{name}_per_image"]
    if method == "objects":
        rows = [object_scores(m, truth_segmentation(mask == 1)) for m, mask in zip(maps, masks)]
        for key in ("f1", "matched_iou", "foreground_iou"):
            out[f"object_{key}"] = float(np.mean([r[key] for r in rows]))
    return out


def untrained_indices(ckpt: dict[str, Any], data: SegmentationData, indices: list[int]) -> list[int]:
    """``indices`` without the images the checkpoint was trained on (by content fingerprint), saying
    how many were left out; all of them when the checkpoint stores no fingerprints (the caller's
    :func:`check_not_training_slices` then applies its older rule)."""
    digests = set(ckpt.get("train_digests") or ())
    if not digests:
        return indices
    kept = [i for i in indices if image_digest(data.images[i]) not in digests]
    if len(kept) < len(indices):
        print(f"left out {len(indices) - len(kept)} image(s) the model was trained on; scoring {len(kept)}")
    if not kept:
        raise ConfigError("every image of --data was used to train the checkpoint: there is nothing to validate on")
    return kept


def check_not_training_slices(
    ckpt: dict[str, Any], ckpt_cfg: TrainConfig, data: SegmentationData, data_path: str | Path, scored: list[int]
) -> None:
    """Refuse to score a model on images it was trained on.

    The checkpoint's fingerprints of its training images (``train_digests``) are compared with the
    scored images' content (read one by one), so a copy of the data, another path to it, another
    working folder or the same slices in another format (a volume) is caught too. Checkpoints written
    before fingerprints were stored fall back to comparing the data folder (resolved) and the split.
    """
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
            f"({ckpt_cfg.fold}) or pass --allow-train-slices"
        )


# --- score a probability map written by any tool ------------------------------------------------


def _read_score_stack(path: str | Path, what: str) -> np.ndarray:
    """A (Z, H, W) stack, read as every image is (header checked against memory, damage refused)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} file {path} does not exist")
    stack = read_image_file(path)
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3 or stack.size == 0:  # empty: a damaged strip tifffile could not decode
        raise DataError(f"{path}: expected a (Z, H, W) stack or one (H, W) image, got shape {stack.shape}")
    return stack


def score_files(
    labels: str | Path, probs: str | Path, indices: list[int] | None = None, polarity: str = "membrane"
) -> dict[str, Any]:
    """The ISBI 2012 challenge's scores of a probability TIFF written by any tool.

    labels: (Z, H, W) label TIFF, cell where the value is above 0 (ISBI: 255 cell, 0 membrane;
    0/1 works too), as the challenge's code binarises it. probs: (Z, H, W) float TIFF of
    probabilities in [0, 1] (uint8 is read as value / 255); ``polarity`` "membrane" (1 =
    membrane, what ``biounet predict`` writes, scored as the cell map 1 - p) or "cell" (1 = cell,
    the labels' polarity). ``indices`` picks slices (default all). Returns the report of
    :func:`biounet.evaluation.challenge.challenge_scores`: pixel_error, v_rand, v_info, their thresholds,
    the value at every threshold and per slice.
    """
    if polarity not in ("membrane", "cell"):
        raise ConfigError(f"polarity must be 'membrane' or 'cell', got {polarity!r}")
    lab = _read_score_stack(labels, "labels")
    prob = _read_score_stack(probs, "probabilities")
    if lab.shape != prob.shape:
        raise DataError(
            f"{probs} has shape {prob.shape} but the labels {labels} have {lab.shape}: expected the same (Z, H, W)"
        )
    if prob.dtype == np.uint8:
        prob = prob.astype(np.float32) / np.float32(255)
    elif np.issubdtype(prob.dtype, np.floating):
        prob = prob.astype(np.float32)
        if not np.isfinite(prob).all() or prob.min() < 0 or prob.max() > 1:
            raise DataError(
                f"{probs}: probabilities must be finite and within [0, 1], found "
                f"{float(np.nanmin(prob)):.4g}..{float(np.nanmax(prob)):.4g}"
            )
    else:
        raise DataError(f"{probs}: expected float32/float64 probabilities or uint8 (0..255), got {prob.dtype}")
    chosen = list(range(len(lab))) if indices is None else list(indices)
    bad = [i for i in chosen if not 0 <= i < len(lab)]
    if bad or not chosen:
        raise ConfigError(f"indices must name slices 0..{len(lab) - 1} of {labels}, got {bad or chosen}")
    cells = [(np.float32(1) - prob[i]) if polarity == "membrane" else prob[i] for i in chosen]
    masks = [(lab[i] > 0).astype(np.int64) for i in chosen]
    scores = challenge_scores(cells, masks)
    report: dict[str, Any] = {
        "labels": str(labels),
        "probabilities": str(probs),
        "polarity": polarity,
        "indices": chosen,
        "n_images": len(chosen),
    }
    per_image: list[dict[str, Any]] = [{"index": i} for i in chosen]
    for name in CHALLENGE_METRICS:
        report[name] = scores[name]
        report.setdefault("thresholds", {})[name] = scores[f"{name}_threshold"]
        report.setdefault("per_threshold", {})[name] = scores[f"{name}_per_threshold"]
        for row, value in zip(per_image, scores[f"{name}_per_image"]):
            row[name] = value
    report["threshold_values"] = scores["thresholds"]
    report["per_image"] = per_image
    return report
