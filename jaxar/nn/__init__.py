"""Building blocks: autoregressive masks and masked convolutions."""

from jaxar.nn.conv import MaskedConv2D
from jaxar.nn.inputs import centered
from jaxar.nn.masks import channel_groups, channel_mask, conv_mask, group_width

__all__ = ["MaskedConv2D", "centered", "channel_groups", "channel_mask", "conv_mask", "group_width"]
