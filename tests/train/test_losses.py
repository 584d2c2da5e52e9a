"""Losses: pixel cross-entropy and the soft dice."""

import pytest
import torch

from biounet.train import losses


def test_soft_dice_loss_is_the_reference_metric():
    from biounet.evaluation.metrics import dice_coeff

    gen = torch.Generator().manual_seed(0)  # local: the test does not depend on the global RNG's state
    logits = torch.randn(3, 2, 20, 20, generator=gen)
    target = torch.randint(0, 2, (3, 20, 20), generator=gen)
    probs = logits.softmax(1).numpy()
    want = sum(1 - dice_coeff(probs[i], target[i].numpy()) for i in range(3))
    assert losses.soft_dice_loss_sum(logits, target).item() == pytest.approx(want, abs=1e-4)
    # a perfect, confident prediction has no loss
    perfect = torch.nn.functional.one_hot(target, 2).permute(0, 3, 1, 2).float() * 50
    assert losses.soft_dice_loss_sum(perfect, target).item() < 1e-5
