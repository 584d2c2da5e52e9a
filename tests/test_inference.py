import numpy as np
import pytest
import torch

from biounet.errors import ConfigError
from biounet.geometry import valid_margin
from biounet.inference import DIHEDRAL, plan_tiles, segment, torch_predictor, transform, untransform
from biounet.model import UNet


def crop_predictor(margin):
    """An identity-like valid network: returns the centre of each input tile."""

    def predict(batch):
        h, w = batch.shape[-2:]
        return batch[:, :, margin : h - margin, margin : w - margin].copy()

    return predict


@pytest.mark.parametrize("tta", [False, True])
@pytest.mark.parametrize("shape", [(301, 517), (5, 7), (64, 64)])
def test_valid_tiler_reproduces_its_input_exactly(shape, tta):
    image = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
    out = segment(image, crop_predictor(valid_margin(2)), depth=2, tile=60, tta=tta, softmax=False)
    assert out.shape == image.shape
    if tta:  # the mean of 8 equal copies, summed in float32, may differ in the last bit
        np.testing.assert_allclose(out, image, rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize("tta", [False, True])
def test_same_tiler_blends_without_seams(tta):
    image = np.random.default_rng(1).standard_normal((1, 301, 517)).astype(np.float32)
    out = segment(image, lambda b: b.copy(), depth=3, padding="same", tile=64, tta=tta, softmax=False)
    np.testing.assert_allclose(out, image, atol=1e-5)


def test_the_eight_symmetries_are_distinct_and_inverted():
    a = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    seen = set()
    for k, flip in DIHEDRAL:
        t = transform(a, k, flip)
        seen.add(t.tobytes() + bytes(t.shape))
        np.testing.assert_array_equal(untransform(t, k, flip), a)
    assert len(seen) == 8


def test_default_geometry_covers_a_512_slice_with_one_700_tile():
    plan = plan_tiles(512, 512)
    assert plan.in_tile == (700, 700) and plan.out_tile == (516, 516)
    assert plan_tiles(512, 512, tile=572).out_tile == (388, 388)
    with pytest.raises(ConfigError, match="nearest valid input sizes"):
        plan_tiles(512, 512, tile=570)


def test_real_model_gives_probabilities_at_full_resolution():
    model = UNet(base_width=2, depth=2)
    image = np.random.default_rng(2).uniform(-1, 1, (1, 45, 67)).astype(np.float32)
    probs = segment(image, torch_predictor(model, "cpu"), depth=2, batch_size=3)
    assert probs.shape == (2, 45, 67)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    # one tile of the whole image equals running the model on the mirror-padded image
    m = valid_margin(2)
    padded = np.pad(image, ((0, 0), (m, m + 3), (m, m + 1)), mode="reflect")
    with torch.no_grad():
        direct = torch.softmax(model(torch.from_numpy(padded[None])), 1)[0, :, :45, :67].numpy()
    single = segment(image, torch_predictor(model, "cpu"), depth=2)
    assert plan_tiles(45, 67, depth=2).out_tile == (48, 68)
    np.testing.assert_allclose(single, direct, atol=1e-5)


def test_predictor_with_wrong_output_shape_is_reported():
    with pytest.raises(ConfigError, match="predictor returned shape"):
        segment(np.zeros((1, 30, 30), np.float32), lambda b: b[:, :, :3, :3], depth=2, tile=60)
