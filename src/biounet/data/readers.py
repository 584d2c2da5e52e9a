"""Reading images and masks: one PNG or TIFF file, and the conversion of its pixels (the datasets they make:
data/folders.py, data/volume_data.py).

Images become (C, H, W) float32 arrays in [-1, 1] (integer images scaled by their type's range,
as the reference's ``x / 127.5 - 1`` for 8 bit; float images by their own minimum and maximum).
Masks become (H, W) int16 class indices, with :data:`IGNORE` where the mask holds the ignore
value. ISBI's labels are 255 = cell, 0 = membrane, so class 0 is membrane and class 1 is cell.
Painted masks (napari's Labels layer, ilastik) hold 0 where unlabelled and k + 1 for class k.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from biounet.core.errors import DataError
from biounet.core.system import available_ram_bytes
from biounet.io.metadata import declared_shape

LOG = logging.getLogger("biounet")
_SAID: set[str] = set()  # notices already given in this process (see say_once)

IGNORE = -1  # class index of pixels left out of loss and metrics
IMAGE_SUFFIXES = (".png", ".tif", ".tiff")


@dataclass
class SegmentationData:
    """Images and (optionally) masks of one dataset: lists in memory, or lazy sequences (data/volume_data.py).

    images: (C, H, W) float32 in [-1, 1] each; masks: (H, W) int16 class indices (IGNORE for ignored
    pixels) each, or None for unlabelled data; names: one per image. ``sections``: the stack the images are
    sections of, in z order (their neighbours for --context, data/context.py), None for independent images;
    ``section_of[i]``: the z of image i in it (None: i)."""

    images: Sequence[np.ndarray]
    masks: Sequence[np.ndarray] | None
    names: list[str]
    sections: Sequence[np.ndarray] | None = None
    section_of: Sequence[int] | None = None

    def __len__(self) -> int:
        return len(self.images)


def check_fits_in_memory(shape: tuple[int, ...], dtype: np.dtype, name: str) -> None:
    """Refuse, before anything is allocated, an image the in-memory path cannot hold: its pixels plus
    their float32 copy must fit in the memory available now."""
    if not shape or min(shape) < 1:
        raise DataError(f"{name} declares an empty image of shape {tuple(shape)}; it holds no pixels to segment")
    pixels = int(np.prod(np.asarray(shape, dtype=np.float64)))
    need = pixels * (np.dtype(dtype).itemsize + 4)
    avail = available_ram_bytes()
    if need > avail:
        raise DataError(
            f"{name} declares {' x '.join(map(str, shape))} {np.dtype(dtype).name} pixels, which need "
            f"{need / 2**30:.1f} GiB in memory (the pixels and their float32 copy) but "
            f"{avail / 2**30:.1f} GiB are available: crop or split it into smaller images first"
        )


def read_image_file(path: str | Path) -> np.ndarray:
    """Pixels of one PNG or TIFF file: (H, W), (H, W, C), or (Z, H, W) for a multi-page TIFF.

    The header is checked first: an image larger than the memory available is refused before any
    pixel is decoded. Any decoding failure (truncated, corrupted or not an image) is a DataError.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file {path} does not exist")
    try:
        with warnings.catch_warnings():  # decoders warn about damaged metadata (PIL's "Corrupt EXIF data")
            warnings.simplefilter("ignore")  # on stderr; the pixels come back or a DataError says why not
            check_fits_in_memory(*_declared(path), str(path))
            if path.suffix.lower() in (".tif", ".tiff"):
                pixels = np.asarray(tifffile.imread(path))
            else:
                with Image.open(path) as img:
                    pixels = np.asarray(img)
        if pixels.size == 0:  # tifffile answers a damaged strip with an empty array of the declared rank
            raise DataError(
                f"{path} declares {' x '.join(map(str, _declared(path)[0]))} pixels but holds none "
                f"that can be decoded (shape {pixels.shape}): it is truncated or corrupted; export it "
                f"again"
            )
        return pixels
    except (DataError, MemoryError):
        raise
    except Image.DecompressionBombError as exc:
        raise DataError(
            f"{path} declares more pixels than PIL decodes safely ({exc}); split it into smaller images"
        ) from None
    except Exception as exc:  # decoders raise many types for damaged files (zlib.error, struct.error, ...)
        first = str(exc).splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"cannot read {path} ({type(exc).__name__}: {first}): it is not a readable PNG or TIFF "
            f"image (truncated or corrupted?); export it again"
        ) from None


def _drop_opaque_alpha(pixels: np.ndarray, name: str) -> np.ndarray:
    """(H, W, 2) grey+alpha or (H, W, 4) RGBA -> without the alpha channel, if it is fully opaque
    (real transparency is refused: what lies under a transparent pixel is not defined)."""
    alpha = pixels[..., -1]
    opaque = np.iinfo(pixels.dtype).max if np.issubdtype(pixels.dtype, np.integer) else 1.0
    if pixels.dtype == bool:
        opaque = True
    transparent = int(np.count_nonzero(alpha != opaque))
    if transparent:
        raise DataError(
            f"{name} has an alpha channel with {transparent} transparent pixel(s) "
            f"({100 * transparent / alpha.size:.2f} %); flatten it onto a background (or remove the "
            f"alpha channel) in an image tool first"
        )
    say_once("alpha", f"dropping the opaque alpha channel of {name} (and of any further image that has one)")
    return pixels[..., :-1]


def say_once(key: str, text: str) -> None:
    """Log ``text`` the first time ``key`` is seen in this process (a notice, not a problem)."""
    if key not in _SAID:
        _SAID.add(key)
        LOG.warning(text)


def forget_notices() -> None:
    """Let every notice of :func:`say_once` be said again (a new command)."""
    _SAID.clear()


def is_channels_last(pixels: np.ndarray) -> bool:
    """The one rule for "is this (H, W, C) colour?": 2-4 trailing channels and a first side not 2-4."""
    return pixels.ndim == 3 and pixels.shape[-1] in (2, 3, 4) and pixels.shape[0] not in (2, 3, 4)


def check_finite(pixels: np.ndarray, name: str) -> None:
    """Refuse NaN or infinite pixels (a float image with holes), with their count."""
    if np.issubdtype(pixels.dtype, np.floating):
        bad = pixels.size - int(np.count_nonzero(np.isfinite(pixels)))
        if bad:
            raise DataError(
                f"{name} has {bad} non-finite pixel(s) (NaN or infinite, {100 * bad / pixels.size:.2f} "
                f"% of it); fill them (e.g. with the image's median) before using it"
            )


def scale_image(
    pixels: np.ndarray, in_channels: int, name: str = "image", value_range: tuple[float, float] | None = None
) -> np.ndarray:
    """(H, W) or (H, W, C) pixels -> (C, H, W) float32 in [-1, 1]; an opaque alpha channel is dropped.
    ``value_range`` (lo, hi) replaces the pixel type's range (float: the pixels' own min and max)."""
    if is_channels_last(pixels) and pixels.shape[-1] in (2, 4):
        pixels = _drop_opaque_alpha(pixels, name)
        if pixels.shape[-1] == 1:  # grey + alpha
            pixels = pixels[..., 0]
    if pixels.ndim == 2:
        pixels = pixels[None]
    elif is_channels_last(pixels):
        pixels = np.moveaxis(pixels, -1, 0)
    else:
        raise DataError(f"{name} has shape {pixels.shape}; expected (H, W) grey or (H, W, 3) RGB")
    if pixels.shape[0] != in_channels:
        raise DataError(
            f"{name} has {pixels.shape[0]} channel(s) but the model takes {in_channels}; "
            f"set --in-channels {pixels.shape[0]} (or convert the images)"
        )
    check_finite(pixels, name)
    if value_range is not None:  # a block of a volume is scaled as its whole slice
        lo, hi = value_range
    elif pixels.dtype == bool:
        lo, hi = 0.0, 1.0
    elif np.issubdtype(pixels.dtype, np.integer):
        lo, hi = float(np.iinfo(pixels.dtype).min), float(np.iinfo(pixels.dtype).max)
    elif np.issubdtype(pixels.dtype, np.floating):
        lo, hi = float(pixels.min()), float(pixels.max())
    else:
        raise DataError(f"{name} has pixel type {pixels.dtype}; expected integer or float pixels")
    scale = 2.0 / (hi - lo) if hi > lo else 0.0
    # float32 arithmetic, as always, unless the values or their span lie outside float32's range
    # (float64 pixels, or a span so small that the scale overflows): then float64, cast at the end
    wide = pixels.dtype == np.float64 or scale > float(np.finfo(np.float32).max)
    work: np.ndarray = pixels.astype(np.float64 if wide else np.float32)
    return ((work - lo) * scale - 1.0).astype(np.float32)


def image_digest(image: np.ndarray) -> str:
    """A short fingerprint of an image's content (shape and scaled pixels): the same slice read from
    another path, folder or copy gives the same digest."""
    image = np.ascontiguousarray(image, dtype=np.float32)
    return hashlib.sha256(repr(image.shape).encode() + image.tobytes()).hexdigest()[:16]


def mask_to_classes(
    mask: np.ndarray,
    classes: int,
    ignore_value: int | None,
    name: str = "mask",
    threshold: float | None = None,
    painted: bool = False,
) -> np.ndarray:
    """(H, W) label image -> (H, W) int16 class indices; ignored pixels become IGNORE.

    Two classes read 0/255 (ISBI) or 0/1 masks; with ``threshold`` a mask with other values too
    (anti-aliased edges) is binarized: values above it are cell. More classes read integer maps
    0..classes-1. ``painted``: the mask is a painted annotation (:func:`painted_to_classes`). A grey
    mask saved as RGB, or with an opaque alpha channel, is read as grey.
    """
    if painted:
        return painted_to_classes(mask, classes, name)
    whole = "(or pass --mask-threshold to binarize a two-class mask)" if threshold is None else ""
    mask = _grey_mask(mask, name, whole)
    ignored = mask == ignore_value if ignore_value is not None else np.zeros(mask.shape, bool)
    values = np.unique(mask[~ignored])
    if classes == 2:
        if np.all(np.isin(values, (0, 255))):
            out = (mask == 255).astype(np.int64)
        elif np.all(np.isin(values, (0, 1))):
            out = mask.astype(np.int64)
        elif threshold is not None:
            out = (mask > threshold).astype(np.int64)
        else:
            labelled = mask[~ignored]
            between = float(np.mean(~np.isin(labelled, (0, 255)))) if labelled.size else 0.0
            shown = ", ".join(f"{v:g}" for v in values[~np.isin(values, (0, 1, 255))][:6])
            raise DataError(
                f"{name} is not a binary mask: {100 * between:.2f} % of its labelled pixels are neither 0 nor 255 "
                f"(e.g. {shown}), as on the anti-aliased edges of a resized or painted mask; pass --mask-threshold "
                f"127 to binarize it (values above are cell). For more than two classes set --classes; for "
                f"unlabelled pixels --ignore-value"
            )
    else:
        out = mask.astype(np.int64)
        if values.size and (values.min() < 0 or values.max() >= classes):
            bad = values[(values < 0) | (values >= classes)][:8]
            raise DataError(
                f"{name} holds class values {bad.tolist()} outside 0..{classes - 1}; "
                f"set --classes to the number of classes or --ignore-value for unlabelled pixels"
            )
    out[ignored] = IGNORE
    return out.astype(np.int16)


def painted_to_classes(mask: np.ndarray, classes: int, name: str = "mask") -> np.ndarray:
    """(H, W) painted annotation -> (H, W) int16 class indices: 0 (unpainted) becomes IGNORE and value k
    class k - 1, as napari's Labels layer and ilastik hold annotations (two classes: 1 membrane, 2 cell). A grey
    mask saved as RGB, or with an opaque alpha channel, is read as grey."""
    mask = _grey_mask(mask, name, f"(painted masks hold 0 and the labels 1..{classes})")
    values = np.unique(mask).astype(np.int64)  # whole numbers, as _grey_mask checked
    bad = values[(values < 0) | (values > classes)]
    if bad.size:
        raise DataError(
            f"{name} holds the painted value(s) {', '.join(map(str, bad[:8].tolist()))}, but painted masks hold 0 "
            f"(unlabelled) and 1..{classes} (classes 0..{classes - 1}): set --classes to the number of painted "
            f"labels (or drop --painted for a mask of class indices)"
        )
    return (mask.astype(np.int64) - 1).astype(np.int16)  # 0 - 1 is IGNORE


def _grey_mask(mask: np.ndarray, name: str, whole: str) -> np.ndarray:
    """The (H, W) grey values of a mask, refusing colour, NaNs and (``whole``, the fix to name) non-integers."""
    if mask.ndim == 3 and mask.shape[-1] in (2, 4):
        mask = _drop_opaque_alpha(mask, name)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.ndim == 3 and mask.shape[-1] == 3 and np.all(mask[..., :1] == mask):
        mask = mask[..., 0]  # a grey mask saved as RGB
    if mask.ndim != 2:
        raise DataError(f"{name} has shape {mask.shape}; expected a 2D label image (grey, one value per pixel)")
    if not (np.issubdtype(mask.dtype, np.integer) or mask.dtype == bool or np.issubdtype(mask.dtype, np.floating)):
        raise DataError(f"{name} has pixel type {mask.dtype}; expected integer labels")
    check_finite(mask, name)
    if whole and np.issubdtype(mask.dtype, np.floating) and np.any(mask != np.round(mask)):
        raise DataError(f"{name} holds non-integer values; masks must be label images {whole}")
    return mask


def _declared(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    return declared_shape(path, "tiff" if path.suffix.lower() in (".tif", ".tiff") else "image")
