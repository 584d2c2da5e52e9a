"""An uploaded body checked before a single pixel is decoded: is it a PNG or a TIFF (by its first
bytes, never by a name or a Content-Type the client chose), and how many pixel values does its
header declare. A decompression bomb (a few kilobytes declaring billions of pixels) is refused here,
from the header alone; decoding happens later, in the worker, through biounet's own reader.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np

from biounet.core.errors import DataError
from biounet.data.readers import check_fits_in_memory
from biounet.io.metadata import declared_shape

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# classic TIFF (42) and BigTIFF (43), little- and big-endian
TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# the file the worker reads: one name per format, chosen here (the client's file name is never used)
SUFFIXES = {"png": ".png", "tiff": ".tif"}


class UploadError(DataError):
    """An upload the service refuses, with the HTTP status that says why (413 or 415)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Upload:
    """What the header of an accepted upload declares: its format (a key of :data:`SUFFIXES`),
    its array shape ((H, W), (H, W, C) or (Z, H, W)...) and pixel type."""

    format: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def values(self) -> int:
        return int(np.prod(np.asarray(self.shape, dtype=np.float64)))


def sniff_format(data: bytes) -> str:
    """'png' or 'tiff' from the first bytes of ``data``; anything else is a 415."""
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if data[:4] in TIFF_SIGNATURES:
        return "tiff"
    shown = data[:8].hex(" ") if data else "nothing"
    raise UploadError(
        415,
        f"the body is not a PNG or TIFF image (it starts with {shown}); send the image file's bytes "
        f"as the request body",
    )


def check_upload(data: bytes, max_values: int) -> Upload:
    """The :class:`Upload` of ``data``, or an :class:`UploadError`: 415 for what is not a readable PNG or
    TIFF header, 413 for an image that declares more than ``max_values`` pixel values (width x height x
    slices x channels) or more than the memory available."""
    from PIL import Image

    fmt = sniff_format(data)
    try:
        with warnings.catch_warnings():  # PIL warns of large images and odd metadata: the checks below decide
            warnings.simplefilter("ignore")
            shape, dtype = declared_shape(io.BytesIO(data), fmt)
    except DataError as exc:
        raise UploadError(415, str(exc)) from None
    except Image.DecompressionBombError:
        raise UploadError(413, f"the {fmt.upper()} declares more pixels than can be decoded safely") from None
    except Exception as exc:  # the decoders raise many types for a damaged header (struct.error, ValueError...)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise UploadError(
            415, f"the body starts like a {fmt.upper()} but its header cannot be read ({first}); send the whole file"
        ) from None
    upload = Upload(fmt, shape, dtype)
    if not shape or min(shape) < 1 or len(shape) > 4:
        raise UploadError(415, f"the {fmt.upper()} declares shape {shape}; send a 2D image or a stack of 2D slices")
    if upload.values > max_values:
        raise UploadError(
            413,
            f"the image declares {' x '.join(map(str, shape))} = {upload.values} pixel values, more than this "
            f"service's limit of {max_values}; crop it, or send its slices one by one",
        )
    try:
        check_fits_in_memory(shape, dtype, "the image")
    except DataError as exc:
        raise UploadError(413, str(exc)) from None
    return upload
