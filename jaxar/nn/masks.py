"""Autoregressive weight masks for convolutions over images in raster order.

The order of the dimensions of an image is raster order over pixels (row by row, left to right)
and, inside a pixel, R before G before B. A convolution respects that order when the output
feature for position ``(h, w)`` and colour group ``c`` reads only inputs that come earlier:

* any pixel in a row above, or to the left in the same row;
* at the centre pixel, input colour groups ``< c`` (mask type ``"A"``, the first layer, which
  reads the raw image) or ``<= c`` (mask type ``"B"``, later layers, whose features at group
  ``c`` already only depend on earlier dimensions).

Features are split into ``color_channels`` contiguous groups: with ``n`` features, feature ``f``
belongs to group ``f // (n // color_channels)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["channel_groups", "channel_mask", "conv_mask", "group_width"]


def _kernel_size(kernel_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(kernel_size, int):
        kernel_size = (kernel_size, kernel_size)
    kh, kw = (int(k) for k in kernel_size)
    if kh < 1 or kw < 1 or kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"kernel_size must be odd and positive in both axes, got {(kh, kw)}")
    return kh, kw


def group_width(width: int | None, default: int, multiple: int) -> int:
    """``width`` if given, else the least multiple of ``multiple`` (the colour groups a layer
    splits into) that is at least ``default``: grey images get ``default`` itself, RGB ones
    the nearest width that splits into three groups."""
    if width is not None:
        return int(width)
    return -(-int(default) // multiple) * multiple


def channel_groups(num_features: int, color_channels: int) -> np.ndarray:
    """The colour group (0..color_channels-1) of each of ``num_features`` features."""
    if color_channels < 1:
        raise ValueError(f"color_channels must be >= 1, got {color_channels}")
    if num_features % color_channels:
        raise ValueError(
            f"the number of features ({num_features}) must be divisible by "
            f"color_channels ({color_channels})"
        )
    return np.arange(num_features) // (num_features // color_channels)


def channel_mask(
    in_features: int, out_features: int, mask_type: str, color_channels: int = 1
) -> np.ndarray:
    """The (in, out) 0/1 mask between the features of one pixel (the kernel's centre)."""
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    gin = channel_groups(in_features, color_channels)[:, None]
    gout = channel_groups(out_features, color_channels)[None, :]
    allowed = gin < gout if mask_type == "A" else gin <= gout
    return allowed.astype(np.float32)


def conv_mask(
    kernel_size: int | Sequence[int],
    in_features: int,
    out_features: int,
    mask_type: str,
    color_channels: int = 1,
) -> np.ndarray:
    """The 0/1 mask, shape ``(kh, kw, in_features, out_features)``, of a masked convolution.

    Args:
      kernel_size: odd ``k`` or ``(kh, kw)``; ``1 x k`` and ``k x 1`` kernels are allowed.
      in_features, out_features: the convolution's feature counts; each must be divisible by
        ``color_channels``.
      mask_type: ``"A"`` (the centre excludes the output's own colour group) or ``"B"``
        (includes it).
      color_channels: number of colour groups (1 for grey images, 3 for RGB).

    Example: ``conv_mask(3, 1, 1, "A")[..., 0, 0]`` is ``[[1,1,1],[1,0,0],[0,0,0]]``; with
    ``"B"`` the centre is 1 too.
    """
    kh, kw = _kernel_size(kernel_size)
    ch, cw = kh // 2, kw // 2
    mask = np.zeros((kh, kw, in_features, out_features), np.float32)
    mask[:ch] = 1.0  # every row above the centre
    mask[ch, :cw] = 1.0  # left of the centre in its row
    mask[ch, cw] = channel_mask(in_features, out_features, mask_type, color_channels)
    return mask
