"""The mutex watershed: hand-computed orderings of a three-pixel row, exact recovery of known objects from
their exact affinities, strides that match bioimage-cpp's own, the size filter, and clear errors."""

import bioimage_cpp as bic
import numpy as np
import pytest

from biounet.core.errors import ConfigError, DataError
from biounet.data.affinities import DEFAULT_OFFSETS, affinity_targets
from biounet.instances.mws import merge_small_segments, mutex_watershed

ROW_OFFSETS = [(-1, 0), (0, -1), (0, -2)]  # on a 1 x 3 row: two attractive edges a-b, b-c, one repulsive a-c


def row_affinities(ab: float, bc: float, ac: float) -> np.ndarray:
    """Affinities of the row a b c: channel (0, -1) at b is edge a-b, at c edge b-c; (0, -2) at c is a-c."""
    aff = np.zeros((3, 1, 3), np.float32)
    aff[1, 0, 1], aff[1, 0, 2], aff[2, 0, 2] = ab, bc, ac
    return aff


def brick_wall(rng: np.random.Generator, shape=(64, 72), sides=(10, 17)) -> np.ndarray:
    """Labels 1..n: rows of random height, each cut into bricks of random width (all sides >= 10)."""
    labels = np.zeros(shape, np.int64)
    y, n = 0, 0
    while y < shape[0]:
        h = int(rng.integers(*sides))
        h = shape[0] - y if shape[0] - y - h < sides[0] else h
        x = 0
        while x < shape[1]:
            w = int(rng.integers(*sides))
            w = shape[1] - x if shape[1] - x - w < sides[0] else w
            n += 1
            labels[y : y + h, x : x + w] = n
            x += w
        y += h
    return labels


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two label images are equal up to renaming (a bijection between their labels)."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return pairs.shape[1] == len(np.unique(a)) == len(np.unique(b))


def test_row_by_hand():
    # weights: a-b 0.9, mutex a-c 1 - 0.2 = 0.8, b-c 0.6: a, b merge; the mutex comes before b-c
    np.testing.assert_array_equal(mutex_watershed(row_affinities(0.9, 0.6, 0.2), ROW_OFFSETS), [[1, 1, 2]])
    # a weaker mutex (0.5) comes after b-c (0.6): one segment
    np.testing.assert_array_equal(mutex_watershed(row_affinities(0.9, 0.6, 0.5), ROW_OFFSETS), [[1, 1, 1]])
    # a bias of 0.3 lifts b-c to 0.9, before the mutex at 0.8
    labels = mutex_watershed(row_affinities(0.9, 0.6, 0.2), ROW_OFFSETS, attractive_bias=0.3)
    np.testing.assert_array_equal(labels, [[1, 1, 1]])
    # a bias of -0.15 drops a-b to 0.75 and b-c to 0.45, under the mutex at 0.5: a, b merge, c stays apart
    labels = mutex_watershed(row_affinities(0.9, 0.6, 0.5), ROW_OFFSETS, attractive_bias=-0.15)
    np.testing.assert_array_equal(labels, [[1, 1, 2]])
    assert labels.dtype == np.uint32


def test_bias_decides_between_equal_evidence():
    aff = np.full((len(DEFAULT_OFFSETS), 40, 40), 0.5, np.float32)
    assert mutex_watershed(aff, attractive_bias=0.1).max() == 1  # every merge before every mutex
    assert mutex_watershed(aff, attractive_bias=-0.1).max() > 20  # every mutex first: no two pixels 9 apart join


@pytest.mark.parametrize("bias", [-0.5, 0.0, 0.5])
def test_exact_affinities_give_back_the_objects(bias):
    labels = brick_wall(np.random.default_rng(0))
    targets, _ = affinity_targets(labels)
    result = mutex_watershed(targets, attractive_bias=bias)
    assert same_partition(result, labels)
    assert result.min() == 1 and result.max() == labels.max()


def test_exact_affinities_with_strides_give_back_the_objects():
    labels = brick_wall(np.random.default_rng(1))
    targets, _ = affinity_targets(labels)
    assert same_partition(mutex_watershed(targets, strides=(2, 2)), labels)
    assert same_partition(mutex_watershed(targets, strides=(2, 2), randomize_strides=True, seed=3), labels)


def test_regular_strides_are_bioimage_cpps():
    rng = np.random.default_rng(2)
    aff = rng.random((len(DEFAULT_OFFSETS), 48, 40)).astype(np.float32)
    weights = aff.copy()
    weights[2:] = 1.0 - weights[2:]  # bioimage-cpp takes weights: attractive p, repulsive 1 - p
    for strides in [(1, 1), (2, 3), (4, 4)]:
        expected = bic.segmentation.mutex_watershed(weights, DEFAULT_OFFSETS, 2, strides=strides)
        assert same_partition(mutex_watershed(aff, strides=strides), expected), strides
    assert mutex_watershed(aff, strides=(4, 4)).max() < mutex_watershed(aff).max()  # fewer mutexes, fewer cuts


def test_random_strides_follow_the_seed():
    rng = np.random.default_rng(4)
    aff = rng.random((len(DEFAULT_OFFSETS), 40, 40)).astype(np.float32)
    first = mutex_watershed(aff, strides=(3, 3), randomize_strides=True, seed=5)
    np.testing.assert_array_equal(first, mutex_watershed(aff, strides=(3, 3), randomize_strides=True, seed=5))
    assert not np.array_equal(first, mutex_watershed(aff, strides=(3, 3), randomize_strides=True, seed=6))
    # with stride 1 every edge is kept: the same as no randomization
    np.testing.assert_array_equal(mutex_watershed(aff, strides=(1, 1), randomize_strides=True), mutex_watershed(aff))


def test_small_segments_join_a_neighbour():
    labels = np.ones((40, 40), np.int64)
    labels[:, 20:] = 2
    with_speck = labels.copy()
    with_speck[2:5, 2:5] = 3  # a 3 x 3 object in a corner of object 1, 9 pixels from more of it
    targets, _ = affinity_targets(with_speck)
    assert same_partition(mutex_watershed(targets), with_speck)  # found when kept ...
    assert same_partition(mutex_watershed(targets, min_size=10), labels)  # ... absorbed by its object when small


def test_an_object_needs_a_repulsive_edge_to_its_neighbour():
    """The mutex watershed can only separate objects that some long-range edge joins: a 3 x 3 object in the
    middle of an 11 x 11 one has no pixel of it 9 or 27 pixels away, and merges into it."""
    labels = np.ones((11, 11), np.int64)
    labels[4:7, 4:7] = 2
    targets, _ = affinity_targets(labels)
    assert mutex_watershed(targets).max() == 1


def test_mask_leaves_pixels_out():
    labels = brick_wall(np.random.default_rng(6))
    targets, _ = affinity_targets(labels)
    mask = np.ones(labels.shape, bool)
    mask[:, :5] = False
    for min_size in (0, 30):
        result = mutex_watershed(targets, mask=mask, min_size=min_size)
        assert (result[:, :5] == 0).all() and (result[:, 5:] > 0).all()
        assert same_partition(result[:, 5:], labels[:, 5:])
    with pytest.raises(DataError, match="mask must be a bool array"):
        mutex_watershed(targets, mask=mask.astype(np.uint8))


def test_merge_small_segments_by_hand():
    labels = np.array([[1, 1, 1, 2, 2, 2], [1, 1, 3, 2, 2, 2]])
    height = np.zeros((2, 6), np.float32)
    height[:, 3] = 1.0  # a ridge between 1 and 2: the single pixel of 3 joins 1, its side of the ridge
    np.testing.assert_array_equal(merge_small_segments(labels, height, 2), [[1, 1, 1, 2, 2, 2], [1, 1, 1, 2, 2, 2]])
    # every segment small: the largest takes the image
    np.testing.assert_array_equal(merge_small_segments(labels, height, 100), np.ones((2, 6)))
    np.testing.assert_array_equal(merge_small_segments(labels * 7, height, 0), labels)  # renumbered 1..n


def test_bad_inputs():
    aff = np.full((len(DEFAULT_OFFSETS), 8, 8), 0.5, np.float32)
    with pytest.raises(DataError, match=r"shape \(11, 8, 8\) do not match the 12 offsets"):
        mutex_watershed(aff[:11])
    nan = aff.copy()
    nan[3, 2, 2] = np.inf
    with pytest.raises(DataError, match="NaN or infinite"):
        mutex_watershed(nan)
    with pytest.raises(DataError, match="probabilities in \\[0, 1\\]"):
        mutex_watershed(aff * 4)
    with pytest.raises(ConfigError, match="strides"):
        mutex_watershed(aff, strides=(0, 1))
    with pytest.raises(ConfigError, match="attractive_bias=2"):
        mutex_watershed(aff, attractive_bias=2)
    with pytest.raises(ConfigError, match="min_size=-1"):
        mutex_watershed(aff, min_size=-1)
    with pytest.raises(ConfigError, match="nearest-neighbour offsets first"):
        mutex_watershed(aff[2:], DEFAULT_OFFSETS[2:])
    with pytest.raises(ConfigError, match="repeats an edge set"):
        mutex_watershed(aff[:3], [(-1, 0), (0, -1), (0, 1)])


def test_exact_affinities_of_an_isbi_slice_give_back_its_cells(isbi_dir):
    """Real cell shapes: the 136 cells of ISBI 2012's first training slice, membranes grown into the cells
    (data.affinities.instance_labels), come back one for one from their exact affinities."""
    import tifffile

    from biounet.data.affinities import instance_labels

    with tifffile.TiffFile(isbi_dir / "train-labels.tif") as tif:
        mask = (tif.pages[0].asarray() == 255).astype(np.int16)
    labels = instance_labels(mask)
    targets, _ = affinity_targets(labels)
    result = mutex_watershed(targets)
    assert labels.max() == 136
    assert same_partition(result, labels)
