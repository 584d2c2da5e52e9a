import numpy as np
import pytest

from biounet.core.errors import ConfigError
from biounet.data.symmetry import DIHEDRAL, transform
from biounet.segment.tiling import (
    plan_tiles,
    predict_box,
    tile_starts,
    transform_box,
    untransform_box,
)


def test_valid_tiles_start_on_the_pooling_step_and_cover_the_image():
    for depth, tile in [(2, 60), (4, 700), (4, 572)]:
        plan = plan_tiles(1000, 1000, depth=depth, tile=tile)
        starts = tile_starts(1000, plan, 0)
        assert all(s % 2**depth == 0 for s in starts)
        assert starts[0] == 0 and starts[-1] + plan.out_tile[0] >= 1000 > starts[-1]
        assert plan.out_tile[0] - plan.stride[0] < 2**depth  # neighbours overlap by less than a step


def test_default_geometry_covers_a_512_slice_with_one_700_tile():
    plan = plan_tiles(512, 512)
    assert plan.in_tile == (700, 700) and plan.out_tile == (516, 516) and plan.stride == (512, 512)
    assert plan_tiles(512, 512, tile=572).out_tile == (388, 388)
    with pytest.raises(ConfigError, match="nearest valid input sizes"):
        plan_tiles(512, 512, tile=570)


@pytest.mark.parametrize("k, flip", DIHEDRAL)
def test_boxes_follow_the_symmetries(k, flip):
    shape, box = (5, 8), (1, 3, 2, 7)
    marked = np.zeros(shape, bool)
    marked[box[0] : box[1], box[2] : box[3]] = True
    moved = transform(marked, k, flip)
    tbox, tshape = transform_box(box, shape, k, flip)
    assert tshape == moved.shape
    ys, xs = np.nonzero(moved)
    assert tbox == (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1)
    assert untransform_box(tbox, tshape, k, flip) == (box, shape)


def test_a_box_is_computed_by_the_whole_images_tiles_only():
    """A box runs only the tiles of the whole image's grid that overlap it, at the grid's places."""
    plan = plan_tiles(100, 100, depth=2, tile=60)  # 20-pixel context, 20 out, stride 20
    seen = []

    def predictor(batch):
        seen.append(batch.shape[0])
        return np.zeros((batch.shape[0], 2, 20, 20), np.float32)

    image = np.zeros((1, 100, 100), np.float32)
    out = predict_box(lambda a, b, c, d: image[:, a:b, c:d], (100, 100), (13, 30, 50, 61), predictor, plan, 64)
    assert out.shape == (2, 17, 11)
    assert sum(seen) == 2 * 2  # rows from 0 and 20, columns from 40 and 60


def test_a_box_on_the_stride_runs_only_its_own_valid_tiles_and_tiny_tiles_are_refused():
    plan = plan_tiles(2048, 2048, depth=4, tile=700)  # 516 out, stride 512: neighbours overlap by 4
    seen = []

    def predictor(batch):
        seen.append(batch.shape[0])
        return np.zeros((batch.shape[0], 2, 516, 516), np.float32)

    image = np.zeros((1, 2048, 2048), np.float32)
    predict_box(lambda a, b, c, d: image[:, a:b, c:d], (2048, 2048), (512, 1024, 512, 1024), predictor, plan, 64)
    assert sum(seen) == 1  # the tile from 0 reaches 4 pixels in, but the tile from 512 overwrites them
    with pytest.raises(ConfigError, match="use --tile 204"):
        plan_tiles(64, 64, depth=4, tile=188)


def test_class_channels_get_the_softmax_and_affinity_channels_the_sigmoid():
    from biounet.segment.tiling import class_count, probabilities, sigmoid, softmax

    scores = np.random.default_rng(0).normal(0, 30, (2, 5, 3, 4)).astype(np.float32)
    out = probabilities(scores, 2)
    np.testing.assert_allclose(out[:, :2], softmax(scores[:, :2]), rtol=1e-6)
    np.testing.assert_allclose(out[:, 2:], 1 / (1 + np.exp(-scores[:, 2:].astype(np.float64))), rtol=1e-5, atol=1e-30)
    np.testing.assert_array_equal(probabilities(scores, 5), softmax(scores))  # classes only: as before
    assert sigmoid(np.float32([-1000.0, 0.0, 1000.0])).tolist() == [0.0, 0.5, 1.0]  # no overflow
    assert class_count(14, 2, 12) == class_count(14, None, 12) == 2 and class_count(2, None, 0) == 2
    with pytest.raises(ConfigError, match="returned 14 channels.*3 classes and 12 affinity offsets"):
        class_count(14, 3, 12)
