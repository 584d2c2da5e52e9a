import numpy as np
import pytest

from biounet.data import IGNORE, border_weight_map, class_weights, weight_maps


def test_border_weight_peaks_between_close_cells():
    mask = np.ones((40, 60), np.int16)
    mask[:, 20:22] = 0  # a thin membrane between two cells
    mask[:, 40:50] = 0  # a wide gap between the second and third cell
    w = border_weight_map(mask, w0=10, sigma=5)
    # thin membrane at column 20: the cells are 1 px (column 19) and 2 px (column 22) away
    assert w[20, 20] == pytest.approx(10 * np.exp(-((1 + 2) ** 2) / 50), rel=1e-5)
    # wide gap at column 45: 6 px to the middle cell (column 39), 5 px to the right one (column 50)
    assert w[20, 45] == pytest.approx(10 * np.exp(-((6 + 5) ** 2) / 50), rel=1e-5)
    assert np.all(w[mask == 1] == 0)


def test_class_weights_balance_frequencies():
    masks = [np.array([[0, 1, 1, 1]], np.int16), np.array([[IGNORE, 1, 1, 1]], np.int16)]
    wc = class_weights(masks, 2)
    assert wc[0] * 1 == pytest.approx(wc[1] * 6)
    maps = weight_maps(masks, 2, 0.0, 5.0, balance=True)
    assert maps[1][0, 0] == 0.0  # ignored pixels weigh nothing
    assert weight_maps(masks, 2, 0.0, 5.0, balance=False) is None
