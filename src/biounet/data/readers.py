"""Reading images and masks: the ISBI 2012 layout and folders of image/mask pairs.

Images become (C, H, W) float32 arrays in [-1, 1] (integer images scaled by their type's range,
as the reference's ``x / 127.5 - 1`` for 8 bit; float images by their own minimum and maximum).
Masks become (H, W) int16 class indices, with :data:`IGNORE` where the mask holds the ignore
value. ISBI's labels are 255 = cell, 0 = membrane, so class 0 is membrane and class 1 is cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from ..errors import DataError

IGNORE = -1  # class index of pixels left out of loss and metrics
IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
ISBI_FILES = {"images": "train-volume.tif", "labels": "train-labels.tif", "test": "test-volume.tif"}


@dataclass
class SegmentationData:
    """Images and (optionally) masks of one dataset, in memory.

    images: list of (C, H, W) float32 in [-1, 1]; masks: list of (H, W) int16 class indices
    (IGNORE for ignored pixels) or None for unlabelled data; names: one per image.
    """

    images: list[np.ndarray]
    masks: list[np.ndarray] | None
    names: list[str]

    def __len__(self) -> int:
        return len(self.images)


def read_image_file(path: str | Path) -> np.ndarray:
    """Pixels of one PNG or TIFF file: (H, W), (H, W, C), or (Z, H, W) for a multi-page TIFF."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file {path} does not exist")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            return np.asarray(tifffile.imread(path))
        with Image.open(path) as img:
            return np.asarray(img)
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        raise DataError(f"cannot read {path}: {exc}; is it a PNG or TIFF image?") from None


def scale_image(pixels: np.ndarray, in_channels: int, name: str = "image") -> np.ndarray:
    """(H, W) or (H, W, C) pixels -> (C, H, W) float32 in [-1, 1]."""
    if pixels.ndim == 2:
        pixels = pixels[None]
    elif pixels.ndim == 3 and pixels.shape[-1] in (3, 4) and pixels.shape[0] not in (3, 4):
        pixels = np.moveaxis(pixels, -1, 0)
    else:
        raise DataError(f"{name} has shape {pixels.shape}; expected (H, W) grey or (H, W, 3) RGB")
    if pixels.shape[0] != in_channels:
        raise DataError(f"{name} has {pixels.shape[0]} channel(s) but the model takes {in_channels}; "
                        f"set --in-channels {pixels.shape[0]} (or convert the images)")
    if pixels.dtype == bool:
        lo, hi = 0.0, 1.0
    elif np.issubdtype(pixels.dtype, np.integer):
        lo, hi = float(np.iinfo(pixels.dtype).min), float(np.iinfo(pixels.dtype).max)
    elif np.issubdtype(pixels.dtype, np.floating):
        lo, hi = float(np.nanmin(pixels)), float(np.nanmax(pixels))
    else:
        raise DataError(f"{name} has pixel type {pixels.dtype}; expected integer or float pixels")
    scale = 2.0 / (hi - lo) if hi > lo else 0.0
    return ((pixels.astype(np.float32) - lo) * scale - 1.0).astype(np.float32)


def mask_to_classes(mask: np.ndarray, classes: int, ignore_value: int | None, name: str = "mask") -> np.ndarray:
    """(H, W) label image -> (H, W) int16 class indices; ignored pixels become IGNORE.

    Two classes read 0/255 (ISBI) or 0/1 masks; more classes read integer maps 0..classes-1.
    """
    if mask.ndim == 3 and mask.shape[-1] in (3, 4) and np.all(mask[..., :1] == mask[..., :3]):
        mask = mask[..., 0]  # a grey mask saved as RGB
    if mask.ndim != 2:
        raise DataError(f"{name} has shape {mask.shape}; expected a 2D label image")
    if not np.issubdtype(mask.dtype, np.integer) and mask.dtype != bool and np.any(mask != np.round(mask)):
        raise DataError(f"{name} holds non-integer values; masks must be label images")
    mask = mask.astype(np.int64)
    ignored = mask == ignore_value if ignore_value is not None else np.zeros(mask.shape, bool)
    values = np.unique(mask[~ignored])
    out = mask.copy()
    if classes == 2:
        if np.all(np.isin(values, (0, 255))):
            out = (mask == 255).astype(np.int64)
        elif not np.all(np.isin(values, (0, 1))):
            bad = values[~np.isin(values, (0, 1, 255))][:8]
            raise DataError(
                f"{name} is not a binary mask: it holds values {bad.tolist()} besides 0/255 (or 0/1); "
                f"for more classes set --classes, or mark unlabelled pixels with --ignore-value"
            )
    elif values.size and (values.min() < 0 or values.max() >= classes):
        bad = values[(values < 0) | (values >= classes)][:8]
        raise DataError(f"{name} holds class values {bad.tolist()} outside 0..{classes - 1}; "
                        f"set --classes to the number of classes or --ignore-value for unlabelled pixels")
    out[ignored] = IGNORE
    return out.astype(np.int16)


def _isbi_stack(path: Path, what: str) -> np.ndarray:
    stack = read_image_file(path)
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3:
        raise DataError(f"{path} has shape {stack.shape}; expected a (Z, H, W) stack of grey slices ({what})")
    return stack


def is_isbi_folder(folder: Path) -> bool:
    return (folder / ISBI_FILES["images"]).is_file()


def read_isbi(folder: str | Path, classes: int = 2, in_channels: int = 1, ignore_value: int | None = None,
              split: str = "train") -> SegmentationData:
    """The ISBI 2012 training stack with labels (``split="train"``) or the test stack (``"test"``)."""
    folder = Path(folder)
    if split == "test":
        stack = _isbi_stack(folder / ISBI_FILES["test"], "test images")
        return SegmentationData([scale_image(s, in_channels, f"test slice {i}") for i, s in enumerate(stack)],
                                None, [f"test-{i:02d}" for i in range(len(stack))])
    images = _isbi_stack(folder / ISBI_FILES["images"], "training images")
    label_path = folder / ISBI_FILES["labels"]
    if not label_path.is_file():
        raise DataError(f"{label_path} is missing: training needs the labels beside {ISBI_FILES['images']}; "
                        f"`biounet fetch isbi2012 {folder}` downloads them")
    labels = _isbi_stack(label_path, "labels")
    if len(labels) != len(images) or labels.shape[1:] != images.shape[1:]:
        raise DataError(f"{label_path.name} holds {labels.shape} but {ISBI_FILES['images']} holds "
                        f"{images.shape}: every slice needs a label slice of the same size")
    names = [f"slice-{i:02d}" for i in range(len(images))]
    return SegmentationData(
        [scale_image(s, in_channels, n) for s, n in zip(images, names)],
        [mask_to_classes(m, classes, ignore_value, f"{label_path.name} slice {i}") for i, m in enumerate(labels)],
        names,
    )


def _listing(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}


def read_pairs(folder: str | Path, classes: int = 2, in_channels: int = 1,
               ignore_value: int | None = None) -> SegmentationData:
    """A folder with ``images/NAME.ext`` and ``masks/NAME.ext`` (PNG or TIFF), paired by NAME."""
    folder = Path(folder)
    images, masks = _listing(folder / "images"), _listing(folder / "masks")
    if not images:
        raise DataError(f"{folder / 'images'} holds no PNG or TIFF images")
    missing = sorted(set(images) - set(masks))
    if missing:
        raise DataError(f"{len(missing)} image(s) in {folder / 'images'} have no mask in {folder / 'masks'} "
                        f"(first: {missing[0]}); every images/NAME.ext needs masks/NAME.ext")
    data = SegmentationData([], [], [])
    for name, path in images.items():
        image = scale_image(read_image_file(path), in_channels, str(path))
        mask = mask_to_classes(read_image_file(masks[name]), classes, ignore_value, str(masks[name]))
        if mask.shape != image.shape[1:]:
            raise DataError(f"{masks[name]} is {mask.shape[0]}x{mask.shape[1]} but its image is "
                            f"{image.shape[1]}x{image.shape[2]}; a mask must match its image")
        data.images.append(image)
        data.masks.append(mask)
        data.names.append(name)
    return data


def read_dataset(path: str | Path, classes: int = 2, in_channels: int = 1,
                 ignore_value: int | None = None) -> SegmentationData:
    """Read a labelled dataset: the ISBI 2012 folder or a folder of image/mask pairs."""
    folder = Path(path)
    if not folder.exists():
        raise DataError(f"data folder {folder} does not exist; pass --data with the ISBI 2012 folder "
                        f"(`biounet fetch isbi2012 DIR` downloads it) or a folder with images/ and masks/")
    if not folder.is_dir():
        raise DataError(f"--data must be a folder, but {folder} is a file")
    if is_isbi_folder(folder):
        return read_isbi(folder, classes, in_channels, ignore_value)
    if (folder / "images").is_dir():
        if not (folder / "masks").is_dir():
            raise DataError(f"{folder} has images/ but no masks/: training needs masks/NAME.ext for every "
                            f"images/NAME.ext")
        return read_pairs(folder, classes, in_channels, ignore_value)
    raise DataError(f"{folder} is neither an ISBI 2012 folder ({ISBI_FILES['images']}, "
                    f"{ISBI_FILES['labels']}) nor a folder with images/ and masks/ subfolders")
