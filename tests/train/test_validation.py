"""Validation during training: scores, validation.jsonl and best.pt, and the model left as it was."""

import json

import pytest
import torch
from support import tiny_config

from biounet.model.unet import build_model
from biounet.train.engine import train


def test_validation_with_tta_scores_the_averaged_prediction(isbi_data, tmp_path):
    from biounet.evaluation.evaluate import evaluate_images
    from biounet.segment.inference import torch_predictor

    out = tmp_path / "run"
    cfg = tiny_config(out=str(out), steps=2, validation=True, val_tta=True)
    train(cfg, data=isbi_data, quiet=True)
    row = json.loads((out / "validation.jsonl").read_text().splitlines()[-1])
    assert row["tta"] is True
    model = build_model(cfg)
    model.load_state_dict(torch.load(out / "last.pt", weights_only=True)["model"])
    val = [4, 6, 7, 9, 18, 19]
    with_tta = evaluate_images(torch_predictor(model), isbi_data, val, cfg.depth, cfg.padding, tta=True)
    without = evaluate_images(torch_predictor(model), isbi_data, val, cfg.depth, cfg.padding)
    assert row["dice_coeff"] == pytest.approx(with_tta["dice_coeff"], abs=1e-6)
    assert abs(with_tta["dice_coeff"] - without["dice_coeff"]) > 1e-6


def test_validations_during_training_do_not_change_the_model(isbi_data, tmp_path):
    """configs/isbi-cpu.yaml drops its intermediate validations on this promise: the same weights
    (batch-norm statistics included) with a validation after every step as with none."""
    from biounet.data.readers import SegmentationData

    crops = SegmentationData(
        [im[:, :128, :128] for im in isbi_data.images],  # small slices: fast validations
        [m[:128, :128] for m in isbi_data.masks],
        isbi_data.names,
    )
    cfg = tiny_config(steps=3, batch_norm=True)
    train(cfg.replace(out=str(tmp_path / "plain")), data=crops, quiet=True)
    train(cfg.replace(out=str(tmp_path / "validated"), validation=True, val_every=1), data=crops, quiet=True)
    assert len((tmp_path / "validated" / "validation.jsonl").read_text().splitlines()) == 3
    a = torch.load(tmp_path / "plain" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "validated" / "last.pt", weights_only=True)["model"]
    assert any("running_mean" in k for k in a)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0)


def test_an_affinity_model_is_validated_on_its_class_channels_with_its_context(isbi_data, tmp_path):
    """The held-out slices are segmented with their neighbouring sections (--context) and scored on the
    class channels: the softmax over the two classes, not over the affinity channels too."""
    import numpy as np

    from biounet.data.affinities import DEFAULT_OFFSETS
    from biounet.data.context import image_with_context
    from biounet.evaluation.metrics import dice_coeff
    from biounet.segment.inference import segment, torch_predictor

    out = tmp_path / "run"
    cfg = tiny_config(out=str(out), steps=2, validation=True, affinities="mws12", context=1)
    train(cfg, data=isbi_data, quiet=True)
    row = json.loads((out / "validation.jsonl").read_text().splitlines()[-1])
    model = build_model(cfg)
    model.load_state_dict(torch.load(out / "last.pt", weights_only=True)["model"])
    assert (model.in_channels, model.num_classes) == (3, 14)
    scores = []
    for i in [4, 6, 7, 9, 18, 19]:
        image = image_with_context(isbi_data, i, 1)
        out = segment(image, torch_predictor(model), cfg.depth, cfg.padding, num_classes=2, offsets=DEFAULT_OFFSETS)
        assert out.shape == (14, 512, 512)
        scores.append(dice_coeff(out[:2], isbi_data.masks[i]))
    assert row["dice_coeff"] == pytest.approx(float(np.mean(scores)), abs=1e-6)
