"""The napari widget's work without napari: a layer's data checked, then segmented slice by slice
(one slice read at a time), stoppable between slices. A stand-in predictor keeps it fast."""

import numpy as np
import pytest

from biounet.core.config import TrainConfig
from biounet.core.errors import ConfigError, DataError
from biounet.integrations.napari.stack import (
    Slices,
    check_channels,
    check_memory,
    image_slices,
    segment_layer,
    segment_slices,
)

CFG = TrainConfig(depth=2, padding="same", in_channels=1, classes=2)


def predictor(batch: np.ndarray) -> np.ndarray:
    """Class 0 (membrane) scores rise with the pixel value, class 1 scores fall."""
    return np.concatenate([4 * batch[:, :1], -4 * batch[:, :1]], axis=1)


class CountingArray:
    """An array-like that records every index it is read with (a stand-in for a lazy volume)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.shape, self.dtype, self.reads = array, array.shape, array.dtype, []

    def __getitem__(self, key):
        self.reads.append(key)
        return self.array[key]


def run(gen):
    """Drive a generator to its end: (what it yielded, what it returned)."""
    yielded = []
    while True:
        try:
            yielded.append(next(gen))
        except StopIteration as stop:
            return yielded, stop.value


def test_a_stack_is_read_and_segmented_one_slice_at_a_time():
    stack = np.random.default_rng(0).integers(0, 256, (3, 40, 52), dtype=np.uint8)
    lazy = CountingArray(stack)
    done, result = run(segment_slices(image_slices(lazy, False, "em"), predictor, CFG, method="watershed"))
    assert done == [1, 2, 3]
    assert lazy.reads == [0, 1, 2]  # never the whole volume
    assert result.membrane.shape == result.cells.shape == (3, 40, 52)
    assert result.membrane.dtype == np.float32 and result.cells.dtype == np.uint32
    assert 0.0 <= result.membrane.min() and result.membrane.max() <= 1.0
    # bright pixels score as membrane here: the probability follows the pixel values
    assert np.corrcoef(result.membrane.ravel(), stack.ravel().astype(float))[0, 1] > 0.9


def test_cells_have_ids_of_their_own_through_a_stack_and_each_is_measured_in_the_layers_unit():
    stack = np.random.default_rng(0).integers(0, 256, (3, 40, 52), dtype=np.uint8)
    slices = image_slices(stack, False, "em")
    _, result = run(segment_slices(slices, predictor, CFG, method="watershed", calibration=((4.0, 4.0), "nm")))
    ids = [set(np.unique(result.cells[z]).tolist()) - {0} for z in range(3)]
    assert all(ids) and not (ids[0] & ids[1]) and not (ids[1] & ids[2]) and not (ids[0] & ids[2])
    rows = result.objects
    assert sorted((r["slice"], r["label"]) for r in rows) == sorted((z, i) for z in range(3) for i in ids[z])
    for row in rows[:: max(1, len(rows) // 10)]:
        where = result.cells[row["slice"]] == row["label"]
        assert row["unit"] == "nm" and row["area"] == pytest.approx(16.0 * where.sum())
        assert row["mean_intensity"] == pytest.approx(stack[row["slice"]][where].mean())
    plain = run(segment_slices(slices, predictor, CFG, method="watershed"))[1].objects
    assert {r["unit"] for r in plain} == {"pixel"} and len(plain) == len(rows)


def test_a_2d_image_gives_2d_results_and_no_cells_without_a_method():
    image = np.random.default_rng(1).random((33, 47)).astype(np.float32)
    done, result = run(segment_slices(image_slices(image, False, "em"), predictor, CFG))
    assert done == [1]
    assert result.membrane.shape == (33, 47) and result.cells is None and result.objects is None


def test_stopping_between_slices_reads_no_further_slice():
    lazy = CountingArray(np.zeros((5, 32, 32), np.uint8))
    gen = segment_slices(image_slices(lazy, False, "em"), predictor, CFG)
    assert next(gen) == 1
    gen.close()  # what the worker's Cancel amounts to: the generator is not resumed
    assert lazy.reads == [0]


@pytest.mark.parametrize(
    "data, rgb, words",
    [
        (np.zeros((2, 3, 16, 16), np.uint8), False, "4 dimensions"),
        (np.zeros((16,), np.uint8), False, "1 dimensions"),
        (np.zeros((2, 3, 16, 16, 3), np.uint8), True, "plus its colour axis"),
        (np.zeros((16, 16), object), False, "object values"),
        (np.zeros((16, 16), np.complex64), False, "complex64 values"),
        (np.zeros((0, 16), np.uint8), False, "empty"),
    ],
)
def test_layers_biounet_cannot_segment_are_refused_with_the_reason(data, rgb, words):
    with pytest.raises(DataError, match=words):
        image_slices(data, rgb, "bad")


def test_colour_must_fit_the_model():
    rgb = image_slices(np.zeros((16, 16, 3), np.uint8), True, "photo")
    with pytest.raises(DataError, match="RGB image, but the model m segments grey"):
        check_channels(rgb, CFG, "m")
    check_channels(rgb, TrainConfig(in_channels=3), "m")
    with pytest.raises(DataError, match="takes 3 channels"):
        check_channels(image_slices(np.zeros((16, 16), np.uint8), False, "em"), TrainConfig(in_channels=3), "m")


def test_results_that_do_not_fit_in_memory_are_refused_before_any_slice():
    slices = Slices(np.zeros((10, 100, 100), np.uint8), False, "big")
    check_memory(slices, cells=True, available=10**7)
    with pytest.raises(DataError, match="block by block"):
        check_memory(slices, cells=True, available=10**6)


def test_a_model_of_more_than_two_classes_and_an_unknown_method_are_refused():
    slices = image_slices(np.zeros((16, 16), np.uint8), False, "em")
    with pytest.raises(ConfigError, match="3 classes"):
        next(segment_slices(slices, predictor, TrainConfig(depth=2, padding="same", classes=3)))
    with pytest.raises(ConfigError, match="unknown instance method"):
        next(segment_slices(slices, predictor, CFG, method="nope"))


def test_segment_layer_opens_the_model_by_name_and_refuses_unknown_ones():
    slices = image_slices(np.zeros((16, 16), np.uint8), False, "em")
    with pytest.raises(ConfigError, match="not a built-in model"):
        next(segment_layer(slices, "no-such-model"))


def test_a_2_5d_affinity_model_sees_the_neighbouring_slices_and_shows_its_classes():
    """A model trained with --context 1 and affinities: each slice goes in with its neighbours (mirrored at
    the ends), and the membrane is the softmax of its two class channels only."""
    stack = np.stack([np.full((32, 32), 40 * z, np.uint8) for z in range(3)])
    seen = []

    def deep(batch):
        seen.append(batch[0, :, 0, 0].tolist())
        scores = np.concatenate([4 * batch[:, 1:2], -4 * batch[:, 1:2]], axis=1)
        return np.concatenate([scores, np.full((len(batch), 12, *batch.shape[2:]), 50.0, np.float32)], axis=1)

    cfg = TrainConfig(depth=2, padding="same", in_channels=1, classes=2, context=1, affinities="mws12")
    _, result = run(segment_slices(image_slices(stack, False, "em"), deep, cfg))
    level = [40 * z / 127.5 - 1 for z in range(3)]
    want = [[level[1], level[0], level[1]], [level[0], level[1], level[2]], [level[1], level[2], level[1]]]
    assert [pytest.approx(s) for s in seen] == want
    plain = run(segment_slices(image_slices(stack, False, "em"), predictor, CFG))[1]
    np.testing.assert_allclose(result.membrane, plain.membrane, atol=1e-6)
