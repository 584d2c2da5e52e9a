"""The training losses: weighted pixel cross-entropy and the soft dice term of the classes, the soft dice
and binary cross-entropy of the affinities, as sums over a batch; and their composition into one
micro-batch's share of the step's loss (:func:`micro_batch_loss`).

The terms are sums (not means), so that micro-batches add up to the whole batch's value; the
training step divides by the global batch's pixel, image or edge count (:func:`batch_counts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from biounet.core.config import TrainConfig
from biounet.data import IGNORE
from biounet.train import distributed
from biounet.train.distributed import DistInfo


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


# --- affinities (docs/training.md, "Affinities") -----------------------------------------------------


def affinity_dice_loss_sum(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Sum over images and channels of 1 - soft dice of the *cuts*, in float32: per image and channel,
    (2 <q, z> + 1) / (<q, q> + <z, z> + 1) over its valid edges, q = 1 - sigmoid(logits) the predicted
    probability that the edge's two pixels lie in different objects, z = 1 - targets.

    The dice is taken on the cut side because cuts are the minority: about 3 % of the nearest-neighbour
    edges of an ISBI 2012 slice. A dice of "same object" is near 1 for a map that calls every edge
    connected, which is the local optimum a first run fell into (fold 1 at step 1839: the
    nearest-neighbour channels near 0.93 on either side of a cut, docs/instances.md); the dice of the cuts
    of that map is about 0. logits: (N, C, H, W) affinity scores; targets: (N, C, H, W) float 0/1; valid:
    (N, C, H, W), 1 where the edge has a target. The added 1 gives a channel without valid edges no loss
    and one without cuts a gradient towards "same object". A sum over images and channels: micro-batches
    add up to the batch's value."""
    v = valid.float()
    q = torch.sigmoid(-logits.float()) * v  # 1 - sigmoid(x), without cancellation
    z = (1.0 - targets.float()) * v
    inter = (q * z).sum((2, 3))
    denom = (q * q).sum((2, 3)) + (z * z).sum((2, 3))
    return (1 - (2 * inter + 1) / (denom + 1)).sum()


def affinity_bce_loss_sum(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Sum over the valid edges of the binary cross-entropy of sigmoid(logits) against the targets, in
    float32 (shapes as :func:`affinity_dice_loss_sum`)."""
    bce = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    return (bce * valid.float()).sum()


@dataclass(frozen=True)
class AffinityLoss:
    """How the affinity channels are trained: ``weight`` times (the dice term, plus the BCE term with ``bce``)."""

    weight: float = 1.0
    bce: bool = False


def loss_options(cfg: TrainConfig) -> dict[str, Any]:
    """The loss keywords of ``engine.train_step`` that ``cfg`` sets: ``dice_weight`` and ``affinity``."""
    return {
        "dice_weight": cfg.dice_loss_weight,
        "affinity": AffinityLoss(cfg.affinity_weight, cfg.affinity_loss == "dice+bce"),
    }


@dataclass(frozen=True)
class BatchCounts:
    """What the loss sums of a global batch are divided by (over every process): its labelled pixels, its
    images and its valid affinity edges (0 without affinities)."""

    pixels: float
    images: int
    edges: float = 0.0


def batch_counts(micro_batches: list[tuple[torch.Tensor, ...]], info: DistInfo, device: torch.device) -> BatchCounts:
    """The counts of the global batch whose share on this process is ``micro_batches``: (image, mask, weight)
    tuples, plus (affinity targets, validity) with affinities."""
    pixels = distributed.all_sum(sum(int((mb[1] != IGNORE).sum()) for mb in micro_batches), info, device)
    images = sum(len(mb[1]) for mb in micro_batches) * info.world
    if any(len(mb) > 3 for mb in micro_batches):
        edges = distributed.all_sum(sum(int(mb[4].sum()) for mb in micro_batches), info, device)
        return BatchCounts(pixels, images, edges)
    return BatchCounts(pixels, images)


def micro_batch_loss(
    logits: torch.Tensor,
    batch: list[torch.Tensor],
    counts: BatchCounts,
    dice_weight: float = 0.0,
    affinity: AffinityLoss = AffinityLoss(),
) -> torch.Tensor:
    """One micro-batch's share of the global batch's loss: its loss sums divided by the global batch's
    ``counts``, so that the shares add up to the batch's loss (and its gradient) whatever the split.

    ``batch``: masks (N, H, W), weights (N, H, W)[, affinity targets and validity (N, C, H, W)], on the
    logits' device. The class loss (pixel cross-entropy, plus ``dice_weight`` times 1 - soft dice per
    image) reads the first channels of ``logits``; with affinity targets, the last C channels are the
    affinities: ``affinity.weight`` times (1 - soft dice, the mean over images and channels; plus with
    ``affinity.bce`` the BCE, the mean over the valid edges)."""
    masks, weights, *targets = batch
    classes = logits.shape[1] - (targets[0].shape[1] if targets else 0)
    class_logits = logits[:, :classes] if targets else logits
    loss = pixel_loss_sum(class_logits, masks, weights) / counts.pixels
    if dice_weight:
        loss = loss + dice_weight * soft_dice_loss_sum(class_logits, masks) / counts.images
    if targets:
        aff, (target, valid) = logits[:, classes:], targets
        term = affinity_dice_loss_sum(aff, target, valid) / (counts.images * target.shape[1])
        if affinity.bce:
            term = term + affinity_bce_loss_sum(aff, target, valid) / max(counts.edges, 1.0)
        loss = loss + affinity.weight * term
    return loss
