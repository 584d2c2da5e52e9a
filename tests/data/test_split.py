import numpy as np
import pytest

from biounet.core.errors import ConfigError
from biounet.data import kfold_split


def test_fold_1_validates_the_references_slices():
    train, val = kfold_split(30, 1)
    assert val == [4, 6, 7, 9, 18, 19]
    assert len(train) == 24 and not set(train) & set(val)


@pytest.mark.parametrize("n", [30, 12, 7, 101])
def test_folds_partition_the_images(n):
    vals = [kfold_split(n, k)[1] for k in range(5)]
    assert sorted(i for v in vals for i in v) == list(range(n))


def test_fold_all_trains_on_everything_and_global_state_is_untouched():
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    assert kfold_split(30, "all") == (list(range(30)), [])
    kfold_split(30, 2)
    assert np.random.rand() == expected


def test_bad_fold_is_refused():
    with pytest.raises(ConfigError, match="0..4"):
        kfold_split(30, 5)
    with pytest.raises(ConfigError, match="cannot be split"):
        kfold_split(1, 0)


def test_equals_the_references_rotation_when_folds_divide_n():
    for n in (30, 10, 55):
        order = np.arange(n)
        np.random.RandomState(0).shuffle(order)
        r = round(0.2 * n)
        for fold in range(5):
            rolled = np.roll(order, r * fold)
            assert kfold_split(n, fold) == (sorted(rolled[: n - r].tolist()), sorted(rolled[n - r :].tolist()))
