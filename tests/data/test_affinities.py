"""Affinity targets: hand-computed small cases, agreement with bioimage-cpp's compute_affinities, and
test-time augmentation: targets computed on a flipped/rotated label image and mapped back are exactly
the targets of the original labels."""

import bioimage_cpp as bic
import numpy as np
import pytest

from biounet.core.errors import ConfigError, DataError
from biounet.data.affinities import (
    DEFAULT_OFFSETS,
    SYMMETRIES,
    affinity_targets,
    attractive_count,
    boundary_from_affinities,
    check_affinities,
    check_offsets,
    instance_labels,
    pair_slices,
    transform_offset,
    tta_offset_map,
    untransform_affinities,
)
from biounet.data.readers import IGNORE
from biounet.data.symmetry import DIHEDRAL, transform


def random_labels(rng: np.random.Generator, shape=(37, 45), ignored=0.1) -> np.ndarray:
    """Blocky random labels 0..5 (so that long-range edges see both answers), some pixels IGNORE."""
    coarse = rng.integers(0, 6, (shape[0] // 4 + 1, shape[1] // 4 + 1))
    labels = np.kron(coarse, np.ones((4, 4), np.int64))[: shape[0], : shape[1]]
    labels[rng.random(shape) < ignored] = IGNORE
    return labels


def test_default_offsets_are_closed_under_the_square_symmetries():
    assert attractive_count(DEFAULT_OFFSETS) == 2
    assert DEFAULT_OFFSETS[:2] == ((-1, 0), (0, -1))
    assert len(DEFAULT_OFFSETS) == 12
    for symmetry in SYMMETRIES:
        channel, _ = tta_offset_map(DEFAULT_OFFSETS, symmetry)
        assert sorted(channel.tolist()) == list(range(12)), symmetry  # a permutation of the channels
        assert (channel[:2] < 2).all()  # attractive channels stay attractive


def test_symmetries_are_the_tilers():
    assert list(SYMMETRIES) == DIHEDRAL


@pytest.mark.parametrize("symmetry", SYMMETRIES)
def test_transform_offset_follows_the_pixels(symmetry):
    """Two marked pixels p and p + o, moved by the tiler's transform, lie transform_offset(o) apart."""
    for offset in [(-1, 0), (0, -1), (9, -4), (-4, -9), (2, 3)]:
        image = np.zeros((30, 31), np.int64)
        image[12, 14], image[12 + offset[0], 14 + offset[1]] = 1, 2
        moved = transform(image, *symmetry)
        a, b = np.argwhere(moved == 1)[0], np.argwhere(moved == 2)[0]
        assert tuple((b - a).tolist()) == transform_offset(offset, symmetry)


def test_tta_offset_map_by_hand():
    # one quarter turn: (dy, dx) -> (-dx, dy), so (-1, 0) -> (0, -1) and (0, -1) -> (1, 0) = -(-1, 0)
    channel, negated = tta_offset_map([(-1, 0), (0, -1)], (1, False))
    assert channel.tolist() == [1, 0] and negated.tolist() == [False, True]
    # the mirror of the last axis: (0, -1) -> (0, 1) = -(0, -1); (-1, 0) stays
    channel, negated = tta_offset_map([(-1, 0), (0, -1)], (0, True))
    assert channel.tolist() == [0, 1] and negated.tolist() == [False, True]


def test_open_offset_set_is_refused_for_tta():
    with pytest.raises(ConfigError, match=r"not closed under the symmetry \(1, False\).*\(-9, -4\)"):
        tta_offset_map([(-1, 0), (0, -1), (-9, -4)], (1, False))
    with pytest.raises(ConfigError, match="symmetry"):
        tta_offset_map(DEFAULT_OFFSETS, (4, False))


@pytest.mark.parametrize(
    "offsets, message",
    [
        ([(0, 0)], "links a pixel to itself"),
        ([(-1, 0), (-1, 0)], "repeats an edge set"),
        ([(-1, 0), (1, 0)], "repeats an edge set"),
        ([(-1, 0, 0)], "not a \\(dy, dx\\) pair"),
        ([(-1.0, 0)], "not a \\(dy, dx\\) pair"),
        ([], "no affinity offsets"),
    ],
)
def test_bad_offsets(offsets, message):
    with pytest.raises(ConfigError, match=message):
        check_offsets(offsets)


def test_pair_slices_by_hand():
    (p, q) = pair_slices((4, 5), (-1, 2))
    assert p == (slice(1, 4), slice(0, 3)) and q == (slice(0, 3), slice(2, 5))
    assert pair_slices((4, 5), (0, -5)) is None  # every edge leaves the image


def test_instance_labels_keep_by_hand():
    mask = np.array(
        [
            [1, 1, 0, 1, 1],
            [1, 1, 0, 0, 1],
            [0, 0, 1, 0, -1],
        ],
        np.int16,
    )
    labels = instance_labels(mask, membrane_mode="keep")
    # (2, 2) touches (1, 1) only diagonally: a cell of its own (4-connectivity)
    expected = np.array([[1, 1, 0, 2, 2], [1, 1, 0, 0, 2], [0, 0, 3, 0, -1]])
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, expected)


def test_instance_labels_grow_by_hand():
    mask = np.array(
        [
            [1, 1, 0, 0, 0, 1, 1],
            [1, 1, 0, 0, 0, 1, 1],
            [1, 0, 0, 0, -1, 0, 1],
        ],
        np.int16,
    )
    labels = instance_labels(mask, membrane_mode="grow")
    # the membrane goes to the nearer cell; column 3 is equally far: either cell, one connected region each
    assert (labels[:, :3] == 1).all() and (labels[:2, 4:] == 2).all() and (labels[2, 5:] == 2).all()
    assert set(labels[:2, 3].tolist()) <= {1, 2}
    assert labels[2, 4] == IGNORE
    assert set(np.unique(labels).tolist()) == {IGNORE, 1, 2}


def test_instance_labels_grow_leaves_unreachable_membrane_ignored():
    mask = np.zeros((5, 5), np.int16)
    mask[2, 2] = 1
    assert (instance_labels(mask)[mask == 0] == 1).all()  # one cell takes every membrane pixel
    mask[:, 3] = IGNORE
    labels = instance_labels(mask)
    assert (labels[:, 4] == IGNORE).all() and (labels[:, :3] == 1).all()
    assert (instance_labels(np.zeros((3, 3), np.int16)) == IGNORE).all()  # no cell to grow from
    assert (instance_labels(np.zeros((3, 3), np.int16), membrane_mode="keep") == 0).all()


def test_instance_labels_refuse_bad_masks():
    with pytest.raises(DataError, match=r"classes \[2\]"):
        instance_labels(np.array([[0, 1], [2, 1]]))
    with pytest.raises(DataError, match=r"\(H, W\) integer"):
        instance_labels(np.zeros((2, 2), np.float32))
    with pytest.raises(ConfigError, match="ignore=1 is a class"):
        instance_labels(np.zeros((2, 2), np.int16), ignore=1)
    with pytest.raises(ConfigError, match="membrane_mode 'shrink'"):
        instance_labels(np.zeros((2, 2), np.int16), membrane_mode="shrink")


def test_affinity_targets_by_hand():
    labels = np.array([[1, 1, 2], [1, 3, 3], [-1, 3, 3]])
    targets, valid = affinity_targets(labels, [(0, -1), (-1, 0), (2, 2)])
    # (0, -1): pixel p against its left neighbour; column 0 has none
    np.testing.assert_array_equal(targets[0], [[0, 1, 0], [0, 0, 1], [0, 0, 1]])
    np.testing.assert_array_equal(valid[0], [[0, 1, 1], [0, 1, 1], [0, 0, 1]])  # (2, 1) touches IGNORE
    # (-1, 0): p against the pixel above; row 0 has none
    np.testing.assert_array_equal(targets[1], [[0, 0, 0], [1, 0, 0], [0, 1, 1]])
    np.testing.assert_array_equal(valid[1], [[0, 0, 0], [1, 1, 1], [0, 1, 1]])
    # (2, 2): only (0, 0) -> (2, 2), labels 1 and 3
    np.testing.assert_array_equal(valid[2], [[1, 0, 0], [0, 0, 0], [0, 0, 0]])
    assert targets[2].sum() == 0
    assert targets.dtype == np.float32 and valid.dtype == np.uint8


def test_affinity_targets_ignore_mask():
    labels = np.zeros((3, 3), np.int64)
    ignore = np.zeros((3, 3), bool)
    ignore[1, 1] = True
    targets, valid = affinity_targets(labels, [(0, -1)], ignore_mask=ignore)
    np.testing.assert_array_equal(valid[0], [[0, 1, 1], [0, 0, 0], [0, 1, 1]])
    np.testing.assert_array_equal(targets[0], valid[0])
    with pytest.raises(DataError, match="ignore_mask"):
        affinity_targets(labels, [(0, -1)], ignore_mask=ignore.astype(np.uint8))


@pytest.mark.parametrize("seed", [0, 1])
def test_affinity_targets_agree_with_bioimage_cpp(seed):
    rng = np.random.default_rng(seed)
    labels = random_labels(rng)
    offsets = list(DEFAULT_OFFSETS) + [(3, 5), (-2, 40)]  # a positive offset, one longer than the image
    targets, valid = affinity_targets(labels, offsets)
    expected, expected_valid = bic.affinities.compute_affinities(labels, offsets, ignore_label=IGNORE)
    np.testing.assert_array_equal(targets, expected)
    np.testing.assert_array_equal(valid, expected_valid)


@pytest.mark.parametrize("symmetry", SYMMETRIES)
def test_untransformed_targets_of_transformed_labels_are_the_targets(symmetry):
    rng = np.random.default_rng(3)
    labels = random_labels(rng, (41, 34))
    targets, valid = affinity_targets(labels, DEFAULT_OFFSETS)
    moved_targets, moved_valid = affinity_targets(np.ascontiguousarray(transform(labels, *symmetry)))
    back = untransform_affinities(moved_targets, DEFAULT_OFFSETS, symmetry)
    back_valid = untransform_affinities(moved_valid, DEFAULT_OFFSETS, symmetry)
    np.testing.assert_array_equal(back_valid, valid)  # the same edges are valid ...
    np.testing.assert_array_equal(back[valid == 1], targets[valid == 1])  # ... with the same targets
    assert back.shape == targets.shape and back.dtype == np.float32


def test_untransform_fills_edges_that_leave_the_image():
    aff = np.full((2, 3, 4), 0.5, np.float32)
    back = untransform_affinities(aff, [(-1, 0), (0, -1)], (0, True), fill=-1.0)
    # the mirror turns (0, -1) into its negative: the edge of column x is read at column x - 1, and the edge
    # of column 0 leaves the image
    assert (back[1][:, 1:] == 0.5).all() and (back[1][:, 0] == -1.0).all()
    assert (back[0] == 0.5).all()
    with pytest.raises(DataError, match="do not match 3 offsets"):
        untransform_affinities(aff, [(-1, 0), (0, -1), (-2, 0)], (0, False))


def test_boundary_from_affinities_by_hand():
    labels = np.zeros((4, 6), np.int64)
    labels[:, 3:] = 1
    targets, _ = affinity_targets(labels)
    boundary = boundary_from_affinities(targets, DEFAULT_OFFSETS)
    expected = np.zeros((4, 6), np.float32)
    expected[:, 2:4] = 1.0  # both pixels of each cut edge
    np.testing.assert_array_equal(boundary, expected)
    assert boundary.dtype == np.float32


def test_boundary_is_the_largest_cut_touching_a_pixel():
    aff = np.ones((2, 2, 2), np.float32)
    aff[0, 0, 1] = 0.8  # channel (0, -1) at (0, 1): edge (0, 1)-(0, 0), cut 0.2
    aff[1, 1, 0] = 0.3  # channel (-1, 0) at (1, 0): edge (1, 0)-(0, 0), cut 0.7
    boundary = boundary_from_affinities(aff, [(0, -1), (-1, 0)])
    np.testing.assert_allclose(boundary, [[0.7, 0.2], [0.7, 0.0]], atol=1e-6)


def test_boundary_and_affinity_checks():
    with pytest.raises(ConfigError, match="no nearest-neighbour step"):
        boundary_from_affinities(np.ones((1, 4, 4)), [(-9, 0)])
    with pytest.raises(DataError, match=r"do not match the 12 offsets; expected \(12, H, W\)"):
        check_affinities(np.ones((2, 4, 4)), DEFAULT_OFFSETS)
    bad = np.ones((2, 4, 4), np.float32)
    bad[0, 1, 1] = np.nan
    with pytest.raises(DataError, match="1 NaN or infinite"):
        check_affinities(bad, ((-1, 0), (0, -1)))
    with pytest.raises(DataError, match=r"range over \[0, 3\].*sigmoid"):
        check_affinities(np.arange(2 * 4 * 4).reshape(2, 4, 4) % 4, ((-1, 0), (0, -1)))


def test_the_offset_sets_are_the_configs_choices():
    from dataclasses import fields

    from biounet.core.config import TrainConfig
    from biounet.data.affinities import OFFSET_SETS, offsets_for, output_channels

    choices = next(f for f in fields(TrainConfig) if f.name == "affinities").metadata["choices"]
    assert tuple(OFFSET_SETS) == choices
    assert offsets_for("none") == () and offsets_for("mws12") == DEFAULT_OFFSETS
    assert output_channels(TrainConfig()) == 2 and output_channels(TrainConfig(affinities="mws12")) == 14
    with pytest.raises(ConfigError, match="'mws9' is not an offset set; choose one of none, mws12"):
        offsets_for("mws9")
