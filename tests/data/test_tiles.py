import numpy as np
import pytest

from biounet.core.errors import DataError
from biounet.data import AugmentConfig, TileSampler
from biounet.data.readers import SegmentationData

OFF = AugmentConfig(flip=False, rotate90=False, elastic=False, brightness=0, contrast=0)


def test_tiles_mirror_the_borders_and_align_with_the_mask():
    rng = np.random.default_rng(0)
    image = rng.standard_normal((1, 50, 60)).astype(np.float32)
    mask = rng.integers(0, 2, (50, 60)).astype(np.int16)
    sampler = TileSampler(SegmentationData([image], [mask], ["a"]), [0], 44, 20, OFF, seed=0)
    padded = np.pad(image, ((0, 0), (12, 12), (12, 12)), mode="reflect")
    for k in range(10):
        tile, m, _ = sampler(k)
        # find the tile's output window in the mask, then check the input window around it
        hits = [(y, x) for y in range(31) for x in range(41) if np.array_equal(mask[y : y + 20, x : x + 20], m)]
        assert hits, "the mask tile is a window of the mask"
        y, x = hits[0]
        np.testing.assert_array_equal(tile, padded[:, y : y + 44, x : x + 44])


def test_samples_depend_only_on_seed_and_global_index(isbi_data):
    s1 = TileSampler(isbi_data, list(range(24)), 60, 20, AugmentConfig(), seed=7)
    s2 = TileSampler(isbi_data, list(range(24)), 60, 20, AugmentConfig(), seed=7)
    for k in (5, 0, 1000):
        for x, y in zip(s1(k), s2(k)):
            np.testing.assert_array_equal(x, y)
    assert not np.array_equal(s1(1)[0], s1(2)[0])
    s3 = TileSampler(isbi_data, list(range(24)), 60, 20, AugmentConfig(), seed=8)
    assert not np.array_equal(s1(1)[0], s3(1)[0])


def test_image_smaller_than_the_tile_is_refused():
    data = SegmentationData([np.zeros((1, 30, 30), np.float32)], [np.zeros((30, 30), np.int16)], ["small"])
    with pytest.raises(DataError, match="smaller than the 40x40 output tile.*--tile-size"):
        TileSampler(data, [0], 64, 40, OFF, seed=0)


def test_padded_copies_are_kept_boundedly_and_samples_do_not_change():
    """Lazy (larger than memory) datasets need a bounded cache of mirror-padded images; a copy made again
    after its eviction gives the same samples."""
    from biounet.data.volume_data import CACHE_SLICES

    rng = np.random.default_rng(0)
    n = CACHE_SLICES + 8
    images = [rng.standard_normal((1, 24, 24)).astype(np.float32) for _ in range(n)]
    masks = [rng.integers(0, 2, (24, 24)).astype(np.int16) for _ in range(n)]
    sampler = TileSampler(SegmentationData(images, masks, [str(i) for i in range(n)]), list(range(n)), 44, 20, OFF, 0)
    first = [sampler(k) for k in range(200)]
    assert len(sampler._padded) == CACHE_SLICES
    for k, sample in enumerate(first):
        for got, expected in zip(sampler(k), sample):
            np.testing.assert_array_equal(got, expected)
