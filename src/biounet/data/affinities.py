"""Affinities: which pixel pairs belong to the same cell, the targets of an affinity-predicting U-Net.

An *offset* (dy, dx) defines one channel: channel c at pixel p is about the edge between p and
p + offsets[c] (NumPy axis order, the convention of python-elf and bioimage-cpp). Affinity 1 means
"same object" (attractive, connected), 0 means "different objects"; an edge that leaves the image
has no target. The nearest-neighbour offsets come first and are the attractive channels of the mutex
watershed (instances/mws.py); the others are its long-range repulsive channels.

Test-time augmentation predicts affinities on a flipped or rotated image. A symmetry ``(k, flip)``
is the one of ``segment.tiling.transform``: ``np.rot90`` by ``k`` quarter turns on the last two axes,
then (``flip``) a mirror of the last axis, in the order of its ``DIHEDRAL`` list. It maps an offset to
another offset of the set or to the negative of one, which names the same edges counted from their
other end (:func:`tta_offset_map`, :func:`untransform_affinities`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from biounet.core.config import TrainConfig
from biounet.core.errors import ConfigError, DataError
from biounet.data.readers import IGNORE
from biounet.data.symmetry import untransform

Offset = tuple[int, int]
Offsets = tuple[Offset, ...]
Symmetry = tuple[int, bool]  # (quarter turns k, mirror of the last axis), as segment.tiling's DIHEDRAL

# Nearest neighbours (attractive), then the mutex watershed paper's in-plane repulsive set for ISBI 2012
# (Wolf et al., ECCV 2018, experiments/isbi: the offsets with dz = 0). Modulo sign (o and -o are the same
# edges) it is closed under the square's 8 symmetries, so test-time augmentation maps each channel to a
# channel: {(-1,0), (0,-1)}, {(-9,0), (0,-9)}, {(-9,-9), (9,-9)}, {(-9,-4), (-4,-9), (4,-9), (9,-4)} and
# {(-27,0), (0,-27)} are each one orbit. Every long-range edge spans about 9 or 27 pixels.
DEFAULT_OFFSETS: Offsets = (
    (-1, 0),
    (0, -1),
    (-9, 0),
    (0, -9),
    (-9, -9),
    (9, -9),
    (-9, -4),
    (-4, -9),
    (4, -9),
    (9, -4),
    (-27, 0),
    (0, -27),
)
# The offset sets a network can be trained for, by the name ``--affinities`` takes (core/fields.py lists the
# same names as its choices: core cannot import data).
OFFSET_SETS: dict[str, Offsets] = {"none": (), "mws12": DEFAULT_OFFSETS}
SYMMETRIES: tuple[Symmetry, ...] = tuple((k, flip) for flip in (False, True) for k in range(4))
MEMBRANE_MODES = ("grow", "keep")


def offsets_for(name: str) -> Offsets:
    """The offsets of the set ``name`` (``--affinities``): ``()`` for "none", a network without affinities."""
    if name not in OFFSET_SETS:
        raise ConfigError(f"--affinities {name!r} is not an offset set; choose one of {', '.join(OFFSET_SETS)}")
    return OFFSET_SETS[name]


def output_channels(cfg: TrainConfig) -> int:
    """The channels of the network ``cfg`` describes: ``cfg.classes`` class scores first, then one affinity
    score per offset of ``cfg.affinities``."""
    return cfg.classes + len(offsets_for(cfg.affinities))


def check_offsets(offsets: Sequence[Sequence[int]]) -> Offsets:
    """``offsets`` as a tuple of (dy, dx) integer pairs, or a ConfigError: each must be two integers, not
    (0, 0), and no edge set may appear twice (an offset again, or its negative)."""
    out: list[Offset] = []
    for o in offsets:
        pair = tuple(o)
        if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair):
            raise ConfigError(f"affinity offset {o!r} is not a (dy, dx) pair of integers; give e.g. (-1, 0)")
        dy, dx = int(pair[0]), int(pair[1])
        if (dy, dx) == (0, 0):
            raise ConfigError("affinity offset (0, 0) links a pixel to itself; remove it")
        if (dy, dx) in out or (-dy, -dx) in out:
            raise ConfigError(
                f"affinity offset ({dy}, {dx}) repeats an edge set already in the offsets (o and -o are the same "
                f"edges); remove one of them"
            )
        out.append((dy, dx))
    if not out:
        raise ConfigError("no affinity offsets given; pass at least the nearest neighbours (-1, 0), (0, -1)")
    return tuple(out)


def attractive_count(offsets: Sequence[Sequence[int]]) -> int:
    """How many leading offsets are nearest-neighbour steps (|dy| + |dx| = 1): the attractive channels."""
    n = 0
    for dy, dx in check_offsets(offsets):
        if abs(dy) + abs(dx) != 1:
            break
        n += 1
    return n


def pair_slices(shape: tuple[int, int], offset: Offset) -> tuple[tuple[slice, slice], tuple[slice, slice]] | None:
    """(slices of p, slices of p + offset) over the pixels p whose edge stays inside an image of ``shape``,
    or None where no edge does."""
    src, dst = [], []
    for size, step in zip(shape, offset):
        if abs(step) >= size:
            return None
        src.append(slice(max(0, -step), size - max(0, step)))
        dst.append(slice(max(0, step), size + min(0, step)))
    return (src[0], src[1]), (dst[0], dst[1])


def _check_mask(mask: np.ndarray, ignore: int) -> np.ndarray:
    if ignore in (0, 1):
        raise ConfigError(f"ignore={ignore} is a class of the mask (0 membrane, 1 cell); give another value")
    a = np.asarray(mask)
    if a.ndim != 2 or not (np.issubdtype(a.dtype, np.integer) or a.dtype == bool):
        raise DataError(f"instance labels need an (H, W) integer class mask, got {a.dtype} of shape {a.shape}")
    bad = np.setdiff1d(np.unique(a), (0, 1, ignore))
    if bad.size:
        raise DataError(
            f"the mask holds classes {bad[:6].tolist()}; instance labels need 1 = cell, 0 = membrane and "
            f"{ignore} = ignored (a two-class mask, as readers.mask_to_classes gives)"
        )
    return a


def instance_labels(mask: np.ndarray, ignore: int = IGNORE, membrane_mode: str = "grow") -> np.ndarray:
    """(H, W) class mask (1 = cell, 0 = membrane, ``ignore``) -> (H, W) int32 object labels.

    Cells are the 4-connected components of the cell pixels, labelled 1..n. With ``membrane_mode``
    "grow" every membrane pixel joins a nearest cell (a 4-connected watershed of the distance to the
    cells, which keeps every grown cell connected; a pixel as far from two cells goes to one of them), so
    the labels partition the image and an affinity across a membrane is 0 where the membrane separates
    two cells; membrane that no cell reaches without crossing ignored pixels becomes IGNORE. With "keep"
    the membrane is label 0, one object of its own: two membrane pixels have affinity 1, a membrane pixel
    and a cell pixel 0 (the network learns the membrane as the background object). Ignored pixels are
    IGNORE (-1) in both modes: affinity_targets leaves every edge touching them without a target.
    """
    from scipy import ndimage

    if membrane_mode not in MEMBRANE_MODES:
        raise ConfigError(f"membrane_mode {membrane_mode!r} is not one of {', '.join(MEMBRANE_MODES)}")
    a = _check_mask(mask, ignore)
    ignored = a == ignore
    cells, _ = ndimage.label(a == 1)  # SciPy's default structure in 2D is the 4-neighbourhood
    labels = cells.astype(np.int32)
    if membrane_mode == "grow":
        from skimage.segmentation import watershed

        distance = ndimage.distance_transform_edt(a != 1) if cells.any() else np.zeros(a.shape)
        labels = watershed(distance, cells, connectivity=1, mask=~ignored).astype(np.int32)
        labels[labels == 0] = IGNORE  # membrane cut off from every cell by ignored pixels (or no cell at all)
    labels[ignored] = IGNORE
    return labels


def affinity_targets(
    labels: np.ndarray, offsets: Sequence[Sequence[int]] = DEFAULT_OFFSETS, ignore_mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) integer object labels -> (targets, valid), both (len(offsets), H, W).

    ``targets`` float32: 1 where pixel p and p + offset carry the same label, else 0. ``valid`` uint8: 1
    for an edge inside the image whose two pixels are both labelled; 0 where it leaves the image or touches
    a pixel with a negative label (IGNORE) or one set in ``ignore_mask`` ((H, W) bool). Where ``valid`` is
    0 the target is 0 (as bioimage-cpp's ``compute_affinities``). Label 0 is an object like any other.
    """
    offs = check_offsets(offsets)
    lab = np.asarray(labels)
    if lab.ndim != 2 or not (np.issubdtype(lab.dtype, np.integer) or lab.dtype == bool):
        raise DataError(f"affinity targets need an (H, W) integer label image, got {lab.dtype} of shape {lab.shape}")
    ignored = lab < 0 if np.issubdtype(lab.dtype, np.signedinteger) else np.zeros(lab.shape, bool)
    if ignore_mask is not None:
        extra = np.asarray(ignore_mask)
        if extra.shape != lab.shape or extra.dtype != bool:
            raise DataError(
                f"ignore_mask must be a bool array of the labels' shape {lab.shape}, got "
                f"{extra.dtype} of shape {extra.shape}"
            )
        ignored = ignored | extra
    shape = (int(lab.shape[0]), int(lab.shape[1]))
    targets = np.zeros((len(offs),) + shape, np.float32)
    valid = np.zeros((len(offs),) + shape, np.uint8)
    for c, offset in enumerate(offs):
        pairs = pair_slices(shape, offset)
        if pairs is None:
            continue
        p, q = pairs
        ok = ~(ignored[p] | ignored[q])
        valid[c][p] = ok
        targets[c][p] = (lab[p] == lab[q]) & ok
    return targets, valid


def transform_offset(offset: Offset, symmetry: Symmetry) -> Offset:
    """Where ``symmetry`` takes an offset: one quarter turn of ``np.rot90`` sends (dy, dx) to (-dx, dy),
    the mirror of the last axis sends (dy, dx) to (dy, -dx)."""
    k, flip = symmetry
    dy, dx = offset
    for _ in range(k % 4):
        dy, dx = -dx, dy
    return (dy, -dx) if flip else (dy, dx)


def _check_symmetry(symmetry: Symmetry) -> Symmetry:
    k, flip = symmetry
    if (k, flip) not in SYMMETRIES:
        raise ConfigError(f"symmetry {symmetry!r} is not (k, flip) with k in 0..3 and flip a bool (SYMMETRIES)")
    return int(k), bool(flip)


def tta_offset_map(offsets: Sequence[Sequence[int]], symmetry: Symmetry) -> tuple[np.ndarray, np.ndarray]:
    """(channel, negated), both (len(offsets),): ``symmetry`` sends offset j to ``offsets[channel[j]]``,
    or to its negative where ``negated[j]``; a ConfigError if the set is not closed under it.

    On the transformed image, channel ``channel[j]`` holds edge j of the original image; where negated,
    counted from the edge's other end, i.e. at the pixel p + offsets[j] of the original frame.
    """
    offs = check_offsets(offsets)
    sym = _check_symmetry(symmetry)
    index = {o: i for i, o in enumerate(offs)}
    channel, negated = np.zeros(len(offs), np.int64), np.zeros(len(offs), bool)
    for j, o in enumerate(offs):
        dy, dx = transform_offset(o, sym)
        if (dy, dx) in index:
            channel[j] = index[(dy, dx)]
        elif (-dy, -dx) in index:
            channel[j], negated[j] = index[(-dy, -dx)], True
        else:
            raise ConfigError(
                f"the affinity offsets are not closed under the symmetry {sym}: offset {o} becomes ({dy}, {dx}), "
                f"which is not an offset of the set (nor its negative); add it, or predict without TTA"
            )
    return channel, negated


def untransform_affinities(
    affinities: np.ndarray, offsets: Sequence[Sequence[int]], symmetry: Symmetry, fill: float = 0.0
) -> np.ndarray:
    """(C, h, w) affinities predicted on the image transformed by ``symmetry`` -> (C, H, W) float32
    affinities of the original image, channel for channel of ``offsets``.

    A channel that the symmetry maps to the negative of an offset is read one offset away (the edge's
    other end); where that lies outside the image the edge leaves the image and gets ``fill``.
    """
    offs = check_offsets(offsets)
    a = np.asarray(affinities, dtype=np.float32)
    if a.ndim != 3 or a.shape[0] != len(offs):
        raise DataError(f"affinities of shape {a.shape} do not match {len(offs)} offsets; expected (C, H, W)")
    channel, negated = tta_offset_map(offs, symmetry)
    k, flip = _check_symmetry(symmetry)
    planes = untransform(a, k, flip)
    shape = (int(planes.shape[1]), int(planes.shape[2]))
    out = np.full((len(offs),) + shape, fill, np.float32)
    for j, o in enumerate(offs):
        if not negated[j]:
            out[j] = planes[channel[j]]
            continue
        pairs = pair_slices(shape, o)
        if pairs is not None:
            out[j][pairs[0]] = planes[channel[j]][pairs[1]]
    return out


def check_affinities(affinities: np.ndarray, offsets: Offsets) -> np.ndarray:
    """(C, H, W) affinities as float32 in [0, 1], one channel per offset, or a DataError naming the problem."""
    a = np.asarray(affinities)
    if a.ndim != 3 or a.shape[0] != len(offsets):
        raise DataError(
            f"affinities of shape {a.shape} do not match the {len(offsets)} offsets; expected ({len(offsets)}, H, W), "
            f"one channel per offset in the offsets' order"
        )
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)) or a.dtype == bool:
        raise DataError(f"affinities have dtype {a.dtype}; expected floats in [0, 1]")
    a = a.astype(np.float32)
    if a.size and not np.isfinite(a).all():
        raise DataError(f"affinities hold {int((~np.isfinite(a)).sum())} NaN or infinite values; pass probabilities")
    if a.size and (a.min() < -1e-6 or a.max() > 1 + 1e-6):
        raise DataError(
            f"affinities range over [{a.min():g}, {a.max():g}]; expected probabilities in [0, 1] (apply the "
            f"sigmoid to the network's logits)"
        )
    return np.clip(a, 0.0, 1.0)


def boundary_from_affinities(affinities: np.ndarray, offsets: Sequence[Sequence[int]]) -> np.ndarray:
    """(C, H, W) affinities (1 = same object) -> (H, W) float32 boundary map in [0, 1].

    A pixel's value is the largest ``1 - affinity`` of the nearest-neighbour edges (|dy| + |dx| = 1)
    that touch it, from either end: a cut between two pixels marks both, so a boundary between two
    objects is a line two pixels wide. Long-range channels are not used. A height map for watersheds
    and superpixels, and the membrane evidence of the graph methods.
    """
    offs = check_offsets(offsets)
    a = check_affinities(affinities, offs)
    near = [c for c, (dy, dx) in enumerate(offs) if abs(dy) + abs(dx) == 1]
    if not near:
        raise ConfigError(f"offsets {list(offs)} have no nearest-neighbour step such as (-1, 0); add one")
    shape = (int(a.shape[1]), int(a.shape[2]))
    out = np.zeros(shape, np.float32)
    for c in near:
        pairs = pair_slices(shape, offs[c])
        if pairs is None:
            continue
        cut = 1.0 - a[c][pairs[0]]
        np.maximum(out[pairs[0]], cut, out=out[pairs[0]])
        np.maximum(out[pairs[1]], cut, out=out[pairs[1]])
    return np.clip(out, 0.0, 1.0)
