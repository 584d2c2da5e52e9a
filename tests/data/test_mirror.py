"""The mirrored extension of an image: numpy's reflect padding, for whole images (training tiles) and for
boxes read from a larger image (inference tiles)."""

import numpy as np
import pytest

from biounet.data.mirror import mirror_pad, read_mirrored, reflect_indices


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_mirroring_is_numpys_reflect_even_past_several_image_lengths(n):
    a = np.arange(n)
    pad = 3 * n + 2
    expected = np.pad(a, pad, mode="symmetric" if n == 1 else "reflect")
    np.testing.assert_array_equal(a[reflect_indices(-pad, n + pad, n)], expected)


def test_a_mirrored_box_reads_only_the_in_bounds_pixels_it_needs():
    image = np.random.default_rng(0).standard_normal((1, 9, 11)).astype(np.float32)
    asked = []

    def read(y0, y1, x0, x1):
        asked.append((y0, y1, x0, x1))
        return image[:, y0:y1, x0:x1]

    box = (-4, 6, 7, 15)
    expected = np.pad(image, ((0, 0), (4, 0), (0, 4)), mode="reflect")[:, 0:10, 7:15]
    np.testing.assert_array_equal(read_mirrored(read, (9, 11), box), expected)
    assert asked == [(0, 6, 6, 11)]  # x 7..14 mirrors to 7..10, 9, 8, 7, 6


@pytest.mark.parametrize(
    ("shape", "margin", "dtype"),
    [((1, 50, 60), 12, np.float32), ((2, 5, 7), 0, np.float32), ((1, 4, 6), 92, np.float64), ((3, 1, 6), 5, np.uint8)],
)
def test_a_padded_image_is_numpys_reflect_padding_bit_for_bit(shape, margin, dtype):
    """Training tiles were cut from ``np.pad(mode="reflect")``: the same values, type and layout keep
    every run's tiles, and so its weights, unchanged."""
    image = (np.random.default_rng(0).standard_normal(shape) * 50).astype(dtype)
    padded = mirror_pad(image, margin)
    expected = np.pad(image, ((0, 0), (margin, margin), (margin, margin)), mode="reflect")
    assert padded.dtype == expected.dtype and padded.flags.c_contiguous
    assert padded.tobytes() == expected.tobytes() and padded.shape == expected.shape
    assert not np.shares_memory(padded, image)  # a copy even without a margin: the cache holds it alone
