import numpy as np
import pytest
import torch

from biounet.core.errors import ConfigError
from biounet.model.geometry import valid_margin
from biounet.model.unet import UNet
from biounet.segment.inference import segment, segment_box, torch_predictor
from biounet.segment.tiling import plan_tiles


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


@pytest.mark.parametrize("tta", [False, True])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_any_box_equals_the_same_box_of_the_whole_image(tta, padding):
    """The tile grid is fixed to the image, so a box segmented alone has the whole image's values."""
    torch.manual_seed(0)
    model = UNet(base_width=2, depth=2, padding=padding)
    image = np.random.default_rng(3).uniform(-1, 1, (1, 150, 123)).astype(np.float32)
    predictor = torch_predictor(model, "cpu", "fp32")
    tile = 60 if padding == "valid" else 32
    whole = segment(image, predictor, depth=2, padding=padding, tile=tile, tta=tta)

    def read(y0, y1, x0, x1):
        assert 0 <= y0 < y1 <= 150 and 0 <= x0 < x1 <= 123  # only in-bounds boxes are read
        return image[:, y0:y1, x0:x1]

    reads = []

    def counted(*box):
        reads.append(box)
        return read(*box)

    for box in [(0, 40, 0, 123), (37, 101, 5, 64), (148, 150, 100, 123), (0, 150, 0, 123)]:
        reads.clear()
        part = segment_box(counted, (150, 123), box, predictor, depth=2, padding=padding, tile=tile, tta=tta)
        np.testing.assert_allclose(part, whole[:, box[0] : box[1], box[2] : box[3]], rtol=0, atol=1e-5)
        # TTA reads the image at most 3 times, not once per symmetry (8)
        assert 1 <= len(reads) <= (3 if tta else 1), reads
