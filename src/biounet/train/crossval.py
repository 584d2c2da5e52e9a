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
from pathlib import Path
from typing import Any

import numpy as np

from biounet.core.config import TrainConfig
from biounet.core.errors import ConfigError
from biounet.evaluation.metrics import REPORTED_METRICS as METRICS
from biounet.evaluation.selection import HeldOut
from biounet.io.fileio import atomic_write, atomic_write_text, write_json, write_png
from biounet.model import checkpoint as ckpt_io

HELDOUT_FORMAT = 2  # heldout.npz: one array per slice (p00000, ...) beside the key


def parse_folds(text: str, folds: int) -> list[str]:
    """'0,1,2' -> ['0', '1', '2'], each checked against the number of folds."""
    out = [t.strip() for t in text.split(",") if t.strip()]
    if not out or any(not t.isdigit() or not 0 <= int(t) < folds for t in out):
        raise ConfigError(f"--fold takes a comma-separated list of folds 0..{folds - 1}, got {text!r}")
    return out


def parse_methods(text: str) -> list[str]:
    """'multicut,gasp' -> ['multicut', 'gasp'], each a known instance method, none twice."""
    from biounet.instances.methods import METHODS

    out = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in out if t not in METHODS]
    if not out or unknown or len(set(out)) != len(out):
        raise ConfigError(
            f"--labels takes comma-separated instance methods, each once ({', '.join(METHODS)}), got {text!r}"
        )
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
    out = Path(out)
    # one dataset for every fold (a volume pair is read lazily: its label volume is scanned once, here)
    data = open_dataset(cfg.data, cfg.classes, cfg.in_channels, cfg.ignore_value, cfg.mask_threshold, cfg.masks)
    reports = {}
    heldout: dict[str, HeldOut] = {}
    for fold in fold_list:
        run = out / f"fold-{fold}"
        last = _train_fold(cfg, explicit, fold, run, data, log)
        _, val = kfold_split(len(data), fold, cfg.folds)
        report, probs = _evaluate_fold(cfg, fold, last, data, val)
        if labels and data.masks is not None:  # only then: the images of a lazy volume stay on disk
            heldout[fold] = HeldOut(probs, [data.masks[i] for i in val], list(val), [data.images[i] for i in val])
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
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Fold ``fold``'s report and held-out cell probabilities, scored as the recipe validates (with
    the 8 flips/rotations when it sets --val-tta); writes evaluation.json. The probabilities are kept
    in heldout.npz beside it (one array per slice: images may differ in size), keyed by the
    checkpoint's bytes, the images, the masks, TTA, device and precision, so a second ``cv --labels``
    on finished folds segments nothing again; any other cache is replaced."""
    from biounet.data.readers import image_digest
    from biounet.evaluation.evaluate import evaluate_images
    from biounet.models import load_predictor
    from biounet.segment.inference import describe_predictor

    predictor, run_cfg, ckpt = load_predictor(last, cfg.device, cfg.precision)
    described = describe_predictor(predictor)
    key = json.dumps(
        {
            "checkpoint_sha256": hashlib.sha256(last.read_bytes()).hexdigest(),
            "format": HELDOUT_FORMAT,
            "images": [image_digest(data.images[i]) for i in val],
            "masks": [_mask_digest(data.masks[i]) for i in val] if data.masks is not None else None,
            "tta": cfg.val_tta,
            **described,
        },
        sort_keys=True,
    )
    cache, report_path = last.parent / "heldout.npz", last.parent / "evaluation.json"
    if cache.is_file() and report_path.is_file():
        try:
            with np.load(cache) as stored:
                same = str(stored["key"]) == key
            if same:
                return json.loads(report_path.read_text()), read_heldout(cache)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # a damaged or older cache: segment again and replace it
    probs: list[np.ndarray] = []
    report = evaluate_images(
        predictor, data, val, run_cfg.depth, run_cfg.padding, tta=cfg.val_tta, cell_probs_out=probs
    )
    report.update(fold=fold, step=ckpt["step"], checkpoint=ckpt["path"], tta=cfg.val_tta, **described)
    write_json(report, report_path)
    if probs:  # two classes: the cell probabilities that instance methods take
        arrays: dict[str, Any] = {f"p{k:05d}": np.asarray(a, np.float32) for k, a in enumerate(probs)}
        atomic_write(cache, lambda p: np.savez(p, key=np.array(key), **arrays))
    return report, probs


def read_heldout(path: str | Path) -> list[np.ndarray]:
    """The held-out cell probabilities a finished fold kept (``fold-K/heldout.npz``), one per slice."""
    with np.load(path) as stored:
        names = sorted(n for n in stored.files if n.startswith("p"))
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
