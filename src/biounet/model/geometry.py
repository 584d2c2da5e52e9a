"""Sizes of the U-Net without PyTorch: which inputs an unpadded network takes and what it returns.

Kept free of torch so that the tiler and the ONNX deployment path can use it without PyTorch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from biounet.core.errors import ConfigError

Padding = Literal["valid", "same"]
CONV_LOSS = 4  # pixels lost per double 3x3 convolution without padding (2 per conv)


def output_or_none(size: int, depth: int) -> int | None:
    """Output side of the valid-padding U-Net for an input side, or None when that side does not fit."""
    s = size
    for _ in range(depth):
        s -= CONV_LOSS
        if s <= 0 or s % 2:
            return None
        s //= 2
    s -= CONV_LOSS
    if s <= 0:
        return None
    for _ in range(depth):
        s = 2 * s - CONV_LOSS
    return s if s > 0 else None


def valid_sizes_near(size: int, depth: int = 4, count: int = 2) -> list[int]:
    """The valid (unpadded) input sizes nearest to ``size``: at most ``count`` below and above."""
    below = [s for s in range(size - 1, 0, -1) if output_or_none(s, depth)][:count]
    above: list[int] = []
    s = size + 1
    while len(above) < count:
        if output_or_none(s, depth):
            above.append(s)
        s += 1
    return sorted(below) + above


def output_size(input_size: int, depth: int = 4) -> int:
    """Output side length of the valid-padding U-Net for an input side length (572 -> 388)."""
    out = output_or_none(input_size, depth)
    if out is None:
        near = valid_sizes_near(input_size, depth)
        raise ConfigError(
            f"input size {input_size} does not fit an unpadded U-Net of depth {depth}: every "
            f"max-pool needs an even size and the output must be positive; nearest valid input "
            f"sizes: {', '.join(map(str, near))}"
        )
    return out


def valid_margin(depth: int = 4) -> int:
    """Context pixels an unpadded U-Net loses on each side: (input - output) / 2, 92 at depth 4."""
    return 6 * 2**depth - 4


def is_valid_output(out_size: int, depth: int) -> bool:
    """Whether a valid-padding U-Net of ``depth`` can produce an output side of ``out_size``."""
    s = out_size
    for _ in range(depth):
        s += CONV_LOSS
        if s % 2:
            return False
        s //= 2
    return s >= 1  # the bottom level keeps at least one pixel


def valid_input_size(out_size: int, depth: int = 4, exact: bool = True) -> int:
    """Input side length that gives ``out_size`` outputs (388 -> 572).

    With ``exact=False``: the input for the smallest valid output of at least ``out_size``.
    """
    if out_size < 1:
        raise ConfigError(f"output size must be positive, got {out_size}")
    if not is_valid_output(out_size, depth):
        above = next(o for o in range(out_size + 1, out_size + 2 ** (depth + 2)) if is_valid_output(o, depth))
        if exact:
            below = [o for o in range(out_size - 1, 0, -1) if is_valid_output(o, depth)][:1]
            raise ConfigError(
                f"output size {out_size} cannot be produced by an unpadded U-Net of depth "
                f"{depth}; nearest valid output sizes: {', '.join(map(str, below + [above]))}"
            )
        out_size = above
    return out_size + 2 * valid_margin(depth)


def check_input_size(shape: Sequence[int], depth: int, padding: Padding) -> None:
    """Raise a ConfigError naming the nearest valid sizes when (H, W) does not fit the network."""
    for side in (int(shape[0]), int(shape[1])):
        if padding == "valid":
            output_size(side, depth)
        elif side < 2**depth:
            raise ConfigError(
                f"input size {side} is too small for a same-padding U-Net of depth {depth}: "
                f"it needs at least {2**depth} pixels per side"
            )
