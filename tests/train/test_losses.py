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


# --- affinities ---------------------------------------------------------------------------------------


def _affinity_batch(n=4, c=3, side=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, side, side, generator=gen)
    targets = (torch.rand(n, c, side, side, generator=gen) > 0.4).float()
    valid = (torch.rand(n, c, side, side, generator=gen) > 0.2).to(torch.uint8)
    return logits, targets * valid, valid


def test_affinity_dice_is_one_minus_the_soft_dice_of_the_cuts_per_image_and_channel():
    logits, targets, valid = _affinity_batch()
    q = (1 - torch.sigmoid(logits)) * valid
    z = (1 - targets) * valid
    want = 0.0
    for i in range(4):
        for c in range(3):
            inter = (q[i, c] * z[i, c]).sum()
            want += 1 - (2 * inter + 1) / ((q[i, c] ** 2).sum() + (z[i, c] ** 2).sum() + 1)
    assert losses.affinity_dice_loss_sum(logits, targets, valid).item() == pytest.approx(want.item(), rel=1e-5)
    # confident and right: no loss; an image-channel without valid edges adds nothing either
    perfect = (targets * 2 - 1) * 50
    assert losses.affinity_dice_loss_sum(perfect, targets, valid).item() < 1e-4
    assert losses.affinity_dice_loss_sum(logits, targets, torch.zeros_like(valid)).item() == 0.0


def test_calling_every_edge_connected_costs_the_whole_dice_when_cuts_are_rare():
    # 3 % cuts, as the nearest-neighbour edges of an EM slice: "all connected" must not look nearly right
    targets = torch.ones(1, 1, 100, 100)
    targets[0, 0, ::33] = 0.0
    valid = torch.ones_like(targets, dtype=torch.uint8)
    all_connected = torch.full_like(targets, 3.0)  # sigmoid 0.95 everywhere
    right = (targets * 2 - 1) * 3.0
    assert losses.affinity_dice_loss_sum(all_connected, targets, valid).item() > 0.8
    assert losses.affinity_dice_loss_sum(right, targets, valid).item() < 0.1


@pytest.mark.parametrize("term", ["affinity_dice_loss_sum", "affinity_bce_loss_sum"])
def test_edges_without_a_target_do_not_count(term):
    logits, targets, valid = _affinity_batch(seed=1)
    changed = torch.where(valid > 0, logits, logits + 7.0)
    fn = getattr(losses, term)
    assert fn(changed, targets, valid).item() == pytest.approx(fn(logits, targets, valid).item(), rel=1e-6)


def test_affinity_bce_is_the_sum_over_valid_edges():
    logits, targets, valid = _affinity_batch(seed=2)
    keep = valid > 0
    want = torch.nn.functional.binary_cross_entropy_with_logits(logits[keep], targets[keep], reduction="sum")
    assert losses.affinity_bce_loss_sum(logits, targets, valid).item() == pytest.approx(want.item(), rel=1e-5)


@pytest.mark.parametrize("bce", [False, True])
def test_the_micro_batch_shares_add_up_to_the_batch_loss(bce):
    """Dice per tile and channel and BCE per edge are sums: shares of any split add up exactly (up to
    rounding) to the whole batch's loss, so the gradient does not depend on the split."""
    from biounet.data.readers import IGNORE
    from biounet.train.distributed import DistInfo

    aff, targets, valid = _affinity_batch(n=4, c=3, seed=3)
    gen = torch.Generator().manual_seed(4)
    logits = torch.cat([torch.randn(4, 2, 12, 12, generator=gen), aff], 1)
    masks = torch.randint(0, 2, (4, 12, 12), generator=gen)
    masks[0, :3] = IGNORE
    weights = torch.ones(4, 12, 12)
    batch = (None, masks, weights, targets, valid)
    counts = losses.batch_counts([batch], DistInfo(), torch.device("cpu"))
    assert (counts.pixels, counts.images, counts.edges) == (4 * 144 - 36, 4, int(valid.sum()))
    setting = losses.AffinityLoss(0.7, bce)
    whole = losses.micro_batch_loss(logits, [masks, weights, targets, valid], counts, 0.5, setting)
    parts = sum(
        losses.micro_batch_loss(
            logits[i : i + 1],
            [masks[i : i + 1], weights[i : i + 1], targets[i : i + 1], valid[i : i + 1]],
            counts,
            0.5,
            setting,
        )
        for i in range(4)
    )
    assert parts.item() == pytest.approx(whole.item(), rel=1e-6)
    # the class terms read the first channels only: the affinity scores do not change them
    classes_only = losses.micro_batch_loss(logits[:, :2], [masks, weights], counts, 0.5)
    no_affinity = losses.micro_batch_loss(
        logits, [masks, weights, targets, valid], counts, 0.5, losses.AffinityLoss(0.0)
    )
    assert no_affinity.item() == pytest.approx(classes_only.item(), rel=1e-6)
