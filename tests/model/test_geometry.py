"""Geometry of the unpadded U-Net: which sizes it takes and returns."""

import pytest
import torch

from biounet.core.errors import ConfigError
from biounet.model.geometry import output_size, valid_input_size, valid_sizes_near
from biounet.model.unet import UNet


def test_valid_geometry_of_the_paper():
    assert output_size(572) == 388
    assert valid_input_size(388) == 572
    assert UNet().margin == 92


def test_invalid_size_names_the_nearest_valid_ones():
    with pytest.raises(ConfigError, match="nearest valid input sizes: 540, 556, 572, 588"):
        UNet(base_width=2)(torch.zeros(1, 1, 570, 572))
    assert valid_sizes_near(570) == [540, 556, 572, 588]
    with pytest.raises(ConfigError, match="nearest valid output sizes: 388, 404"):
        valid_input_size(390)
    assert valid_input_size(390, exact=False) == valid_input_size(404)


def test_size_helpers_are_inverse_at_other_depths():
    for depth in (1, 2, 3, 5):
        for out in range(1, 120):
            try:
                size = valid_input_size(out, depth)
            except ConfigError:
                continue
            assert output_size(size, depth) == out
