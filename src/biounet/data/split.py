"""The reference's k-fold split, reproduced exactly and without touching global random state."""

from __future__ import annotations

import numpy as np

from biounet.core.errors import ConfigError


def kfold_split(n: int, fold: int | str, folds: int = 5) -> tuple[list[int], list[int]]:
    """(train, validation) image indices of one fold.

    The reference's split: ``RandomState(0)`` shuffles ``arange(n)``, the order is rotated
    right by ``round(n / folds) * fold``, the first ``n - round(n / folds)`` positions train and
    the rest validate. With n = 30, fold 1 validates [4, 6, 7, 9, 18, 19]. When ``folds`` does
    not divide ``n`` the reference's rounding would validate some images twice and others never;
    there fold k validates the shuffled positions ``[n - b(k+1), n - b(k))`` with
    ``b(k) = round(n * k / folds)``, which equals the reference whenever ``folds`` divides ``n``
    and always partitions the images. ``fold="all"`` trains on every image and validates none.
    Both lists come back sorted.
    """
    if n < 1:
        raise ConfigError("the dataset holds no images")
    if fold == "all":
        return list(range(n)), []
    fold = int(fold)
    if not 0 <= fold < folds:
        raise ConfigError(f"fold must be 0..{folds - 1} or 'all', got {fold}")
    bounds = [int(round(n * k / folds)) for k in range(folds + 1)]
    lo, hi = n - bounds[fold + 1], n - bounds[fold]
    if hi - lo < 1 or hi - lo >= n:
        raise ConfigError(
            f"{n} images cannot be split into {folds} folds with a non-empty training and "
            f"validation part; use --fold all or fewer --folds"
        )
    order = np.arange(n)
    np.random.RandomState(0).shuffle(order)  # a private generator: the global one stays untouched
    val = order[lo:hi]
    train = np.concatenate([order[:lo], order[hi:]])
    return sorted(train.tolist()), sorted(val.tolist())
