"""Building blocks: autoregressive masks, masked convolutions, a dense layer with a decode path."""

from jaxar.nn.conv import MaskedConv2D
from jaxar.nn.dense import Dense
from jaxar.nn.inputs import centered
from jaxar.nn.masks import channel_groups, channel_mask, conv_mask, group_width

__all__ = [
    "Dense",
    "MaskedConv2D",
    "centered",
    "channel_groups",
    "channel_mask",
    "conv_mask",
    "group_width",
]
