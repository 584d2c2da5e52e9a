"""The plugin's sample data: biounet's synthetic EM images, the same on every call."""

import numpy as np

from biounet.integrations.napari.sample import synthetic_image, synthetic_stack


def test_samples_are_synthetic_em_layers_and_reproducible():
    ((image, kwargs, kind),) = synthetic_image()
    assert kind == "image" and kwargs["name"] == "synthetic EM image"
    assert image.shape == (256, 256) and image.dtype == np.uint8 and image.std() > 20
    np.testing.assert_array_equal(image, synthetic_image()[0][0])
    ((stack, _, _),) = synthetic_stack(slices=3, size=64)
    assert stack.shape == (3, 64, 64) and stack.dtype == np.uint8
    assert not np.array_equal(stack[0], stack[1])  # independent slices
