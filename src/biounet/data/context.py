"""2.5D input: a section of a stack with its neighbouring sections as extra input channels (``--context``).

With ``--context c`` the network sees, for section z, the sections z - c .. z + c in that order, each with
its own channels, stacked along the channel axis: ``(C * (2c + 1), H, W)``, section z's channels in the
middle. Beyond the stack's ends the sections are mirrored about the end section (z = -1 reads section 1,
z = Z reads Z - 2: ``data/mirror.py``'s rule, as images are mirrored beyond their borders); a stack of one
section repeats it. Training tiles (data/tiles.py), validation, ``evaluate`` and ``predict`` build the
input alike, from :func:`with_context` or :func:`image_with_context`.

Only images that are sections of one stack have neighbours: the ISBI TIFF stacks and image volumes
(``SegmentationData.sections``). A folder of independent 2D image files has none, and ``--context``
above 0 is refused for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import overload

import numpy as np

from biounet.core.config import TrainConfig
from biounet.core.errors import ConfigError
from biounet.data.mirror import Reader, reflect_indices
from biounet.data.readers import SegmentationData


def input_channels(cfg: TrainConfig) -> int:
    """The channels of the network's input: each image's channels times the 2 * context + 1 sections."""
    return cfg.in_channels * (2 * cfg.context + 1)


def context_indices(z: int, count: int, context: int) -> list[int]:
    """The sections z - context .. z + context of a stack of ``count``, mirrored beyond its ends."""
    if context < 0:
        raise ConfigError(f"--context must not be negative, got {context}")
    if not 0 <= z < count:
        raise IndexError(f"section {z} is outside the stack of {count} sections")
    return [int(i) for i in reflect_indices(z - context, z + context + 1, count)]


def _section(stack: Sequence[np.ndarray] | np.ndarray, z: int) -> np.ndarray:
    section = np.asarray(stack[z])
    return section[None] if section.ndim == 2 else section


def with_context(stack: Sequence[np.ndarray] | np.ndarray, z: int, context: int) -> np.ndarray:
    """Section ``z`` of ``stack`` with ``context`` sections on each side, as (C * (2 * context + 1), H, W).

    ``stack``: a (Z, C, H, W) or (Z, H, W) array, or a sequence of (C, H, W) or (H, W) sections (a lazy
    one reads only the sections asked for). ``context`` 0: section z itself, (C, H, W)."""
    indices = context_indices(z, len(stack), context)
    if context == 0:
        return _section(stack, z)
    return np.concatenate([_section(stack, i) for i in indices])


def context_reader(section_reader: Callable[[int], Reader], z: int, count: int, context: int) -> Reader:
    """A reader of boxes of section ``z`` with its neighbouring sections (channels as :func:`with_context`)
    from ``section_reader(s)``, the reader of boxes of section s of a stack of ``count`` (a volume's slices,
    read block by block). ``context`` 0: section z's own reader."""
    if not context:
        return section_reader(z)
    readers = [section_reader(s) for s in context_indices(z, count, context)]

    def read(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return np.concatenate([r(y0, y1, x0, x1) for r in readers])

    return read


def check_context(data: SegmentationData, context: int, what: str = "the data") -> None:
    """Refuse ``context`` above 0 for images that are not sections of one stack, naming the fix."""
    if context and data.sections is None:
        raise ConfigError(
            f"--context {context} gives the network each image's neighbouring sections, but {what} holds "
            f"independent 2D images (a folder of image files), which have none: use --context 0, or give a stack "
            f"of sections (the ISBI 2012 TIFF stacks, or an image volume with --masks)"
        )


def image_with_context(data: SegmentationData, index: int, context: int) -> np.ndarray:
    """Image ``index`` of ``data`` as the network takes it with ``context``: the image itself (``context``
    0), else its section of ``data.sections`` with the neighbouring sections (:func:`with_context`)."""
    if not context:
        return data.images[index]
    check_context(data, context)
    assert data.sections is not None  # check_context refused independent images
    z = data.section_of[index] if data.section_of is not None else index
    return with_context(data.sections, z, context)


class ContextImages(Sequence[np.ndarray]):
    """The images of a dataset as the network takes them with ``context`` (:func:`image_with_context`),
    each built when asked for: what a function that segments ``data.images[i]`` is given instead."""

    def __init__(self, data: SegmentationData, context: int):
        check_context(data, context)
        self.data, self.context = data, context

    def __len__(self) -> int:
        return len(self.data.images)

    @overload
    def __getitem__(self, i: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, i: slice) -> list[np.ndarray]: ...

    def __getitem__(self, i: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(i, slice):
            return [self[k] for k in range(len(self))[i]]
        if not -len(self) <= i < len(self):
            raise IndexError(f"image {i} is outside the {len(self)} images")
        return image_with_context(self.data, i % len(self), self.context)


def with_context_data(data: SegmentationData, context: int) -> SegmentationData:
    """``data`` whose images carry their neighbouring sections (:class:`ContextImages`); ``data`` itself for
    ``context`` 0. Masks and names are ``data``'s. For segmenting only: fingerprints of the training images
    (``image_digest``) are of the images themselves."""
    if not context:
        return data
    return SegmentationData(ContextImages(data, context), data.masks, data.names, data.sections, data.section_of)
