"""The mutex watershed (Wolf et al., ECCV 2018; TPAMI 2020) on predicted affinities.

Every edge of the pixel grid gets a weight: an attractive (nearest-neighbour) channel its affinity
``p`` plus ``attractive_bias``, a repulsive (long-range) channel ``1 - p``, the probability that the
two pixels lie in different objects. Edges are visited from the largest weight down: an attractive
edge merges its two clusters unless a mutex separates them, a repulsive edge puts a mutex between its
clusters unless they are merged already. The result is the partition the paper defines, with no
seeds and no threshold. An object is cut from a neighbour only through some repulsive edge between
them: an object smaller than the repulsive offsets, enclosed in another, merges into it even with exact
affinities (with the default offsets, a 3 x 3 object in the middle of an 11 x 11 one).

bioimage-cpp's ``bioimage_cpp.segmentation.mutex_watershed`` (the C++ behind python-elf 0.9's
``elf.segmentation.mutex_watershed``, which replaced affogato) does the work; this module fixes the
conventions, subsamples the repulsive edges with a seeded generator, and merges small segments into
their neighbours with elf's ``apply_size_filter``. No PyTorch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from biounet.core.errors import ConfigError, DataError
from biounet.data.affinities import (
    DEFAULT_OFFSETS,
    Offsets,
    attractive_count,
    boundary_from_affinities,
    check_affinities,
    check_offsets,
)
from biounet.instances.labels import relabel


def _check_settings(offsets: Offsets, strides: Sequence[int], attractive_bias: float, min_size: int) -> int:
    """The number of attractive channels, after checking the settings (ConfigError naming the bad one)."""
    n_attr = attractive_count(offsets)
    if n_attr == 0 or n_attr == len(offsets):
        raise ConfigError(
            f"the mutex watershed needs nearest-neighbour offsets first (attractive) and long-range ones after "
            f"(repulsive), got {list(offsets)}; use data.affinities.DEFAULT_OFFSETS"
        )
    if len(strides) != 2 or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in strides
    ):
        raise ConfigError(f"strides {tuple(strides)!r} must be two positive integers (dy, dx), e.g. (1, 1)")
    if isinstance(attractive_bias, bool) or not np.isfinite(attractive_bias) or not -1 <= attractive_bias <= 1:
        raise ConfigError(f"attractive_bias={attractive_bias!r} must be a number in [-1, 1]; 0 is the paper's")
    if isinstance(min_size, bool) or not isinstance(min_size, (int, np.integer)) or min_size < 0:
        raise ConfigError(f"min_size={min_size!r} must be a whole number of pixels, at least 0")
    return n_attr


def _repulsive_kept(
    shape: tuple[int, int, int], strides: Sequence[int], randomize: bool, rng: np.random.Generator
) -> np.ndarray:
    """(channels, H, W) bool: the repulsive edges kept. Regular: those starting on the grid of every
    ``strides`` pixels (bioimage-cpp's own stride rule); randomized: each with probability
    1 / (sy * sx), drawn from ``rng``."""
    sy, sx = int(strides[0]), int(strides[1])
    if randomize:
        return rng.random(shape) < 1.0 / (sy * sx)
    kept = np.zeros(shape, bool)
    kept[:, ::sy, ::sx] = True
    return kept


def _edge_weights(aff: np.ndarray, n_attr: int, attractive_bias: float, kept: np.ndarray) -> np.ndarray:
    """(C, H, W) float32 mutex watershed weights (larger first). A dropped repulsive edge gets a weight
    below every attractive one: visited after the last merge, it changes nothing."""
    weights = np.empty_like(aff)
    weights[:n_attr] = aff[:n_attr] + np.float32(attractive_bias)
    weights[n_attr:] = 1.0 - aff[n_attr:]
    floor = np.float32(min(float(weights[:n_attr].min(initial=0.0)), 0.0) - 1.0)
    weights[n_attr:][~kept] = floor
    return weights


def merge_small_segments(
    labels: np.ndarray, height: np.ndarray, min_size: int, mask: np.ndarray | None = None
) -> np.ndarray:
    """(H, W) labels with every segment under ``min_size`` pixels flooded by its neighbours -> uint32,
    ids 1..n (0 where ``mask`` is False).

    elf's ``apply_size_filter``: the small segments are erased and the others grow back over them in a
    seeded watershed of ``height`` (the boundary map), so a small piece joins the neighbour it is least
    separated from. Where every segment is small, the largest one is kept and takes the image.
    """
    from elf.segmentation.watershed import apply_size_filter

    seg = np.asarray(labels).astype(np.uint32)  # a copy: apply_size_filter writes into it
    inside = np.ones(seg.shape, bool) if mask is None else mask
    ids, sizes = np.unique(seg[inside], return_counts=True)
    if min_size <= 0 or not ids.size or sizes.min() >= min_size:
        return relabel(np.where(inside, seg, 0))
    exclude = [int(ids[np.argmax(sizes)])] if sizes.max() < min_size else None
    seg, _ = apply_size_filter(seg, np.ascontiguousarray(height, dtype=np.float32), min_size, exclude=exclude)
    seg[~inside] = 0
    return relabel(seg)


def mutex_watershed(
    affinities: np.ndarray,
    offsets: Sequence[Sequence[int]] = DEFAULT_OFFSETS,
    *,
    strides: Sequence[int] = (1, 1),
    randomize_strides: bool = False,
    attractive_bias: float = 0.0,
    min_size: int = 0,
    mask: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """(C, H, W) affinities in [0, 1] (1 = same object), one channel per offset -> (H, W) uint32 segments 1..n.

    ``offsets``: the nearest-neighbour offsets first (attractive, e.g. (-1, 0), (0, -1)), then the
    long-range ones (repulsive). ``strides`` (sy, sx): keep only the repulsive edges that start on every
    sy-th row and sx-th column (the paper's speed-up; attractive edges are always kept), or with
    ``randomize_strides`` each repulsive edge with probability 1 / (sy * sx), drawn from a generator
    seeded by ``seed``. ``attractive_bias`` in [-1, 1] is added to the attractive weights: above 0 merges
    happen earlier (fewer, larger segments), below 0 later (more, smaller ones); 0 is the parameter-free
    mutex watershed. ``min_size``: segments under that many pixels join a neighbour (merge_small_segments,
    on the boundary map of the attractive channels). ``mask`` ((H, W) bool): pixels outside are 0 and
    their edges are not used.

    bioimage-cpp sorts every edge once: O(E log E) for E = H * W * C edges (about 3 M for a 512 x 512
    ISBI slice with the 12 default offsets, under a second on one core).
    """
    import bioimage_cpp as bic

    offs = check_offsets(offsets)
    n_attr = _check_settings(offs, strides, attractive_bias, min_size)
    aff = check_affinities(affinities, offs)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != aff.shape[1:] or mask.dtype != bool:
            raise DataError(f"mask must be a bool array of shape {aff.shape[1:]}, got {mask.dtype} of {mask.shape}")
    rng = np.random.default_rng(seed)
    h, w = int(aff.shape[1]), int(aff.shape[2])
    kept = _repulsive_kept((len(offs) - n_attr, h, w), strides, randomize_strides, rng)
    weights = _edge_weights(aff, n_attr, attractive_bias, kept)
    labels = bic.segmentation.mutex_watershed(weights, [list(o) for o in offs], n_attr, mask=mask)
    if min_size > 0:
        return merge_small_segments(labels, boundary_from_affinities(aff, offs), min_size, mask)
    return relabel(labels)
