"""``biounet cv``: train and evaluate the folds in turn, resumable fold by fold.

Each fold trains into ``OUT/fold-K`` (an interrupted fold resumes, a finished one is kept) and is
scored on its held-out images with its final weights (``last.pt``: choosing ``best.pt`` on the
same images would flatter the score), with test-time augmentation when the recipe sets ``val_tta``.
``cv.json`` holds every report; ``cv.md`` a table of every metric per fold with mean and
standard deviation.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from biounet.core.config import TrainConfig
from biounet.core.errors import ConfigError
from biounet.evaluation.metrics import REPORTED_METRICS as METRICS
from biounet.evaluation.selection import HeldOut
from biounet.io.fileio import atomic_write, atomic_write_text, write_json, write_png
from biounet.model import checkpoint as ckpt_io

# heldout.npz: one array per slice beside the key: the cell probabilities p00000, ..., and for a model that
# predicts affinities its (C, H, W) affinities a00000, ... (their offsets in the key)
HELDOUT_FORMAT = 2


def parse_folds(text: str, folds: int) -> list[str]:
    """'0,1,2' -> ['0', '1', '2'], each checked against the number of folds."""
    out = [t.strip() for t in text.split(",") if t.strip()]
    if not out or any(not t.isdigit() or not 0 <= int(t) < folds for t in out):
        raise ConfigError(f"--fold takes a comma-separated list of folds 0..{folds - 1}, got {text!r}")
    return out


def run_cv(
    cfg: TrainConfig,
    explicit: dict[str, Any],
    fold_list: list[str],
    out: str | Path,
    log: Callable[[str], object] = print,
    labels: list[str] | None = None,
) -> dict[str, Any]:
    """Train (or resume) and evaluate every fold of ``fold_list``; writes cv.json and cv.md. With
    ``labels`` (instance methods), also per method cv-labels-METHOD.json and .md (the method with
    parameters chosen on the other folds, :mod:`biounet.evaluation.selection`) and cv-labels-METHOD-worst.png
    (its worst slice beside the truth), and cv-labels.md (every method against the baselines)."""
    from biounet.data import kfold_split, open_dataset

    if not cfg.data:
        raise ConfigError(
            "--data is required: the ISBI 2012 folder, a folder with images/ and masks/, or an image volume with "
            "its label volume in --masks"
        )
    if labels:  # before any fold trains: a method that reads affinities needs a recipe that predicts them
        from biounet.data.affinities import offsets_for
        from biounet.instances.methods import check_inputs

        check_inputs(labels, offsets_for(cfg.affinities))
    out = Path(out)
    # one dataset for every fold (a volume pair is read lazily: its label volume is scanned once, here)
    data = open_dataset(cfg.data, masks=cfg.masks, **cfg.mask_reading())
    reports = {}
    heldout: dict[str, HeldOut] = {}
    for fold in fold_list:
        run = out / f"fold-{fold}"
        last = _train_fold(cfg, explicit, fold, run, data, log)
        _, val = kfold_split(len(data), fold, cfg.folds)
        report, held = _evaluate_fold(cfg, fold, last, data, val)
        if labels and data.masks is not None:  # only then: the images of a lazy volume stay on disk
            heldout[fold] = replace(held, masks=[data.masks[i] for i in val], images=[data.images[i] for i in val])
        reports[fold] = report
        log(f"fold {fold}: " + "  ".join(f"{k} {report[k]:.4f}" for k in METRICS if k in report))
    summary: dict[str, Any] = {
        "folds": reports,
        "tta": cfg.val_tta,
        "mean": {},
        "std": {},
        **{k: sorted({r[k] for r in reports.values()}) for k in ("device", "precision")},
    }
    for key in METRICS:
        values = [r[key] for r in reports.values() if key in r]
        if values:
            summary["mean"][key] = float(np.mean(values))
            summary["std"][key] = float(np.std(values))
    write_json(summary, out / "cv.json")
    atomic_write_text(out / "cv.md", cv_table(summary))
    log(f"wrote {out / 'cv.json'} and {out / 'cv.md'}")
    if labels:
        summary["labels"] = _score_instances(heldout, labels, out, log)
    return summary


def _score_instances(
    heldout: dict[str, HeldOut], methods: list[str], out: Path, log: Callable[[str], object]
) -> dict[str, Any]:
    """Every method's honest selection on the held-out slices, its files, and the summary table."""
    from biounet.evaluation.selection import select_and_score, selection_table, summary_table, worst_slice

    chosen = {}
    for method in methods:
        reports = select_and_score(heldout, method, log)
        write_json(reports, out / f"cv-labels-{method}.json")
        atomic_write_text(out / f"cv-labels-{method}.md", selection_table(reports))
        fold, index, picture = worst_slice(heldout, reports)
        write_png(out / f"cv-labels-{method}-worst.png", picture)
        log(f"wrote {out / f'cv-labels-{method}.json'}, .md and -worst.png (slice {index} of fold {fold})")
        chosen[method] = reports
    atomic_write_text(out / "cv-labels.md", summary_table(chosen))
    log(f"wrote {out / 'cv-labels.md'}")
    return chosen


def _evaluate_fold(
    cfg: TrainConfig, fold: str, last: Path, data: Any, val: list[int]
) -> tuple[dict[str, Any], HeldOut]:
    """Fold ``fold``'s report and held-out predictions (a HeldOut without masks and images: the caller
    adds them), scored as the recipe validates (with the 8 flips/rotations when it sets --val-tta);
    writes evaluation.json. The cell probabilities, and the affinities of a model that predicts them,
    are kept in heldout.npz beside it (one array per slice: images may differ in size), keyed by the
    checkpoint's bytes, the images, the masks, TTA, device, precision and the affinities' offsets, so a
    second ``cv --labels`` on finished folds segments nothing again; any other cache is replaced (one
    without the affinities of an affinity model too)."""
    from biounet.data.affinities import offsets_for
    from biounet.data.context import with_context_data
    from biounet.evaluation.evaluate import evaluate_images
    from biounet.models import load_predictor
    from biounet.segment.inference import describe_predictor

    predictor, run_cfg, ckpt = load_predictor(last, cfg.device, cfg.precision)
    described = describe_predictor(predictor)
    offsets = offsets_for(run_cfg.affinities)
    key = _heldout_key(cfg, last, data, val, described, offsets)
    cache, report_path = last.parent / "heldout.npz", last.parent / "evaluation.json"
    kept = _read_cache(cache, report_path, key, bool(offsets))
    if kept is not None:
        report, probs, affinities = kept
        return report, HeldOut(probs, [], list(val), affinities=affinities, offsets=offsets)
    probs, affinities = [], []
    report = evaluate_images(
        predictor,
        with_context_data(data, run_cfg.context),  # a network trained with --context takes neighbouring sections
        val,
        run_cfg.depth,
        run_cfg.padding,
        tta=cfg.val_tta,
        cell_probs_out=probs,
        num_classes=run_cfg.classes,
        offsets=offsets,
        affinities_out=affinities if offsets else None,
    )
    report.update(fold=fold, step=ckpt["step"], checkpoint=ckpt["path"], tta=cfg.val_tta, **described)
    write_json(report, report_path)
    if probs:  # two classes: the cell probabilities (and affinities) that instance methods take
        arrays: dict[str, Any] = {f"p{k:05d}": np.asarray(a, np.float32) for k, a in enumerate(probs)}
        arrays |= {f"a{k:05d}": np.asarray(a, np.float32) for k, a in enumerate(affinities)}
        atomic_write(cache, lambda p: np.savez(p, key=np.array(key), **arrays))
    return report, HeldOut(probs, [], list(val), affinities=affinities if offsets else None, offsets=offsets)


def _heldout_key(
    cfg: TrainConfig, last: Path, data: Any, val: list[int], described: dict[str, str], offsets: tuple
) -> str:
    """What the held-out predictions depend on, as the text heldout.npz is keyed by. The offsets only
    for a model that predicts affinities, so the caches of the others stay valid."""
    from biounet.data.readers import image_digest

    key: dict[str, Any] = {
        "checkpoint_sha256": hashlib.sha256(last.read_bytes()).hexdigest(),
        "format": HELDOUT_FORMAT,
        "images": [image_digest(data.images[i]) for i in val],
        "masks": [_mask_digest(data.masks[i]) for i in val] if data.masks is not None else None,
        "tta": cfg.val_tta,
        **described,
    }
    if offsets:
        key["affinities"] = [list(o) for o in offsets]
    return json.dumps(key, sort_keys=True)


def _read_cache(
    cache: Path, report_path: Path, key: str, with_affinities: bool
) -> tuple[dict[str, Any], list[np.ndarray], list[np.ndarray] | None] | None:
    """(report, cell probabilities, affinities or None) of a cache written under ``key``, or None where
    there is none, it was written under another key, is damaged, or lacks the affinities it should hold."""
    if not (cache.is_file() and report_path.is_file()):
        return None
    try:
        with np.load(cache) as stored:
            if str(stored["key"]) != key:
                return None
        probs = read_heldout(cache)
        affinities = read_heldout(cache, "a") if with_affinities else None
        if affinities is not None and len(affinities) != len(probs):
            return None
        return json.loads(report_path.read_text()), probs, affinities
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # a damaged or older cache: segment again and replace it


def read_heldout(path: str | Path, prefix: str = "p") -> list[np.ndarray]:
    """What a finished fold kept (``fold-K/heldout.npz``), one array per slice: the cell probabilities
    (``prefix`` "p"), or the affinities of a model that predicts them ("a")."""
    with np.load(path) as stored:
        names = sorted(n for n in stored.files if n.startswith(prefix) and n[1:].isdigit())
        return [stored[n] for n in names]


def _mask_digest(mask: np.ndarray) -> str:
    mask = np.ascontiguousarray(mask)
    return hashlib.sha256(repr((mask.shape, mask.dtype.str)).encode() + mask.tobytes()).hexdigest()[:16]


def _train_fold(
    cfg: TrainConfig, explicit: dict[str, Any], fold: str, run: Path, data: Any, log: Callable[[str], object]
) -> Path:
    """Train fold ``fold`` into ``run`` (resuming it, or keeping it when finished); returns its last.pt.
    cv scores the final weights itself, so training skips its own validation of the last step (the
    same images would be segmented twice); --val-every validations still run."""
    from biounet.train.engine import train

    fold_cfg = cfg.replace(fold=fold, out=str(run), resume=None)
    last = run / ckpt_io.LAST
    if not last.is_file():
        log(f"fold {fold}: training")
        train(fold_cfg, explicit, data=data, validate_at_end=False)
        return last
    step = ckpt_io.load(last)["step"]
    if step < cfg.steps:
        log(f"fold {fold}: resuming at step {step}")
        resume = {"resume": str(run), "steps": cfg.steps}
        train(fold_cfg.replace(resume=str(run)), resume, data=data, validate_at_end=False)
    else:
        log(f"fold {fold}: trained ({step} steps), evaluating")
    return last


def cv_table(summary: dict[str, Any]) -> str:
    """Markdown table: a row per fold, a column per metric, then mean +- std."""
    keys = [k for k in METRICS if k in summary["mean"]]
    lines = ["| fold | " + " | ".join(keys) + " |", "| --- |" + " --- |" * len(keys)]
    for fold, r in summary["folds"].items():
        lines.append(f"| {fold} | " + " | ".join(f"{r[k]:.4f}" for k in keys) + " |")
    lines.append(
        "| mean +- std | " + " | ".join(f"{summary['mean'][k]:.4f} +- {summary['std'][k]:.4f}" for k in keys) + " |"
    )
    if summary.get("tta"):
        lines += ["", "Scored with test-time augmentation (the mean of the 8 flips and rotations)."]
    if summary.get("precision"):
        lines += ["", f"Inference on {', '.join(summary['device'])} in {', '.join(summary['precision'])}."]
    return "\n".join(lines) + "\n"
