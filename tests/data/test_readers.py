import numpy as np
import pytest
import tifffile
from support import write_pairs

from biounet.core.errors import DataError
from biounet.data import IGNORE, read_dataset, read_isbi
from biounet.data.readers import mask_to_classes, painted_to_classes, scale_image


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
    # integer pixels that do not span their type: scaling by the type's range differs from min/max
    rgb = [rng.integers(10, 200, (40, 50, 3), dtype=np.uint8) for _ in range(2)]
    rgb[1][..., 2] //= 2  # the channels differ
    cls = [rng.integers(0, 3, (40, 50), dtype=np.uint8) for _ in range(2)]
    write_pairs(tmp_path / "rgb", rgb, cls)
    data = read_dataset(tmp_path / "rgb", classes=3, in_channels=3)
    assert len(data) == 2 and data.masks[1].max() == 2
    for k in range(2):  # every image, every channel, every mask
        assert data.images[k].shape == (3, 40, 50) and data.images[k].dtype == np.float32
        np.testing.assert_allclose(data.images[k], np.moveaxis(rgb[k], -1, 0) / 127.5 - 1, atol=1e-6)
        np.testing.assert_array_equal(data.masks[k], cls[k])

    grey16 = [
        rng.integers(1000, 5000, (33, 31), dtype=np.uint16),
        rng.integers(40000, 65536, (33, 31), dtype=np.uint16),
    ]
    write_pairs(tmp_path / "g16", grey16, [np.where(g > 30000, 255, 0).astype(np.uint8) for g in grey16], ".tif")
    data = read_dataset(tmp_path / "g16")
    for k in range(2):  # by the 16-bit range: 0 -> -1, 65535 -> 1
        np.testing.assert_allclose(data.images[k][0], grey16[k] / 32767.5 - 1, atol=1e-5)


def test_float_images_are_scaled_by_their_own_range(tmp_path):
    """Float images have no type range: each is scaled by its own min and max (min -> -1, max -> 1)."""
    rng = np.random.default_rng(1)
    floats = [rng.uniform(-3.5, 12.0, (30, 20)).astype(np.float32), rng.uniform(0.2, 0.3, (30, 20)).astype(np.float32)]
    masks = [np.where(f > f.mean(), 255, 0).astype(np.uint8) for f in floats]
    write_pairs(tmp_path / "f", floats, masks, ".tif")
    data = read_dataset(tmp_path / "f")
    for k, f in enumerate(floats):
        got = data.images[k][0]
        assert got.dtype == np.float32
        assert got.min() == -1.0 and got.max() == pytest.approx(1.0, abs=1e-6)
        np.testing.assert_allclose(got, (f - f.min()) / (f.max() - f.min()) * 2 - 1, atol=1e-5)
        assert got.flat[np.argmin(f)] == -1.0 and got.flat[np.argmax(f)] == pytest.approx(1.0, abs=1e-6)


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
    tifffile.imwrite(
        tmp_path / "train-volume.tif", tifffile.imread(isbi_dir / "train-volume.tif")[:5], photometric="minisblack"
    )
    tifffile.imwrite(
        tmp_path / "train-labels.tif", tifffile.imread(isbi_dir / "train-labels.tif")[:4], photometric="minisblack"
    )
    with pytest.raises(DataError, match=r"\(4, 512, 512\).*\(5, 512, 512\)"):
        read_isbi(tmp_path)
    (tmp_path / "train-labels.tif").unlink()
    with pytest.raises(DataError, match="train-labels.tif is missing"):
        read_isbi(tmp_path)


def test_mask_size_must_match_image(tmp_path):
    write_pairs(tmp_path, [np.zeros((8, 9), np.uint8)], [np.zeros((8, 8), np.uint8)])
    with pytest.raises(DataError, match="must match its image"):
        read_dataset(tmp_path)


def test_a_damaged_file_raises_a_data_error_without_decoder_warnings(tmp_path, recwarn):
    # found by tests/support/fuzzing.py: PIL warns (UserWarning "Corrupt EXIF data", DecompressionBombWarning)
    # on stderr before biounet's one-line error; the reader returns the pixels or says why not, only that
    import struct
    import zlib

    from biounet.data.readers import read_image_file

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    side = 9500  # 90 M pixels: above PIL's warning threshold, below its error threshold, 0.45 GB to hold
    path = tmp_path / "big.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )
    with pytest.raises(DataError, match="big.png"):
        read_image_file(path)
    assert not [str(w.message) for w in recwarn.list], [str(w.message) for w in recwarn.list]


def test_a_tiff_whose_pixels_cannot_be_decoded_is_a_data_error_not_an_empty_array(tmp_path):
    # found by tests/support/fuzzing.py: a 9x5 TIFF with a damaged strip; tifffile fails to reshape and returns
    # an empty (0, 9, 5) array, which read_image_file passed on as if it were an image
    from biounet.data.readers import read_image_file

    path = tmp_path / "damaged.tif"
    path.write_bytes(
        bytes.fromhex(
            "49492a00080000000e0000010400010000000500000001010400010000000900000002010300010000000834000003010300"
            "0100a100010000000601030001000000010000000e01020012000000b6000000110104000100000000010000150103000100"
            "00000100000016010480010000000900000017010400010000002d0000001a01050001000000d80000001b01050001000000"
            "e0000000280103000100000101000000310102000c000000e800a100000000007b227368617065223a205b392c20355d7d00"
            "00000000000000000000000000000000010000000100000001000000010000007469666666696c652e707900000000000000"
            "0000000000000201000300020003000101020101000102020202010303000302000202030100000300000001010300020001"
            "03"
        )
    )
    with pytest.raises(DataError, match="holds none that can be decoded"):
        read_image_file(path)


def test_float_images_of_any_range_scale_to_finite_values():
    # found by tests/support/fuzzing.py: float64 pixels spanning 1e-74 overflowed the float32 scale (NaN out)
    tiny = np.array([[1e-300, 2e-74], [-2e-74, 0.0]], np.float64)
    huge = np.array([[-1e300, 1e300], [0.0, 5e299]], np.float64)
    subnormal = np.array([[1e-44, 2e-44], [3e-44, 0.0]], np.float32)
    for pixels in (tiny, huge, subnormal):
        out = scale_image(pixels, 1)
        assert out.dtype == np.float32 and np.isfinite(out).all()
        assert out.min() == -1.0 and out.max() == 1.0


def test_a_given_value_range_scales_a_block_as_its_whole_slice():
    from biounet.data.readers import scale_image

    block = np.array([[10.0, 20.0], [30.0, 40.0]], np.float32)
    np.testing.assert_allclose(scale_image(block, 1, value_range=(0.0, 40.0))[0], [[-0.5, 0.0], [0.5, 1.0]])
    np.testing.assert_allclose(scale_image(block, 1)[0], [[-1.0, -1 / 3], [1 / 3, 1.0]], atol=1e-6)


def test_painted_masks_read_0_as_unlabelled_and_k_as_class_k_minus_1():
    """napari's Labels layer and ilastik hold annotations as 0 (unpainted) and 1..K: 1 is class 0."""
    painted = np.array([[0, 1, 2], [3, 0, 1]], np.uint8)
    expected = [[IGNORE, 0, 1], [2, IGNORE, 0]]
    assert painted_to_classes(painted, 3).tolist() == expected
    assert mask_to_classes(painted, 3, None, painted=True).tolist() == expected
    assert mask_to_classes(np.stack([painted] * 3, -1), 3, None, painted=True).tolist() == expected  # saved as RGB
    two = mask_to_classes(np.array([[0, 1, 2]], np.uint16), 2, None, painted=True)  # 1 membrane, 2 cell
    assert two.tolist() == [[IGNORE, 0, 1]] and two.dtype == np.int16


def test_a_painted_value_above_the_classes_is_one_line_naming_it_the_file_and_classes():
    with pytest.raises(DataError, match=r"^m\.png holds the painted value\(s\) 4, .* 1\.\.3 .*set --classes") as err:
        painted_to_classes(np.array([[0, 1], [4, 2]], np.uint8), 3, "m.png")
    assert "\n" not in str(err.value)
    # 255 (a dense 0/255 mask read as painted) is above two classes too
    with pytest.raises(DataError, match=r"painted value\(s\) 255, .*drop --painted"):
        mask_to_classes(np.array([[0, 255]], np.uint8), 2, None, "isbi slice 0", painted=True)
    with pytest.raises(DataError, match="non-integer values; .*painted masks hold 0 and the labels 1..2"):
        painted_to_classes(np.array([[0.5, 1.0]], np.float32), 2)
