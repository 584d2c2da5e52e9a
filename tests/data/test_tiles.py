import numpy as np
import pytest

from biounet.core.errors import DataError
from biounet.data import AugmentConfig, TileSampler
from biounet.data.readers import IGNORE, SegmentationData

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


# --- affinity targets and context sections ---------------------------------------------------------

NEAR = ((-1, 0), (0, -1))


def _affinity_sampler(data, augment, **kwargs):
    from biounet.data.affinities import DEFAULT_OFFSETS

    kwargs.setdefault("offsets", DEFAULT_OFFSETS)
    return TileSampler(data, list(range(len(data))), 92, 52, augment, seed=3, **kwargs)


@pytest.mark.parametrize("augment", [AugmentConfig(), OFF], ids=["augmented", "plain"])
def test_affinities_leave_the_samples_draws_unchanged(isbi_data, augment):
    """The affinity targets add no draw: image, mask and weight are those of a sampler without them."""
    plain = TileSampler(isbi_data, list(range(30)), 92, 52, augment, seed=3)
    with_aff = _affinity_sampler(isbi_data, augment)
    for k in (0, 7, 123):
        a, b = plain(k), with_aff(k)
        assert len(a) == 3 and len(b) == 5
        for x, y in zip(a, b[:3]):
            np.testing.assert_array_equal(x, y)
        targets, valid = b[3:]
        assert targets.shape == valid.shape == (12, 52, 52)
        assert targets.dtype == np.float32 and valid.dtype == np.uint8
        assert not targets[valid == 0].any()


@pytest.mark.parametrize("augment", [AugmentConfig(), OFF], ids=["augmented", "plain"])
def test_affinity_targets_follow_the_augmented_mask(isbi_data, augment):
    """With the membrane kept as an object, a nearest-neighbour edge is 1 between two membrane pixels and 0
    between membrane and cell: the instance labels were warped, flipped and rotated exactly as the mask."""
    sampler = _affinity_sampler(isbi_data, augment, offsets=NEAR, membrane_mode="keep")
    for k in range(6):
        _, mask, _, targets, valid = sampler(k)
        for c, (dy, dx) in enumerate(NEAR):
            p, q = mask[-dy:, -dx:], mask[: mask.shape[0] + dy, : mask.shape[1] + dx]
            t, v = targets[c][-dy:, -dx:], valid[c][-dy:, -dx:]
            assert v.any()
            assert not t[(v > 0) & (p != q)].any()  # membrane next to cell
            assert t[(v > 0) & (p == 0) & (q == 0)].all()  # membrane next to membrane


def test_edges_leaving_the_image_or_touching_ignored_pixels_have_no_target():
    mask = np.ones((40, 40), np.int16)
    mask[:, 20] = 0  # a membrane line between two cells
    mask[5:8, 30:33] = -1  # ignored
    image = np.zeros((1, 40, 40), np.float32)
    data = SegmentationData([image], [mask], ["a"])
    strong = AugmentConfig(flip=False, rotate90=False, elastic=True, elastic_sigma=30, brightness=0, contrast=0)
    sampler = TileSampler(data, [0], 40, 40, strong, seed=0, offsets=NEAR)
    outside = 0
    for k in range(20):
        _, m, _, targets, valid = sampler(k)
        ignored = m == -1
        # an ignored pixel (mask warped by nearest neighbour, as the labels) has no edge
        assert not valid[0][ignored].any() and not valid[1][ignored].any()
        # pixels sampled beyond the image (the mask's mirrored border) have no edges, the rest all have
        outside += int((valid.sum(0) == 0).sum() - ignored.sum())
    assert outside > 0
    plain = TileSampler(data, [0], 40, 40, OFF, seed=0, offsets=NEAR)
    _, m, _, targets, valid = plain(0)
    assert not valid[0][0].any() and not valid[1][:, 0].any()  # edges leaving the tile
    # "grow": the membrane column joins a cell on either side (a tie, row by row): one cut per row
    np.testing.assert_array_equal(targets[1][:, 20] + targets[1][:, 21], 1)
    assert targets[1][10:, 1:20].all() and targets[1][10:, 22:].all()


def test_a_sampler_with_context_gives_the_neighbouring_sections(isbi_data):
    flat = TileSampler(isbi_data, list(range(30)), 60, 20, OFF, seed=5)
    deep = TileSampler(isbi_data, list(range(30)), 60, 20, OFF, seed=5, context=1)
    for k in range(4):
        image, mask, _ = deep(k)
        assert image.shape == (3, 60, 60)
        np.testing.assert_array_equal(image[1:2], flat(k)[0])  # the middle section is the 2D tile
        np.testing.assert_array_equal(mask, flat(k)[1])
        assert not np.array_equal(image[0], image[1])


def test_context_is_refused_for_independent_images():
    from biounet.core.errors import ConfigError

    data = SegmentationData([np.zeros((1, 30, 30), np.float32)], [np.zeros((30, 30), np.int16)], ["a"])
    with pytest.raises(ConfigError, match="independent 2D images"):
        TileSampler(data, [0], 20, 20, OFF, seed=0, context=1)


# --- sparse (painted) labels --------------------------------------------------------------------------


def _old_positions(masks, indices, out_tile, seed, n):
    """(image, y0, x0) of samples 0..n-1 as the sampler drew them before sparse labels: image, then row, then
    column, each uniform, from the generator of (seed, index)."""
    out = []
    for k in range(n):
        rng = np.random.default_rng([seed, k])
        i = indices[int(rng.integers(len(indices)))]
        h, w = masks[i].shape
        out.append((i, int(rng.integers(h - out_tile + 1)), int(rng.integers(w - out_tile + 1))))
    return out


def test_dense_masks_draw_the_tiles_they_always_drew():
    """A fully labelled mask takes no new draw: every sample's image, position and (after them) flips and
    rotations are the ones of earlier releases (benchmarks/same_seed.py checks trained weights end to end)."""
    from biounet.data.augment import flip_rotate

    flips = AugmentConfig(flip=True, rotate90=True, elastic=False, brightness=0, contrast=0)
    rng = np.random.default_rng(3)
    images = [rng.standard_normal((1, 40, 50 + 10 * k)).astype(np.float32) for k in range(3)]
    masks = [rng.integers(0, 3, im.shape[1:]).astype(np.int16) for im in images]
    sampler = TileSampler(SegmentationData(images, masks, ["a", "b", "c"]), [0, 2], 44, 20, flips, seed=5)
    for k, (i, y0, x0) in enumerate(_old_positions(masks, [0, 2], 20, 5, 40)):
        rng = np.random.default_rng([5, k])
        rng.integers(2), rng.integers(21), rng.integers(masks[i].shape[1] - 19)  # image, row, column
        (expected,) = flip_rotate([masks[i][y0 : y0 + 20, x0 : x0 + 20]], rng, flips)
        np.testing.assert_array_equal(sampler(k)[1], expected)
    assert sampler.indices == [0, 2]


def _sparse(side=200, patch=(120, 37), size=10):
    """A mask unlabelled but for one size x size patch of classes 0 and 1 at ``patch`` (row, column)."""
    mask = np.full((side, side), IGNORE, np.int16)
    y, x = patch
    mask[y : y + size, x : x + size] = np.arange(size * size).reshape(size, size) % 2
    return mask


def test_tiles_of_a_sparse_mask_cover_its_labelled_pixels():
    """One labelled 10 x 10 patch in a 200 x 200 mask: every tile holds labelled pixels (a uniform position
    would hit it about once in 30 draws), at positions that vary, clamped to the image at its edges."""
    mask = _sparse()
    image = np.zeros((1, 200, 200), np.float32)
    flips = AugmentConfig(flip=True, rotate90=True, elastic=False, brightness=0, contrast=0)
    sampler = TileSampler(SegmentationData([image], [mask], ["sparse"]), [0], 44, 20, flips, seed=0)
    labelled = [int((sampler(k)[1] != IGNORE).sum()) for k in range(200)]
    assert min(labelled) > 0 and len(set(labelled)) > 10
    corner = _sparse(patch=(0, 190))
    edge = TileSampler(SegmentationData([image], [corner], ["corner"]), [0], 44, 20, OFF, seed=0)
    rows = sampler.labelled_rows(0)
    assert rows[-1] == 100 and rows[119] == 0 and rows[120] == 10
    corners = [edge._position(edge.rng(k), 0, 200, 200) for k in range(100)]
    assert all(0 <= y0 <= 9 and 171 <= x0 <= 180 for y0, x0 in corners)  # a patch pixel in the tile, in the image
    assert max(x0 for _, x0 in corners) == 180 and min(y0 for y0, _ in corners) == 0  # clamped at the edges


def test_elastic_tiles_of_a_sparse_mask_hold_labelled_pixels():
    """The deformation may carry a labelled pixel at a tile's edge out of it: most tiles keep one (a uniform
    position would hit the 20 x 20 patch about once in 20 draws)."""
    mask = _sparse(size=20)
    sampler = TileSampler(
        SegmentationData([np.zeros((1, 200, 200), np.float32)], [mask], ["s"]), [0], 44, 20, AugmentConfig(), seed=1
    )
    hits = [bool((sampler(k)[1] != IGNORE).any()) for k in range(100)]
    assert sum(hits) >= 85


def test_images_without_a_labelled_pixel_are_left_out_and_said(caplog):
    import logging

    image = np.zeros((1, 40, 40), np.float32)
    unlabelled = np.full((40, 40), IGNORE, np.int16)
    data = SegmentationData([image] * 3, [_sparse(40, (5, 5)), unlabelled, unlabelled], ["a", "b", "c"])
    with caplog.at_level(logging.INFO, logger="biounet"):
        sampler = TileSampler(data, [0, 1, 2], 44, 20, OFF, seed=0)
    assert sampler.indices == [0]
    said = [r.getMessage() for r in caplog.records if "no labelled pixel" in r.getMessage()]
    assert said == ["2 of the 3 training images have no labelled pixel and are left out of training: b, c"]
    with pytest.raises(DataError, match="^no labelled pixel in the training masks: .*paint at least one"):
        TileSampler(data, [1, 2], 44, 20, OFF, seed=0)
