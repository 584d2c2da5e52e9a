"""The training losses: weighted pixel cross-entropy and the soft dice term, as sums over a batch.

Both return sums (not means), so that micro-batches add up to the whole batch's value; the
training step divides by the global batch's pixel or image count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from biounet.data import IGNORE


def pixel_loss_sum(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Sum over pixels of weight * softmax cross-entropy, in float32; ignored pixels add nothing.

    logits: (N, C, H, W); target: (N, H, W) int64 with IGNORE; weight: (N, H, W) float32.
    """
    ce = F.cross_entropy(logits.float(), target, reduction="none", ignore_index=IGNORE)
    return (ce * weight).sum()


def soft_dice_loss_sum(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum over the images of 1 - soft dice, the reference's ``dice_coeff`` per image: 2 <p, y> /
    (<p, p> + <y, y>) over every class channel of the softmax p and one-hot y, ignored pixels
    left out. A sum over images, so micro-batches add up to the whole batch's value."""
    probs = logits.float().softmax(1)
    valid = (target != IGNORE).unsqueeze(1)
    onehot = F.one_hot(target.clamp(min=0), probs.shape[1]).permute(0, 3, 1, 2).float() * valid
    probs = probs * valid
    inter = (probs * onehot).sum((1, 2, 3))
    denom = (probs * probs).sum((1, 2, 3)) + (onehot * onehot).sum((1, 2, 3))
    return (1 - 2 * inter / denom.clamp(min=1e-6)).sum()
