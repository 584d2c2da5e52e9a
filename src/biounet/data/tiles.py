"""Training tiles cut from full-resolution images, borders extended by mirroring (overlap-tile).

Every sample's randomness (image, position, augmentation) comes from a generator seeded by
``(seed, global_index)``, where the global index of a sample is ``step * global_batch +
position``. A run therefore draws the same samples whatever its micro-batching, its number of
DataLoader workers or its number of processes.

Sparse labels: a tile of an image whose mask has unlabelled (IGNORE) pixels is placed over one of its labelled
pixels, drawn uniformly; images without any labelled pixel are left out. A fully labelled mask's tiles are drawn
as they always were (the same draws, so the same samples from the same seed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from biounet.core.errors import DataError
from biounet.data.affinities import affinity_targets, check_offsets, instance_labels
from biounet.data.augment import AugmentConfig, elastic_displacement, flip_rotate, intensity, warp
from biounet.data.context import check_context, image_with_context
from biounet.data.mirror import mirror_pad
from biounet.data.readers import IGNORE, LOG, SegmentationData
from biounet.data.volume_data import SliceCache, VolumeSlices, item_shape

Sample = tuple[np.ndarray, ...]  # image, mask, weight[, affinity targets, their validity]


class TileSampler:
    """Draws augmented (image, mask, weight) training tiles from a subset of a dataset.

    Returns image (C * (2 * context + 1), in_tile, in_tile) float32 in about [-1, 1] (data/context.py),
    mask (out_tile, out_tile) int64 class indices (IGNORE = -1 for ignored pixels), weight (out_tile,
    out_tile) float32; with ``offsets``, also the affinity targets (len(offsets), out_tile, out_tile)
    float32 and their validity, uint8 (:meth:`affinities`). ``weights`` maps a dataset index to its (H, W)
    loss weight map (None: every pixel weighs 1). The images may be lazy (data/volume_data.py): only a
    bounded number of mirror-padded copies and instance label images is kept. Training images whose masks hold
    no labelled pixel are left out of ``indices``; a tile of a partly labelled mask covers a labelled pixel.
    """

    def __init__(
        self,
        data: SegmentationData,
        indices: list[int],
        in_tile: int,
        out_tile: int,
        augment: AugmentConfig,
        seed: int,
        weights: Mapping[int, np.ndarray] | None = None,
        context: int = 0,
        offsets: Sequence[Sequence[int]] = (),
        membrane_mode: str = "grow",
    ):
        if data.masks is None:
            raise DataError("training needs masks, but the dataset has none")
        if not indices:
            raise DataError("no training images: the split left the training set empty")
        if (in_tile - out_tile) % 2 or in_tile < out_tile:
            raise ValueError(f"input tile {in_tile} and output tile {out_tile} must differ by an even margin")
        for i in indices:
            h, w = item_shape(data.images, i)[1:]
            if h < out_tile or w < out_tile:
                raise DataError(
                    f"image {data.names[i]} is {h}x{w} pixels, smaller than the {out_tile}x{out_tile} output "
                    f"tile; choose a smaller --tile-size (or same padding), or use larger images"
                )
        self.data, self.weights = data, weights
        self.masks: Sequence[np.ndarray] = data.masks
        self._rows = SliceCache(max_items=4096, max_bytes=2**27)  # labelled_rows of each mask, made on first use
        self.indices = self._labelled(list(indices))
        self.in_tile, self.out_tile = in_tile, out_tile
        self.margin = (in_tile - out_tile) // 2
        self.augment, self.seed = augment, seed
        check_context(data, context)
        self.context, self.membrane_mode = context, membrane_mode
        self.offsets = check_offsets(offsets) if offsets else ()
        self._padded = SliceCache()  # mirror-padded images for undeformed tiles, made on first use
        self._labels = SliceCache()  # instance labels of whole masks (affinity targets), made on first use

    def labelled_rows(self, i: int) -> np.ndarray:
        """(H,) int64: the labelled (not IGNORE) pixels of image ``i``'s mask in its rows up to each row, a running
        count (the last is the mask's labelled pixels); computed once and cached."""
        return self._rows.get(i, lambda: np.cumsum(np.count_nonzero(self.masks[i] != IGNORE, axis=1), dtype=np.int64))

    def _labelled(self, indices: list[int]) -> list[int]:
        """``indices`` without the images whose masks hold no labelled pixel (a lazy volume's slices all hold one:
        volume_data.labelled_slices chose them, so none is read here)."""
        if isinstance(self.masks, VolumeSlices):
            return indices
        kept = [i for i in indices if self.labelled_rows(i)[-1] > 0]
        if not kept:
            raise DataError(
                f"no labelled pixel in the training masks: every pixel of the {len(indices)} training mask(s) is "
                f"unlabelled; paint at least one pixel of a class (--painted: a value 1..K) or check --ignore-value"
            )
        if len(kept) < len(indices):
            left = [self.data.names[i] for i in sorted(set(indices) - set(kept))]
            LOG.info(
                f"{len(left)} of the {len(indices)} training images have no labelled pixel and are left out of "
                f"training: {', '.join(left[:6])}{'...' if len(left) > 6 else ''}"
            )
        return kept

    def _position(self, rng: np.random.Generator, i: int, h: int, w: int) -> tuple[int, int]:
        """(y0, x0) of the output tile in image ``i``: uniform over the image for a fully labelled mask (the
        draws of every earlier release), else over the tiles holding a labelled pixel drawn uniformly."""
        S, rows = self.out_tile, self.labelled_rows(i)
        if rows[-1] == h * w:
            return int(rng.integers(h - S + 1)), int(rng.integers(w - S + 1))
        k = int(rng.integers(rows[-1]))
        y = int(np.searchsorted(rows, k, side="right"))  # the row of the k-th labelled pixel
        x = int(np.flatnonzero(self.masks[i][y] != IGNORE)[k - (int(rows[y - 1]) if y else 0)])
        y0, x0 = y - int(rng.integers(S)), x - int(rng.integers(S))  # the pixel anywhere in the tile
        return min(max(y0, 0), h - S), min(max(x0, 0), w - S)

    def _image(self, i: int) -> np.ndarray:
        return image_with_context(self.data, i, self.context)

    def _padded_image(self, i: int) -> np.ndarray:
        m = self.margin
        return self._padded.get(i, lambda: mirror_pad(self._image(i), m))

    def instance_labels(self, i: int) -> np.ndarray:
        """(H, W) int32 cells of image ``i``'s whole mask (data/affinities.py), computed once and cached."""
        return self._labels.get(i, lambda: instance_labels(self.masks[i], IGNORE, self.membrane_mode))

    def rng(self, index: int) -> np.random.Generator:
        """The generator of sample ``index``: a function of (seed, index) only."""
        return np.random.default_rng([self.seed, index])

    def __call__(self, index: int) -> Sample:
        rng = self.rng(index)
        i = self.indices[int(rng.integers(len(self.indices)))]
        mask = self.masks[i]
        y0, x0 = self._position(rng, i, *mask.shape)
        T, S, m = self.in_tile, self.out_tile, self.margin
        weight = self.weights[i] if self.weights is not None else None
        aug = self.augment
        cells = self.instance_labels(i) if self.offsets else None
        lab_t = None
        if aug.elastic and aug.elastic_sigma > 0:
            coords = elastic_displacement(rng, (T, T), aug.elastic_sigma, aug.elastic_grid)
            coords[0] += np.arange(y0 - m, y0 - m + T, dtype=np.float32)[:, None]  # + each pixel's own row
            coords[1] += np.arange(x0 - m, x0 - m + T, dtype=np.float32)[None, :]  # and column
            inner = coords[:, m : m + S, m : m + S]
            img_t = warp(self._image(i), coords, order=1)
            mask_t = warp(mask, inner, order=0)
            w_t = warp(weight, inner, order=1) if weight is not None else None
            lab_t = warp_labels(cells, inner) if cells is not None else None
        else:
            img_t = self._padded_image(i)[:, y0 : y0 + T, x0 : x0 + T]
            mask_t = mask[y0 : y0 + S, x0 : x0 + S]
            w_t = weight[y0 : y0 + S, x0 : x0 + S] if weight is not None else None
            lab_t = cells[y0 : y0 + S, x0 : x0 + S] if cells is not None else None
        if w_t is None:
            w_t = np.ones((S, S), np.float32)
        arrays = [img_t, mask_t, w_t] + ([lab_t] if lab_t is not None else [])
        img_t, mask_t, w_t, *labels = flip_rotate(arrays, rng, aug)  # one draw, whatever the arrays
        img_t = intensity(img_t, rng, aug)
        sample = img_t.astype(np.float32, copy=False), mask_t.astype(np.int64), w_t.astype(np.float32, copy=False)
        if not labels:
            return sample
        return sample + affinity_targets(labels[0], self.offsets)  # on the final tile: edges leaving it have none


def warp_labels(labels: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """(H, W) instance labels sampled by nearest neighbour at (2, h, w) ``coords`` (row, column), as the mask
    is (augment.warp), but IGNORE where a sample falls outside the image (more than half a pixel beyond its
    edge pixels): the mask's mirrored border holds no cells. Only the labels under the tile are warped,
    renumbered 0..n-1 (the warp carries int16)."""
    h, w = labels.shape
    rows, cols = coords
    outside = (rows < -0.5) | (rows > h - 0.5) | (cols < -0.5) | (cols > w - 0.5)
    y0, x0 = (min(max(int(np.floor(a.min())), 0), n - 1) for a, n in ((rows, h), (cols, w)))
    y1, x1 = (min(max(int(np.ceil(a.max())) + 1, 1), n) for a, n in ((rows, h), (cols, w)))
    values, compact = np.unique(labels[y0:y1, x0:x1], return_inverse=True)
    if len(values) > 2**15:
        raise DataError(
            f"{len(values)} cells under one training tile; affinity targets carry at most {2**15} per tile: "
            f"use a smaller --tile-size"
        )
    shift = np.array([y0, x0], np.float32)[:, None, None]
    out = values[warp(compact.reshape(y1 - y0, x1 - x0).astype(np.int16), coords - shift, order=0)]
    out[outside] = IGNORE
    return out


class TileDataset:
    """Map-style view of a TileSampler for DataLoader: item ``k`` is the sample of global index k.

    Items are NumPy arrays (the DataLoader's collation turns them into tensors), so the data
    package needs no PyTorch.
    """

    def __init__(self, sampler: TileSampler):
        self.sampler = sampler

    def __len__(self) -> int:
        return 2**62  # unbounded: batches are drawn by global index

    def __getitem__(self, index: int) -> Sample:
        return self.sampler(index)
