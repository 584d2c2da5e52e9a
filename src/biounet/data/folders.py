"""Labelled datasets in folders, read into memory: the ISBI 2012 layout (two multi-page TIFFs) and a folder
of image/mask pairs (``images/NAME.ext`` + ``masks/NAME.ext``). Every file is read and converted as readers.py
reads one (images to (C, H, W) float32 in [-1, 1], masks to (H, W) int16 class indices); volumes, read lazily,
are data/volume_data.py's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from biounet.core.errors import DataError
from biounet.data.readers import IMAGE_SUFFIXES, SegmentationData, mask_to_classes, read_image_file, scale_image

ISBI_FILES = {"images": "train-volume.tif", "labels": "train-labels.tif", "test": "test-volume.tif"}


def _isbi_stack(path: Path, what: str) -> np.ndarray:
    stack = read_image_file(path)
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3:
        raise DataError(f"{path} has shape {stack.shape}; expected a (Z, H, W) stack of grey slices ({what})")
    return stack


def is_isbi_folder(folder: Path) -> bool:
    return (folder / ISBI_FILES["images"]).is_file()


def read_isbi(
    folder: str | Path,
    classes: int = 2,
    in_channels: int = 1,
    ignore_value: int | None = None,
    split: str = "train",
    mask_threshold: float | None = None,
    painted: bool = False,
) -> SegmentationData:
    """The ISBI 2012 training stack with labels (``split="train"``) or the test stack (``"test"``);
    ``painted``: the labels are painted annotations (readers.painted_to_classes)."""
    folder = Path(folder)
    if split == "test":
        stack = _isbi_stack(folder / ISBI_FILES["test"], "test images")
        tests = [scale_image(s, in_channels, f"test slice {i}") for i, s in enumerate(stack)]
        return SegmentationData(tests, None, [f"test-{i:02d}" for i in range(len(stack))], sections=tests)
    images = _isbi_stack(folder / ISBI_FILES["images"], "training images")
    label_path = folder / ISBI_FILES["labels"]
    if not label_path.is_file():
        raise DataError(
            f"{label_path} is missing: training needs the labels beside {ISBI_FILES['images']}; "
            f"`biounet fetch isbi2012 {folder}` downloads them"
        )
    labels = _isbi_stack(label_path, "labels")
    if len(labels) != len(images) or labels.shape[1:] != images.shape[1:]:
        raise DataError(
            f"{label_path.name} holds {labels.shape} but {ISBI_FILES['images']} holds "
            f"{images.shape}: every slice needs a label slice of the same size"
        )
    names = [f"slice-{i:02d}" for i in range(len(images))]
    scaled = [scale_image(s, in_channels, n) for s, n in zip(images, names)]
    return SegmentationData(
        scaled,
        [
            mask_to_classes(m, classes, ignore_value, f"{label_path.name} slice {i}", mask_threshold, painted)
            for i, m in enumerate(labels)
        ],
        names,
        sections=scaled,  # one stack: slice i's neighbours are slices i - 1 and i + 1
    )


def _listing(folder: Path) -> dict[str, Path]:
    """NAME -> file of the PNG/TIFF images in ``folder``; two files of one NAME (x.png, x.tif) are refused."""
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            if p.stem in found:
                raise DataError(
                    f"{found[p.stem]} and {p.name} share the name {p.stem!r}, so which one pairs with "
                    f"its mask is ambiguous; rename or remove one of them"
                )
            found[p.stem] = p
    return found


def read_pairs(
    folder: str | Path,
    classes: int = 2,
    in_channels: int = 1,
    ignore_value: int | None = None,
    mask_threshold: float | None = None,
    painted: bool = False,
) -> SegmentationData:
    """A folder with ``images/NAME.ext`` and ``masks/NAME.ext`` (PNG or TIFF), paired by NAME; ``painted``:
    the masks are painted annotations (readers.painted_to_classes)."""
    folder = Path(folder)
    images, masks = _listing(folder / "images"), _listing(folder / "masks")
    if not images:
        raise DataError(f"{folder / 'images'} holds no PNG or TIFF images")
    missing = sorted(set(images) - set(masks))
    if missing:
        raise DataError(
            f"{len(missing)} image(s) in {folder / 'images'} have no mask in {folder / 'masks'} "
            f"(first: {missing[0]}); every images/NAME.ext needs masks/NAME.ext"
        )
    data_images: list[np.ndarray] = []
    data_masks: list[np.ndarray] = []
    data = SegmentationData(data_images, data_masks, [])
    for name, path in images.items():
        image = scale_image(read_image_file(path), in_channels, str(path))
        pixels = read_image_file(masks[name])
        mask = mask_to_classes(pixels, classes, ignore_value, str(masks[name]), mask_threshold, painted)
        if mask.shape != image.shape[1:]:
            raise DataError(
                f"{masks[name]} is {mask.shape[0]}x{mask.shape[1]} but its image is "
                f"{image.shape[1]}x{image.shape[2]}; a mask must match its image"
            )
        data_images.append(image)
        data_masks.append(mask)
        data.names.append(name)
    return data


def read_dataset(
    path: str | Path,
    classes: int = 2,
    in_channels: int = 1,
    ignore_value: int | None = None,
    mask_threshold: float | None = None,
    painted: bool = False,
) -> SegmentationData:
    """Read a labelled dataset: the ISBI 2012 folder or a folder of image/mask pairs (``painted``: of painted
    annotations, readers.painted_to_classes)."""
    folder = Path(path)
    if not folder.exists():
        raise DataError(
            f"data folder {folder} does not exist; pass --data with the ISBI 2012 folder "
            f"(`biounet fetch isbi2012 DIR` downloads it) or a folder with images/ and masks/"
        )
    if not folder.is_dir():
        raise DataError(f"--data must be a folder (or an image volume with --masks), but {folder} is a file")
    if is_isbi_folder(folder):
        return read_isbi(folder, classes, in_channels, ignore_value, mask_threshold=mask_threshold, painted=painted)
    if (folder / "images").is_dir():
        if not (folder / "masks").is_dir():
            raise DataError(
                f"{folder} has images/ but no masks/: training needs masks/NAME.ext for every images/NAME.ext"
            )
        return read_pairs(folder, classes, in_channels, ignore_value, mask_threshold, painted)
    raise DataError(
        f"{folder} is neither an ISBI 2012 folder ({ISBI_FILES['images']}, "
        f"{ISBI_FILES['labels']}) nor a folder with images/ and masks/ subfolders"
    )
