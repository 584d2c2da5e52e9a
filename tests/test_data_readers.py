import numpy as np
import pytest
import tifffile

from biounet.data import IGNORE, read_dataset, read_isbi
from biounet.data.readers import mask_to_classes, scale_image
from biounet.errors import DataError
from conftest import write_pairs


def test_isbi_reader_scales_images_and_maps_labels(isbi_dir):
    data = read_isbi(isbi_dir)
    raw = tifffile.imread(isbi_dir / "train-volume.tif")
    labels = tifffile.imread(isbi_dir / "train-labels.tif")
    assert len(data) == 30 and data.images[0].shape == (1, 512, 512)
    np.testing.assert_allclose(data.images[3][0], raw[3] / 127.5 - 1, atol=1e-6)
    # class 1 = cell (255), class 0 = membrane (0)
    assert np.array_equal(data.masks[3] == 1, labels[3] == 255)
    test = read_isbi(isbi_dir, split="test")
    assert test.masks is None and len(test) == 30


def test_pairs_reader_reads_rgb_16bit_and_class_maps(tmp_path):
    rng = np.random.default_rng(0)
    rgb = [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8) for _ in range(2)]
    cls = [rng.integers(0, 3, (40, 50), dtype=np.uint8) for _ in range(2)]
    write_pairs(tmp_path / "rgb", rgb, cls)
    data = read_dataset(tmp_path / "rgb", classes=3, in_channels=3)
    assert data.images[0].shape == (3, 40, 50) and data.masks[1].max() == 2
    np.testing.assert_allclose(data.images[0][1], rgb[0][..., 1] / 127.5 - 1, atol=1e-6)

    grey16 = [rng.integers(0, 65536, (33, 31), dtype=np.uint16)]
    write_pairs(tmp_path / "g16", grey16, [np.where(grey16[0] > 30000, 255, 0).astype(np.uint8)], ".tif")
    data = read_dataset(tmp_path / "g16")
    assert data.images[0].min() >= -1 and data.images[0].max() <= 1
    np.testing.assert_allclose(data.images[0][0], grey16[0] / 32767.5 - 1, atol=1e-5)


def test_ignore_value_becomes_ignore_index():
    mask = np.array([[0, 255, 128], [128, 0, 255]], np.uint8)
    out = mask_to_classes(mask, 2, ignore_value=128)
    assert out.tolist() == [[0, 1, IGNORE], [IGNORE, 0, 1]]


def test_non_binary_mask_is_refused_for_two_classes(tmp_path):
    with pytest.raises(DataError, match=r"not a binary mask: 25.00 % .*\(e.g. 7\).*--mask-threshold 127.*--classes"):
        mask_to_classes(np.array([[0, 255], [7, 0]], np.uint8), 2, None, "m.png")
    with pytest.raises(DataError, match="outside 0..2"):
        mask_to_classes(np.array([[0, 1], [3, 2]], np.uint8), 3, None)


def test_channel_mismatch_names_the_fix():
    with pytest.raises(DataError, match="set --in-channels 3"):
        scale_image(np.zeros((8, 8, 3), np.uint8), in_channels=1)


def test_missing_folder_and_files_give_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_dataset(tmp_path / "nowhere")
    with pytest.raises(DataError, match="neither an ISBI 2012 folder"):
        read_dataset(tmp_path)
    write_pairs(tmp_path / "p", [np.zeros((8, 8), np.uint8)], [np.zeros((8, 8), np.uint8)])
    (tmp_path / "p" / "masks" / "img00.png").unlink()
    with pytest.raises(DataError, match="have no mask"):
        read_dataset(tmp_path / "p")


def test_label_stack_length_must_match_image_stack(tmp_path, isbi_dir):
    tifffile.imwrite(tmp_path / "train-volume.tif", tifffile.imread(isbi_dir / "train-volume.tif")[:5], photometric="minisblack")
    tifffile.imwrite(tmp_path / "train-labels.tif", tifffile.imread(isbi_dir / "train-labels.tif")[:4], photometric="minisblack")
    with pytest.raises(DataError, match=r"\(4, 512, 512\).*\(5, 512, 512\)"):
        read_isbi(tmp_path)
    (tmp_path / "train-labels.tif").unlink()
    with pytest.raises(DataError, match="train-labels.tif is missing"):
        read_isbi(tmp_path)


def test_mask_size_must_match_image(tmp_path):
    write_pairs(tmp_path, [np.zeros((8, 9), np.uint8)], [np.zeros((8, 8), np.uint8)])
    with pytest.raises(DataError, match="must match its image"):
        read_dataset(tmp_path)
