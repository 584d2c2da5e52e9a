"""2.5D input: a section with its neighbours as channels, mirrored at the stack's ends."""

import numpy as np
import pytest
import tifffile
from support import ISBI_DIR, tiny_config, write_pairs

from biounet.core.errors import ConfigError
from biounet.data import read_isbi, read_pairs, read_volumes
from biounet.data.context import (
    ContextImages,
    context_indices,
    context_reader,
    image_with_context,
    input_channels,
    with_context,
    with_context_data,
)


def _stack(z, c=1, side=4):
    """(Z, C, side, side): section z holds the value z everywhere (channel k: z + 100 k)."""
    return np.stack([np.full((c, side, side), z, np.float32) + 100 * np.arange(c)[:, None, None] for z in range(z)])


def test_the_neighbours_are_mirrored_at_the_ends():
    assert context_indices(0, 5, 1) == [1, 0, 1]  # z = -1 reads section 1
    assert context_indices(4, 5, 1) == [3, 4, 3]  # z = Z reads Z - 2
    assert context_indices(2, 5, 2) == [0, 1, 2, 3, 4]
    assert context_indices(0, 1, 2) == [0, 0, 0, 0, 0]  # one section: repeated
    assert context_indices(1, 2, 2) == [1, 0, 1, 0, 1]
    assert context_indices(3, 5, 0) == [3]


def test_with_context_stacks_the_sections_in_z_order():
    stack = _stack(5, c=2)
    out = with_context(stack, 0, 1)
    assert out.shape == (6, 4, 4)  # 2 channels x 3 sections, section by section
    assert out[:, 0, 0].tolist() == [1, 101, 0, 100, 1, 101]
    np.testing.assert_array_equal(with_context(stack, 3, 0), stack[3])
    grey = _stack(3)[:, 0]  # (Z, H, W)
    assert with_context(grey, 2, 1)[:, 0, 0].tolist() == [1, 2, 1]
    assert with_context(list(grey), 1, 1).shape == (3, 4, 4)  # a sequence of (H, W) sections
    assert with_context(grey[:1], 0, 1)[:, 0, 0].tolist() == [0, 0, 0]
    with pytest.raises(ConfigError, match="--context must not be negative"):
        with_context(grey, 0, -1)


def test_input_channels_count_every_section():
    assert input_channels(tiny_config()) == 1
    assert input_channels(tiny_config(context=1)) == 3
    assert input_channels(tiny_config(context=2, in_channels=3)) == 15


def test_isbi_slices_are_sections_of_one_stack(isbi_data):
    image = image_with_context(isbi_data, 0, 1)
    assert image.shape == (3, 512, 512)
    np.testing.assert_array_equal(image[0], isbi_data.images[1][0])  # mirrored
    np.testing.assert_array_equal(image[1], isbi_data.images[0][0])
    assert image_with_context(isbi_data, 7, 0) is isbi_data.images[7]
    np.testing.assert_array_equal(image_with_context(isbi_data, 29, 1)[2], isbi_data.images[28][0])
    test = read_isbi(ISBI_DIR, split="test")
    assert image_with_context(test, 3, 1).shape == (3, 512, 512)


def test_independent_images_have_no_neighbours(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (20, 20), dtype=np.uint8) for _ in range(2)]
    data = read_pairs(write_pairs(tmp_path, images, [np.full((20, 20), 255, np.uint8)] * 2))
    assert image_with_context(data, 1, 0).shape == (1, 20, 20)
    with pytest.raises(ConfigError, match="--context 1 .* independent 2D images .* use --context 0, or give a stack"):
        image_with_context(data, 0, 1)
    with pytest.raises(ConfigError, match="independent 2D images"):
        ContextImages(data, 2)


def test_a_volumes_unlabelled_slices_are_neighbours_too(tmp_path):
    """A sparse label volume leaves unlabelled slices out of the dataset, not out of the neighbours."""
    images = np.stack([np.full((24, 24), 10 * z, np.uint8) for z in range(6)])
    labels = np.zeros((6, 24, 24), np.uint8)
    labels[2, :, 12:] = labels[5, :, 12:] = 255
    labels[[0, 1, 3, 4]] = 7  # only the ignore value: not images of the dataset
    tifffile.imwrite(tmp_path / "im.tif", images)
    tifffile.imwrite(tmp_path / "lab.tif", labels)
    data = read_volumes(str(tmp_path / "im.tif"), str(tmp_path / "lab.tif"), ignore_value=7)
    assert data.names == ["z0002", "z0005"]
    scaled = [10 * z / 127.5 - 1 for z in range(6)]
    assert image_with_context(data, 0, 1)[:, 0, 0].tolist() == pytest.approx([scaled[1], scaled[2], scaled[3]])
    assert image_with_context(data, 1, 1)[:, 0, 0].tolist() == pytest.approx([scaled[4], scaled[5], scaled[4]])


def test_a_dataset_with_context_gives_the_network_its_input(isbi_data):
    view = with_context_data(isbi_data, 1)
    assert len(view.images) == 30 and view.masks is isbi_data.masks and view.names == isbi_data.names
    np.testing.assert_array_equal(view.images[4], image_with_context(isbi_data, 4, 1))
    assert [a.shape for a in view.images[28:]] == [(3, 512, 512)] * 2
    assert with_context_data(isbi_data, 0) is isbi_data
    with pytest.raises(IndexError):
        view.images[30]


def test_a_context_reader_reads_the_boxes_of_with_context():
    stack = np.random.default_rng(1).standard_normal((4, 2, 30, 40)).astype(np.float32)

    def section_reader(z):
        return lambda y0, y1, x0, x1: stack[z][:, y0:y1, x0:x1]

    for z in range(4):
        read = context_reader(section_reader, z, 4, 1)
        np.testing.assert_array_equal(read(3, 17, 5, 40), with_context(stack, z, 1)[:, 3:17, 5:40])
