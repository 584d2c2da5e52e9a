"""Validation during training: segment and score the held-out fold with the model being
trained, append the scores to ``validation.jsonl`` and keep ``best.pt`` when dice_coeff improves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from biounet.core.config import TrainConfig
from biounet.data.context import with_context_data
from biounet.data.readers import SegmentationData
from biounet.evaluation.evaluate import evaluate_images
from biounet.evaluation.metrics import VALIDATION_SHOWN
from biounet.model.checkpoint import BEST, RunState, atomic_save, payload
from biounet.segment.inference import class_predictor, torch_predictor
from biounet.train.runlog import Logger


def validate(
    state: RunState,
    cfg: TrainConfig,
    data: SegmentationData,
    val_idx: list[int],
    device: torch.device,
    precision: str,
    run_dir: Path,
    log: Logger,
) -> dict[str, Any]:
    """Segment and score the held-out images; keep best.pt when dice_coeff improves."""
    state.model.eval()
    # the class channels are scored (a model's affinity channels are left out), on the images with their
    # neighbouring sections when the network takes them (--context)
    predictor = class_predictor(torch_predictor(state.model, device, precision), cfg.classes)
    try:
        report = evaluate_images(
            predictor, with_context_data(data, cfg.context), val_idx, cfg.depth, cfg.padding, tta=cfg.val_tta
        )
    finally:
        state.model.train()
    means = {k: v for k, v in report.items() if k not in ("per_image", "n_images")}
    row = {"step": state.step, "tta": cfg.val_tta, **means}
    with open(run_dir / "validation.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    shown = "  ".join(f"{k} {report[k]:.4f}" for k in VALIDATION_SHOWN if k in report)
    improved = report["dice_coeff"] > state.best
    if improved:
        state.best = report["dice_coeff"]
        weights = {k: v.detach().cpu() for k, v in state.model.state_dict().items()}
        best = payload(cfg.to_saved(), state.step, weights, train_digests=state.train_digests)
        best["validation"] = row
        atomic_save(best, run_dir / BEST)
    log.info(
        f"validation at step {state.step} on {len(val_idx)} images: {shown}" + ("  (best so far)" if improved else "")
    )
    return report
