import numpy as np

from biounet.instances.labels import relabel


def test_relabel_keeps_background_and_numbers_the_rest_in_order():
    labels = np.array([[0, 7, 7], [3, 0, 12]], np.int64)
    out = relabel(labels)
    assert out.dtype == np.uint32
    np.testing.assert_array_equal(out, [[0, 2, 2], [1, 0, 3]])


def test_relabel_without_background_starts_at_one():
    np.testing.assert_array_equal(relabel(np.array([[5, 9], [9, 5]])), [[1, 2], [2, 1]])
