"""experiments/instance_grid.py: another grid (and a subset of the offsets) on a finished cv run."""

import numpy as np
import pytest
from support import load_experiment

from biounet.core.errors import ConfigError
from biounet.data.affinities import DEFAULT_OFFSETS


@pytest.fixture(scope="module")
def grid():
    return load_experiment("instance_grid")


def test_every_channel_by_default_and_a_named_subset_in_order(grid):
    assert grid.parse_channels(None, DEFAULT_OFFSETS) == list(range(12))
    assert grid.parse_channels("0,1,10,11", DEFAULT_OFFSETS) == [0, 1, 10, 11]


@pytest.mark.parametrize(
    ("text", "words"),
    [("0,1,12", "from 0 to 11"), ("0,1,1", "each index once"), ("2,3", "must start with 0,1"), ("a,b", "comma")],
)
def test_a_bad_subset_names_the_problem(grid, text, words):
    with pytest.raises(ConfigError, match=words):
        grid.parse_channels(text, DEFAULT_OFFSETS)


def test_a_subset_needs_a_model_with_affinities(grid):
    with pytest.raises(ConfigError, match="predicts no affinities"):
        grid.parse_channels("0,1", ())


def test_the_subset_keeps_the_channels_with_their_offsets(grid):
    aff = np.arange(12 * 2 * 3, dtype=np.float32).reshape(12, 2, 3)
    kept, offsets = grid.subset([aff], DEFAULT_OFFSETS, [0, 1, 10, 11])
    assert offsets == ((-1, 0), (0, -1), (-27, 0), (0, -27))
    assert np.array_equal(kept[0], aff[[0, 1, 10, 11]])


def test_one_fold_takes_one_value_per_parameter(grid):
    assert grid.fixed_params({"stride": [2], "min_size": [100]}) == {"stride": 2, "min_size": 100}
    with pytest.raises(ConfigError, match=r"one value for \['min_size'\]"):
        grid.fixed_params({"stride": [2], "min_size": [0, 100]})


def test_one_fold_is_scored_with_the_setting_given(grid):
    from biounet.data.affinities import affinity_targets, instance_labels
    from biounet.evaluation.selection import HeldOut

    mask = np.zeros((44, 44), np.int64)
    for y0 in (2, 23):
        for x0 in (2, 23):
            mask[y0 : y0 + 19, x0 : x0 + 19] = 1
    exact = affinity_targets(instance_labels(mask), DEFAULT_OFFSETS)[0]
    kept, offsets = grid.subset([exact], DEFAULT_OFFSETS, [0, 1, 2, 3])
    held = HeldOut([mask.astype(np.float32)], [mask], [0], None, kept, offsets)
    report = grid.score_fixed(held, "mws", {"stride": 1, "attractive_bias": 0.0, "min_size": 0})
    assert report["v_rand"] == pytest.approx(1.0)
    # everything attracts, nothing repels: the four cells merge into one
    merged = HeldOut(held.probs, held.masks, [0], None, [np.ones_like(kept[0])], offsets)
    assert grid.score_fixed(merged, "mws", {"stride": 1, "attractive_bias": 0.0, "min_size": 0})["v_rand"] < 0.5
