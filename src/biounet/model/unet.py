"""The U-Net of Ronneberger, Fischer and Brox (MICCAI 2015), as drawn in the paper's Figure 1.

Contracting path: per level two 3x3 convolutions + ReLU, then a 2x2 max-pool; the channel count
doubles at every level from ``base_width``. Expanding path: a 2x2 transposed convolution halves
the channels, the skip connection is cropped (``padding="valid"``) and concatenated, and two 3x3
convolutions follow. A 1x1 convolution maps to class scores.

With the defaults (valid padding, depth 4) a 572x572 input gives a 388x388 output;
:func:`biounet.model.geometry.valid_input_size` and :func:`biounet.model.geometry.output_size` convert between
the two. :func:`build_model` makes the network a :class:`TrainConfig` describes.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from biounet.core.config import TrainConfig
from biounet.core.errors import ConfigError
from biounet.data.affinities import output_channels
from biounet.data.context import input_channels
from biounet.model.geometry import Padding, check_input_size, output_size, valid_margin


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by (optional batch norm and) ReLU."""

    def __init__(self, in_ch: int, out_ch: int, padding: Padding, batch_norm: bool):
        pad = 1 if padding == "same" else 0
        layers: list[nn.Module] = []
        for c_in in (in_ch, out_ch):
            # A conv before batch norm needs no bias: the norm's shift replaces it.
            layers.append(nn.Conv2d(c_in, out_ch, 3, padding=pad, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Down(nn.Sequential):
    """One step down the contracting path: 2x2 max-pool, then a double convolution."""

    def __init__(self, in_ch: int, out_ch: int, padding: Padding, batch_norm: bool):
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_ch, out_ch, padding, batch_norm))


class Up(nn.Module):
    """One step up the expanding path: 2x2 up-convolution, crop-and-concatenate, double conv."""

    def __init__(self, in_ch: int, out_ch: int, padding: Padding, batch_norm: bool):
        super().__init__()
        self.padding = padding
        self.up = nn.ConvTranspose2d(in_ch, in_ch // 2, kernel_size=2, stride=2)
        self.conv = DoubleConv(in_ch // 2 + out_ch, out_ch, padding, batch_norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        dh, dw = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
        if self.padding == "valid":
            # the skip is larger: keep its centre (the paper's "copy and crop")
            skip = skip[..., dh // 2 : dh // 2 + x.shape[-2], dw // 2 : dw // 2 + x.shape[-1]]
        elif dh or dw:
            # same padding at odd sizes: pooling floored, so the upsampled map is 1 px short
            x = F.pad(x, [0, dw, 0, dh])
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """U-Net for 2D segmentation.

    Input: (N, in_channels, H, W) float, images scaled to [-1, 1].
    Output: (N, num_classes, H', W') unnormalised scores (logits: class scores, then any affinity
    scores, see :func:`build_model`), where
    H' = output_size(H) for ``padding="valid"`` and H' = H for ``padding="same"``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        base_width: int = 64,
        depth: int = 4,
        padding: Padding = "valid",
        batch_norm: bool = False,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if padding not in ("valid", "same"):
            raise ConfigError(f"padding must be 'valid' or 'same', got {padding!r}")
        for name, value in (
            ("in_channels", in_channels),
            ("num_classes", num_classes),
            ("base_width", base_width),
            ("depth", depth),
        ):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if num_classes < 2:
            raise ConfigError(f"num_classes must be at least 2 (softmax over classes), got {num_classes}")
        self.in_channels, self.num_classes = in_channels, num_classes
        self.base_width, self.depth = base_width, depth
        self.padding, self.batch_norm = padding, batch_norm

        widths = [base_width * 2**i for i in range(depth + 1)]
        self.inc = DoubleConv(in_channels, widths[0], padding, batch_norm)
        self.downs = nn.ModuleList(Down(widths[i], widths[i + 1], padding, batch_norm) for i in range(depth))
        self.ups = nn.ModuleList(Up(widths[i + 1], widths[i], padding, batch_norm) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """He-normal weights (std sqrt(2 / fan_in), as in the paper) and zero biases.

        ``generator`` makes the draw reproducible without touching PyTorch's global seed.
        """
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=generator)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            # eager only: under export the sizes are symbolic and their constraints are declared
            check_input_size(x.shape[-2:], self.depth, self.padding)
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.head(x)

    @property
    def margin(self) -> int:
        """Pixels of context lost on each side (0 for same padding; 92 for the default)."""
        return 0 if self.padding == "same" else valid_margin(self.depth)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_model(cfg: TrainConfig) -> UNet:
    """The U-Net described by ``cfg``, its weights drawn from a generator seeded by ``cfg.seed``: input
    ``input_channels(cfg)`` (the image's channels for every section of ``--context``), output
    ``output_channels(cfg)``: the ``cfg.classes`` class scores first, then one affinity score per offset of
    ``--affinities`` (data/affinities.py). With the defaults, the paper's network."""
    gen = torch.Generator().manual_seed(cfg.seed)
    return UNet(
        in_channels=input_channels(cfg),
        num_classes=output_channels(cfg),
        base_width=cfg.base_width,
        depth=cfg.depth,
        padding=cast(Padding, cfg.padding),  # UNet checks the value
        batch_norm=cfg.batch_norm,
        generator=gen,
    )


def tile_geometry(cfg: TrainConfig) -> tuple[int, int]:
    """(input tile, output tile) side lengths; a clear error for a tile the network cannot take."""
    if cfg.padding == "valid":
        try:
            return cfg.tile_size, output_size(cfg.tile_size, cfg.depth)
        except ConfigError as exc:
            raise ConfigError(f"--tile-size: {exc}") from None
    check_input_size((cfg.tile_size, cfg.tile_size), cfg.depth, "same")
    return cfg.tile_size, cfg.tile_size
