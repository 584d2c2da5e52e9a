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


# --- affinity channels ----------------------------------------------------------------------------

AFF_OFFSETS = ((-1, 0), (0, -1), (-3, 0), (0, -3), (-2, -2), (2, -2))  # closed under the square's symmetries


def _cells(shape, seed=0):
    """An (H, W) label image of irregular cells 1..n (nearest of random seeds), no symmetry of its own."""
    rng = np.random.default_rng(seed)
    seeds = rng.uniform(0, max(shape), (40, 2))
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    dist = (yy[..., None] - seeds[:, 0]) ** 2 + 1.7 * (xx[..., None] - seeds[:, 1]) ** 2
    return (dist.argmin(-1) + 1).astype(np.int64)


def exact_affinity_predictor(margin, skew=0.0):
    """A valid 'network' that reads cell labels from its input (value / 1000) and returns two class scores
    and the exact affinity logits of the labels it sees (+20 same cell, -20 not), computed in its own frame,
    so a flipped or rotated input gets the flipped or rotated answer. ``skew`` adds that times the step of
    the labels to the next column: the answer then depends on the input's orientation, as a real network's."""
    from biounet.data.affinities import affinity_targets

    def predict(batch):
        out = []
        for tile in batch:
            labels = np.rint(tile[0] * 1000).astype(np.int64)
            targets, _ = affinity_targets(labels, AFF_OFFSETS)
            classes = np.stack([labels % 3, -(labels % 5)]).astype(np.float32)
            aff = np.where(targets > 0, 20.0, -20.0) * (0.1 if skew else 1.0)
            aff[:, :, :-1] += skew * np.sign(labels[:, 1:] - labels[:, :-1])
            scores = np.concatenate([classes, aff]).astype(np.float32)
            out.append(scores[:, margin:-margin, margin:-margin])
        return np.stack(out)

    return predict


def test_affinity_channels_are_exact_and_the_same_with_and_without_tta():
    from biounet.data.affinities import affinity_targets
    from biounet.segment.tiling import sigmoid, softmax

    labels = _cells((71, 93))
    image = (labels / 1000).astype(np.float32)[None]
    predict = exact_affinity_predictor(valid_margin(2))
    kwargs = dict(depth=2, tile=60, num_classes=2, offsets=AFF_OFFSETS)
    plain = segment(image, predict, **kwargs)
    assert plain.shape == (2 + len(AFF_OFFSETS), 71, 93)
    # the class channels are the softmax of the first two scores, the affinities the sigmoid of the rest
    classes = np.stack([labels % 3, -(labels % 5)]).astype(np.float32)
    np.testing.assert_allclose(plain[:2], softmax(classes[None])[0], atol=1e-6)
    targets, valid = affinity_targets(labels, AFF_OFFSETS)
    want = sigmoid(np.where(targets > 0, 20.0, -20.0).astype(np.float32))
    np.testing.assert_allclose(plain[2:][valid > 0], want[valid > 0], atol=1e-6)
    # TTA: each symmetry's channels mapped back (negated ones read one offset away) give the same values,
    # edges leaving the image included
    np.testing.assert_allclose(segment(image, predict, tta=True, **kwargs), plain, atol=1e-6)


@pytest.mark.parametrize("skew", [0.0, 1.5])
@pytest.mark.parametrize("box", [(10, 40, 20, 61), (0, 71, 0, 93), (0, 7, 80, 93), (33, 34, 50, 51)])
def test_a_box_of_affinities_with_tta_equals_the_box_of_the_whole_image(box, skew):
    """Block-wise use: the negated channels read one offset beyond the box, so a box is predicted grown by the
    largest offset (within the image) and cropped. With ``skew`` the symmetries disagree, as a network's do."""
    labels = _cells((71, 93), seed=1)
    image = (labels / 1000).astype(np.float32)[None]
    predict = exact_affinity_predictor(valid_margin(2), skew)
    kwargs = dict(depth=2, tile=60, tta=True, num_classes=2, offsets=AFF_OFFSETS)
    whole = segment(image, predict, **kwargs)

    def read(y0, y1, x0, x1):
        return image[:, y0:y1, x0:x1]

    part = segment_box(read, (71, 93), box, predict, **kwargs)
    y0, y1, x0, x1 = box
    np.testing.assert_allclose(part, whole[:, y0:y1, x0:x1], atol=1e-6)


def test_without_offsets_every_channel_is_a_class_as_before():
    image = np.random.default_rng(3).standard_normal((1, 40, 50)).astype(np.float32)
    predict = crop_predictor(valid_margin(2))
    stacked = np.concatenate([image, -image, 0.5 * image])
    before = segment(stacked, predict, depth=2, tile=60, tta=True)
    np.testing.assert_array_equal(segment(stacked, predict, depth=2, tile=60, tta=True, num_classes=3), before)
    np.testing.assert_allclose(before.sum(0), 1.0, atol=1e-5)


def test_channels_that_do_not_fit_the_model_are_reported():
    image = np.zeros((1, 30, 30), np.float32)
    with pytest.raises(ConfigError, match="returned 1 channels.*2 classes and 6 affinity offsets"):
        segment(image, crop_predictor(valid_margin(2)), depth=2, tile=60, num_classes=2, offsets=AFF_OFFSETS)


def test_a_2_5d_model_given_one_section_says_what_it_takes():
    from support import tiny_config

    from biounet.model.unet import build_model

    model = build_model(tiny_config(context=1))
    with pytest.raises(ConfigError, match="takes 3 input channels, got tiles of 1.*with_context"):
        segment(np.zeros((1, 40, 40), np.float32), torch_predictor(model), depth=2)
    assert segment(np.zeros((3, 40, 40), np.float32), torch_predictor(model), depth=2).shape == (2, 40, 40)
