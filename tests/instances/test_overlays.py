"""Overlays: instances tinted over the grey image, panels side by side."""

import numpy as np
import pytest

from biounet.core.errors import DataError
from biounet.instances.overlays import grey, instance_overlay, side_by_side


def test_instances_are_tinted_and_the_gaps_stay_grey():
    image = np.linspace(-1, 1, 64, dtype=np.float32).reshape(8, 8)
    labels = np.zeros((8, 8), np.uint32)
    labels[:4] = 1
    labels[5:] = 2
    rgb = instance_overlay(image[None], labels)
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    g = grey(image)
    assert g.min() == 0 and g.max() == 255
    assert (rgb[4] == g[4][:, None]).all()  # label 0: untouched grey
    assert not (rgb[0] == g[0][:, None]).all()  # an instance: tinted
    # the same id gets the same colour wherever it is; different ids differ
    tint = rgb.astype(int) - 0.55 * g[..., None]
    assert np.allclose(tint[0, 0], tint[3, 7], atol=1.5) and not np.allclose(tint[0, 0], tint[7, 0], atol=5)
    touching = labels.copy()
    touching[4] = 1  # labels 1 and 2 now touch between rows 4 and 5: a dark line on row 5
    dark = instance_overlay(image[None], touching)
    assert (dark[5].astype(int).sum(-1) < rgb[5].astype(int).sum(-1)).all()
    assert np.array_equal(dark[6], rgb[6])
    picture = side_by_side(rgb, rgb, gap=2)
    assert picture.shape == (8, 18, 3) and (picture[:, 8:10] == 255).all()


def test_mismatched_inputs_are_refused():
    with pytest.raises(DataError, match="differ in shape"):
        instance_overlay(np.zeros((8, 8)), np.zeros((4, 4), np.uint32))
    with pytest.raises(DataError, match="one height"):
        side_by_side(np.zeros((2, 2, 3), np.uint8), np.zeros((3, 2, 3), np.uint8))
    with pytest.raises(DataError, match="one"):
        grey(np.zeros((2, 2, 2, 2)))
