"""Datasets read lazily from a pair of volumes: an image volume and its label volume, the same (z, y, x) shape.

Each labelled z slice is one image of the dataset (named ``z0004``), so folds split along z as they split a
folder's images. Slices are read (data/volumes.py) and converted as readers.py converts an image file (images
to (C, H, W) float32 in [-1, 1] by the volume's value range, labels to (H, W) int16 classes) when first used,
and only a bounded number of them is kept (an LRU cache): the volumes may be larger than memory as long as one
slice fits. Sparse labels: a slice whose labels are all ``--ignore-value`` (with ``--painted``: all 0) is not an
image of the dataset. :func:`open_dataset` takes ``--data`` and ``--masks`` as the commands do: a folder (read
into memory by folders.py), or an image volume and a label volume.
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

from biounet.core.errors import ConfigError, DataError
from biounet.data.folders import read_dataset
from biounet.data.readers import LOG, SegmentationData, check_fits_in_memory, mask_to_classes, scale_image
from biounet.data.weights import class_weights, weight_map, weight_maps
from biounet.io.volumes import Volume, is_volume_spec, open_volume

CACHE_SLICES = 32  # the most slices (converted, padded or weight maps) one cache holds ...
CACHE_BYTES = 2**30  # ... and the most bytes (the newest one is kept whatever its size)


class SliceCache:
    """The most recently used arrays by key, at most ``max_items`` of them and ``max_bytes`` together.

    Thread-safe; a pickled copy (a DataLoader worker's) starts empty."""

    def __init__(self, max_items: int = CACHE_SLICES, max_bytes: int = CACHE_BYTES):
        self.max_items, self.max_bytes = max_items, max_bytes
        self._items: OrderedDict[Any, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple[Any, ...]:  # the limits travel, the arrays and the lock do not
        return SliceCache, (self.max_items, self.max_bytes)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Any, make: Callable[[], np.ndarray]) -> np.ndarray:
        """The array of ``key``: cached, or ``make()`` (called outside the lock) and cached."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            if key not in self._items:
                self._items[key] = value
                self._bytes += value.nbytes
                while len(self._items) > 1 and (len(self._items) > self.max_items or self._bytes > self.max_bytes):
                    self._bytes -= self._items.popitem(last=False)[1].nbytes
        return value


class VolumeSlices(Sequence[np.ndarray]):
    """The z slices ``zs`` of a volume as a lazy sequence: item i is slice ``zs[i]``, read and converted on
    first use and kept in a bounded cache. Picklable (the copy reopens the file and starts an empty cache)."""

    def __init__(self, volume: Volume, zs: Sequence[int], names: Sequence[str]):
        self.volume, self.zs, self.names = volume, list(zs), list(names)
        self.cache = SliceCache()

    @property
    @abstractmethod
    def item_shape(self) -> tuple[int, ...]:
        """Every item's shape, known without reading a slice."""

    @abstractmethod
    def convert(self, pixels: np.ndarray, z: int, name: str) -> np.ndarray:
        """Raw (H, W[, C]) pixels of slice ``z`` -> the item."""

    def __len__(self) -> int:
        return len(self.zs)

    @overload
    def __getitem__(self, i: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, i: slice) -> list[np.ndarray]: ...

    def __getitem__(self, i: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(i, slice):  # every slice in the range, read now
            return [self[k] for k in range(len(self))[i]]
        if not -len(self.zs) <= i < len(self.zs):
            raise IndexError(f"index {i} is outside the {len(self.zs)} slices of {self.volume.spec}")
        i %= len(self.zs)
        z, name = self.zs[i], f"{self.volume.spec} {self.names[i]}"
        return self.cache.get(z, lambda: self.convert(self.volume.read(z, slice(None), slice(None)), z, name))

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))


class ImageSlices(VolumeSlices):
    """Image slices as (C, H, W) float32 in [-1, 1], scaled by the volume's value range (readers.scale_image)."""

    def __init__(self, volume: Volume, zs: Sequence[int], names: Sequence[str], in_channels: int):
        super().__init__(volume, zs, names)
        self.in_channels = in_channels

    @property
    def item_shape(self) -> tuple[int, ...]:
        return (self.in_channels, *self.volume.shape[1:])

    def convert(self, pixels: np.ndarray, z: int, name: str) -> np.ndarray:
        return scale_image(pixels, self.in_channels, name, value_range=self.volume.value_range(z))


class MaskSlices(VolumeSlices):
    """Label slices as (H, W) int16 class indices, IGNORE where unlabelled (readers.mask_to_classes; ``painted``:
    painted annotations, 0 unlabelled). Every slice holds a labelled pixel (:func:`labelled_slices` chose them)."""

    def __init__(
        self,
        volume: Volume,
        zs: Sequence[int],
        names: Sequence[str],
        classes: int,
        ignore_value: int | None,
        threshold: float | None,
        painted: bool = False,
    ):
        super().__init__(volume, zs, names)
        self.classes, self.ignore_value, self.threshold, self.painted = classes, ignore_value, threshold, painted

    @property
    def item_shape(self) -> tuple[int, ...]:
        return self.volume.shape[1:]

    def convert(self, pixels: np.ndarray, z: int, name: str) -> np.ndarray:
        return mask_to_classes(pixels, self.classes, self.ignore_value, name, self.threshold, self.painted)


def item_shape(items: Sequence[np.ndarray], i: int) -> tuple[int, ...]:
    """The shape of ``items[i]``, without reading a lazy slice."""
    return items.item_shape if isinstance(items, VolumeSlices) else items[i].shape


def is_volume_path(spec: str | Path) -> bool:
    """A volume for --data / --masks: ``PATH.zarr[/ARRAY]``, ``PATH.h5[:/DATASET]`` or a TIFF stack (not a folder)."""
    text = str(spec)
    return is_volume_spec(text) or (text.lower().endswith((".tif", ".tiff")) and not Path(text).is_dir())


def open_dataset(
    data: str | Path,
    classes: int = 2,
    in_channels: int = 1,
    ignore_value: int | None = None,
    mask_threshold: float | None = None,
    masks: str | Path | None = None,
    painted: bool = False,
) -> SegmentationData:
    """The labelled dataset of ``--data`` and ``--masks``: a folder (the ISBI layout or images/ + masks/,
    read into memory by folders.read_dataset; ``masks`` None), or an image volume and its label volume
    ``masks`` (Zarr, OME-Zarr, HDF5 ``FILE.h5:/path`` or TIFF stack), read lazily by :func:`read_volumes`.
    ``painted``: the masks are painted annotations (0 unlabelled, 1..K the classes, readers.painted_to_classes)."""
    if painted and (ignore_value is not None or mask_threshold is not None):
        raise ConfigError(
            "--painted conflicts with --ignore-value and --mask-threshold: painted masks mark unlabelled pixels "
            "with 0 and hold the classes as 1..K; drop the other option (or --painted)"
        )
    if masks is None and not is_volume_path(data):
        return read_dataset(data, classes, in_channels, ignore_value, mask_threshold, painted)
    if masks is None:
        raise ConfigError(
            f"--data {data} is an image volume: pass its labels with --masks LABEL_VOLUME (a Zarr, HDF5 or TIFF "
            f"volume of the same z, y, x shape)"
        )
    if not is_volume_path(data):
        raise ConfigError(
            f"--masks {masks} takes the label volume of an image volume in --data, but --data {data} is not a volume "
            f"(PATH.zarr, PATH.h5:/DATASET or PATH.tif); drop --masks for a folder (it holds its own masks)"
        )
    if not is_volume_path(masks):
        raise ConfigError(
            f"--masks {masks} is not a volume; give the label volume as PATH.zarr[/ARRAY], PATH.h5:/DATASET or PATH.tif"
        )
    return read_volumes(str(data), str(masks), classes, in_channels, ignore_value, mask_threshold, painted)


def read_volumes(
    images: str,
    labels: str,
    classes: int = 2,
    in_channels: int = 1,
    ignore_value: int | None = None,
    mask_threshold: float | None = None,
    painted: bool = False,
) -> SegmentationData:
    """A dataset of lazy slices (:class:`ImageSlices`, :class:`MaskSlices`) from an image and a label volume.

    The label volume is read once now, slice by slice: every label slice is checked as a mask file would
    be, and slices without a labelled pixel (all ``ignore_value``; ``painted``: all 0) are left out (one log
    line says how many)."""
    image_vol, label_vol = open_volume(images), open_volume(labels)
    if image_vol.shape != label_vol.shape:
        raise DataError(
            f"--masks {labels} is {_voxels(label_vol)} but --data {images} is {_voxels(image_vol)}; every image "
            f"voxel needs its label: give volumes of the same shape (crop the larger one)"
        )
    if label_vol.channels > 1:
        raise DataError(
            f"--masks {labels} has {label_vol.channels} channels (axes {label_vol.axes}); a label volume holds one "
            f"class value per voxel: write it as a (z, y, x) array"
        )
    if image_vol.channels != in_channels:
        raise DataError(
            f"--data {images} has {image_vol.channels} channel(s) (axes {image_vol.axes}) but the model takes "
            f"{in_channels}; set --in-channels {image_vol.channels}"
        )
    check_fits_in_memory((*image_vol.shape[1:], image_vol.channels), image_vol.dtype, f"a slice of {images}")
    zs = labelled_slices(label_vol, classes, ignore_value, mask_threshold, painted)
    width = max(4, len(str(image_vol.shape[0] - 1)))
    every = [f"z{z:0{width}d}" for z in range(image_vol.shape[0])]
    names = [every[z] for z in zs]
    return SegmentationData(
        ImageSlices(image_vol, zs, names, in_channels),
        MaskSlices(label_vol, zs, names, classes, ignore_value, mask_threshold, painted),
        names,
        # every slice, labelled or not, is a neighbour for --context (read only when asked for)
        sections=ImageSlices(image_vol, range(image_vol.shape[0]), every, in_channels),
        section_of=zs,
    )


def _voxels(volume: Volume) -> str:
    return " x ".join(map(str, volume.shape)) + " voxels (z, y, x)"


def labelled_slices(
    volume: Volume, classes: int, ignore_value: int | None, threshold: float | None, painted: bool = False
) -> list[int]:
    """The z of every slice that holds a label other than ``ignore_value`` (``painted``: a value other than 0,
    unlabelled); each is checked as a mask."""
    unlabelled = 0 if painted else ignore_value
    what = "0 (nothing painted)" if painted else f"the ignore value {ignore_value}"
    kept = []
    for z in range(volume.shape[0]):
        pixels = volume.read(z, slice(None), slice(None))
        if unlabelled is not None and np.all(pixels == unlabelled):
            continue
        mask_to_classes(pixels, classes, ignore_value, f"{volume.spec} z={z}", threshold, painted)
        kept.append(z)
    skipped = volume.shape[0] - len(kept)
    if not kept:
        raise DataError(
            f"every one of the {volume.shape[0]} slices of {volume.spec} holds only {what}: there is nothing to "
            f"train or score on; check {'the painted labels' if painted else '--ignore-value and the labels'}"
        )
    if skipped:
        LOG.info(
            f"{skipped} of the {volume.shape[0]} slices of {volume.spec} hold only {what} "
            f"(no labels) and are left out: the dataset has {len(kept)} images (slices), split into folds along z"
        )
    return kept


class WeightMaps(Mapping[int, np.ndarray]):
    """Loss weight maps by dataset index, each made on first use (weights.weight_map) and kept in a bounded cache."""

    def __init__(self, masks: Sequence[np.ndarray], indices: Sequence[int], wc: np.ndarray, w0: float, sigma: float):
        self.masks, self.indices, self.wc, self.w0, self.sigma = masks, list(indices), wc, w0, sigma
        self.cache, self._known = SliceCache(), set(self.indices)

    def __getitem__(self, i: int) -> np.ndarray:
        if i not in self._known:
            raise KeyError(i)
        return self.cache.get(i, lambda: weight_map(self.masks[i], self.wc, self.w0, self.sigma))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def loss_weights(
    masks: Sequence[np.ndarray], indices: Sequence[int], classes: int, w0: float, sigma: float, balance: bool
) -> Mapping[int, np.ndarray] | None:
    """The (H, W) loss weights of the images ``indices`` by index, or None when every pixel weighs 1: made now
    for masks in memory, on first use for lazy ones (the class frequencies counted now, slice by slice)."""
    if not isinstance(masks, VolumeSlices):
        maps = weight_maps([masks[i] for i in indices], classes, w0, sigma, balance)
        return dict(zip(indices, maps)) if maps is not None else None
    if not w0 and not balance:
        return None
    wc = class_weights((masks[i] for i in indices), classes) if balance else np.ones(classes, np.float32)
    return WeightMaps(masks, indices, wc, w0, sigma)
