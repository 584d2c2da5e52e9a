"""An upload is judged by its first bytes and its header, before any pixel is decoded: PNG and TIFF
(2D, stacks, BigTIFF) pass; anything else is a 415; a header declaring too many pixels, however small
the file (a decompression bomb), is a 413."""

import struct
import zlib

import numpy as np
import pytest
from support.service import png_bytes, tiff_bytes

from biounet.integrations.service import uploads
from biounet.integrations.service.uploads import UploadError, check_upload, sniff_format


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height grey pixels, with one tiny compressed row of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        uploads.PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def tiff_declaring(width: int, height: int) -> bytes:
    """A little-endian TIFF whose one page declares width x height 8-bit grey pixels (zlib-compressed:
    a bomb needs only its header)."""
    data = zlib.compress(b"\0" * 1024)
    tags = [  # (tag, type, count, value): 3 = SHORT, 4 = LONG
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 8),  # deflate
        (262, 3, 1, 1),  # min-is-black
        (273, 4, 1, 8),  # the strip right after the 8-byte header
        (277, 3, 1, 1),
        (278, 4, 1, height),
        (279, 4, 1, len(data)),
    ]
    ifd = struct.pack("<H", len(tags))
    for tag, kind, count, value in tags:
        ifd += (
            struct.pack("<HHII", tag, kind, count, value)
            if kind == 4
            else struct.pack("<HHIHH", tag, kind, count, value, 0)
        )
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8 + len(data)) + data + ifd


def test_pngs_and_tiffs_are_recognised_by_their_first_bytes():
    image = np.arange(12 * 20, dtype=np.uint8).reshape(12, 20)
    assert sniff_format(png_bytes(image)) == "png"
    assert sniff_format(tiff_bytes(image)) == "tiff"
    big_endian = b"MM\x00*" + b"\0" * 8
    assert sniff_format(big_endian) == "tiff"


@pytest.mark.parametrize("body", [b"", b"hello world", b"GIF89a....", b"\xff\xd8\xff\xe0 jpeg", b'{"image": 1}'])
def test_anything_else_is_unsupported_media(body):
    with pytest.raises(UploadError, match="not a PNG or TIFF") as caught:
        check_upload(body, 10**6)
    assert caught.value.status == 415


def test_the_header_gives_shape_and_type_without_decoding():
    grey = np.zeros((30, 40), np.uint16)
    assert check_upload(png_bytes(grey), 10**6).shape == (30, 40)
    assert check_upload(png_bytes(grey), 10**6).dtype == np.uint16
    stack = check_upload(tiff_bytes(np.zeros((5, 30, 40), np.uint8)), 10**6)
    assert (stack.format, stack.shape, stack.values) == ("tiff", (5, 30, 40), 6000)
    rgb = check_upload(png_bytes(np.zeros((30, 40, 3), np.uint8)), 10**6)
    assert rgb.shape == (30, 40, 3) and rgb.values == 3600


def test_an_image_over_the_pixel_limit_is_too_large():
    body = png_bytes(np.zeros((30, 40), np.uint8))
    assert check_upload(body, 1200).values == 1200  # the limit itself passes
    with pytest.raises(
        UploadError, match="30 x 40 = 1200 pixel values, more than this service's limit of 1199"
    ) as caught:
        check_upload(body, 1199)
    assert caught.value.status == 413


@pytest.mark.parametrize("make", [png_declaring, tiff_declaring])
def test_decompression_bombs_are_refused_from_their_header(make):
    bomb = make(10_000, 10_000)
    assert len(bomb) < 2000  # 100 million pixels declared in a few hundred bytes
    with pytest.raises(UploadError, match="10000 x 10000 = 100000000 pixel values, more than") as caught:
        check_upload(bomb, 2**26)
    assert caught.value.status == 413


def test_a_bomb_beyond_what_pil_opens_is_too_large_too():
    with pytest.raises(UploadError, match="more pixels than can be decoded safely") as caught:
        check_upload(png_declaring(200_000, 200_000), 2**40)
    assert caught.value.status == 413


def test_a_small_declared_image_passes_the_same_hand_made_headers():
    assert check_upload(png_declaring(64, 32), 2**26).shape == (32, 64)
    assert check_upload(tiff_declaring(64, 32), 2**26).shape == (32, 64)


def test_an_image_larger_than_the_memory_available_is_too_large(monkeypatch):
    monkeypatch.setattr("biounet.data.readers.available_ram_bytes", lambda: 1000)
    with pytest.raises(UploadError, match="GiB are available") as caught:
        check_upload(png_bytes(np.zeros((30, 40), np.uint8)), 10**6)
    assert caught.value.status == 413


@pytest.mark.parametrize("cut", [12, 30])
def test_a_truncated_header_is_unsupported_media(cut):
    for body in (png_bytes(np.zeros((30, 40), np.uint8)), tiff_bytes(np.zeros((30, 40), np.uint8))):
        with pytest.raises(UploadError, match="header cannot be read|holds no image") as caught:
            check_upload(body[:cut], 10**6)
        assert caught.value.status == 415


def test_an_empty_image_is_unsupported_media():
    with pytest.raises(UploadError, match="declares shape") as caught:
        check_upload(tiff_bytes(np.zeros((0, 5), np.uint8)), 10**6)
    assert caught.value.status == 415
