"""PixelCNN++ (Salimans, Karpathy, Chen and Kingma 2017).

The network is a U-net of two causal streams (see :mod:`jaxar.nn.shifted`): a down-shifted
stream ``u`` (sees the rows above) and a down-right-shifted stream ``ul`` (sees everything
before the pixel in raster order). Its six stages, on CIFAR-10 sizes::

    down:  32x32  --num_resnets blocks-->  stride 2  16x16  --blocks-->  stride 2  8x8  --blocks
    up:     8x8   --num_resnets + ... -->  up 2      16x16  --blocks+1-->  up 2   32x32 --blocks+1

Every block of the down pass (and the first layer and each down-sampling) pushes its ``u`` and
``ul`` outputs on a stack; every block of the up pass pops one pair as its auxiliary input (the
long shortcut connections): ``u`` gets the popped ``u``, ``ul`` gets ``[u, popped ul]``. In the
down pass ``ul`` blocks get the current ``u`` as auxiliary input. The first layer reads the
image centred to ``[-1, 1]`` plus a channel of ones (so the zero padding is distinguishable
from a dark border) and starts the streams shifted by one row (column), so no output sees its
own pixel. The output is a 1x1 layer on ``elu(ul)`` to the parameters of a
:class:`~jaxar.distributions.DiscretizedLogisticMixture` per pixel, whose linear channel
coefficients make G depend on R and B on R and G within the pixel.

Class conditioning (``num_classes > 0``) adds a learned per-block embedding of the label to
every gated resnet block's gate pre-activations. Dropout (``dropout``) is applied inside every
block when training, with masks drawn from one ``rbg`` key derived from the ``'dropout'`` rng
(cheap to compile and to draw, unlike a threefry draw per block). Weight normalisation is
optional (``weight_norm``), with data-dependent initialisation (``data_init``) when
:meth:`PixelCNNPP.init` is given a batch; both are off by default (the reference code's
data-dependent init is a known source of NaNs and long compiles).

Sampling is naive: one pixel (all channels jointly) per step, with a full forward pass.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxar.distributions import DiscretizedLogisticMixture
from jaxar.models.base import AutoregressiveModel
from jaxar.models.registry import register
from jaxar.nn.inputs import centered
from jaxar.nn.shifted import (
    NIN,
    DownRightShiftedConv2D,
    DownRightShiftedConvTranspose2D,
    DownShiftedConv2D,
    DownShiftedConvTranspose2D,
    GatedResnet,
    down_shift,
    right_shift,
)

__all__ = ["PixelCNNPP", "PixelCNNPPNet"]

NUM_STAGES = 3  # resolutions of the U-net: full, 1/2, 1/4


class PixelCNNPPNet(nn.Module):
    """Integer images ``(B, H, W, C)`` -> mixture parameters ``(B, H, W, P)``.

    The parameters are float32 whatever the compute ``dtype`` (float64 only for a float64
    network under ``jax.enable_x64``, for reference computations).

    ``P = num_mixtures * (1 + 2C + C(C-1)/2)``, laid out as documented in
    :class:`~jaxar.distributions.DiscretizedLogisticMixture`.
    """

    num_levels: int
    channels: int
    features: int = 160
    num_resnets: int = 5
    num_mixtures: int = 10
    dropout: float = 0.5
    num_classes: int = 0
    weight_norm: bool = False
    data_init: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, cond=None, train: bool = False):
        f, dt = self.features, self.dtype
        wn = dict(weight_norm=self.weight_norm, data_init=self.data_init, dtype=dt)
        block = lambda shift: GatedResnet(
            shift=shift, dropout=self.dropout, num_classes=self.num_classes, **wn
        )
        label = cond if self.num_classes else None
        # Dropout masks: one rbg key (XLA RngBitGenerator) split per block. Threefry masks of
        # every block's activations are slow to compile and to draw; this is one cheap split.
        r = self.num_resnets
        num_blocks = 2 * (NUM_STAGES * r + r + (NUM_STAGES - 1) * (r + 1))  # down + up, 2 streams
        keys = iter([None] * num_blocks)
        if train and self.dropout > 0:
            bits = jax.random.bits(self.make_rng("dropout"), (4,), jnp.uint32)
            keys = iter(jax.random.split(jax.random.wrap_key_data(bits, impl="rbg"), num_blocks))

        h = centered(x, self.num_levels, dt)
        h = jnp.concatenate([h, jnp.ones_like(h[..., :1])], axis=-1)
        u = down_shift(DownShiftedConv2D(f, (2, 3), name="u_in", **wn)(h))
        ul = down_shift(DownShiftedConv2D(f, (1, 3), name="ul_in_up", **wn)(h)) + right_shift(
            DownRightShiftedConv2D(f, (2, 1), name="ul_in_left", **wn)(h)
        )

        # Down pass: push every output for the shortcut connections.
        us, uls = [u], [ul]
        for stage in range(NUM_STAGES):
            for _ in range(self.num_resnets):
                u = block("down")(u, label=label, train=train, dropout_rng=next(keys))
                ul = block("down_right")(ul, u, label=label, train=train, dropout_rng=next(keys))
                us.append(u)
                uls.append(ul)
            if stage < NUM_STAGES - 1:
                u = DownShiftedConv2D(f, (2, 3), strides=2, **wn)(u)
                ul = DownRightShiftedConv2D(f, (2, 2), strides=2, **wn)(ul)
                us.append(u)
                uls.append(ul)

        # Up pass: pop one pair per block.
        u, ul = us.pop(), uls.pop()
        for stage in range(NUM_STAGES):
            for _ in range(self.num_resnets + (stage > 0)):
                u = block("down")(u, us.pop(), label=label, train=train, dropout_rng=next(keys))
                ul = block("down_right")(
                    ul,
                    jnp.concatenate([u, uls.pop()], axis=-1),
                    label=label,
                    train=train,
                    dropout_rng=next(keys),
                )
            if stage < NUM_STAGES - 1:
                u = DownShiftedConvTranspose2D(f, (2, 3), **wn)(u)
                ul = DownRightShiftedConvTranspose2D(f, (2, 2), **wn)(ul)
        assert not us and not uls, "every shortcut is used exactly once"
        assert next(keys, "done") == "done", "one dropout key per block"

        num_params = DiscretizedLogisticMixture(
            self.num_mixtures, self.num_levels, self.channels
        ).num_params
        out = NIN(num_params, name="out", **wn)(nn.elu(ul))
        return out.astype(jnp.float64 if dt == jnp.float64 else jnp.float32)


class PixelCNNPP(AutoregressiveModel):
    """PixelCNN++ with exact discretized-logistic-mixture likelihood and a naive sampler."""

    sample_methods = ("naive",)
    default_sample_method = "naive"

    def init(self, rng: jax.Array, x=None, cond=None):
        """Initialise the parameters from a PRNG key (one jitted computation).

        With ``data_init=True`` (and ``weight_norm=True``) pass a batch of images ``x`` (and its
        ``cond``): the weight-norm gains and biases are set from its statistics. Without it the
        network is initialised on a dummy image.
        """
        if x is None:
            if self.net.data_init:
                raise ValueError(
                    f"{self.name}: data_init=True needs a batch of images to initialise from: "
                    "init(rng, x, cond), got x=None"
                )
            x, cond = jnp.zeros((1, *self.event_shape), jnp.int32), self.dummy_cond(1)
        else:
            self.check_input(x, cond)
        return _jit_init(self.net, rng, jnp.asarray(x), cond)


def _jit_init(net: nn.Module, rng: jax.Array, x, cond):
    """``net.init`` in one jitted computation, drawing with an ``rbg`` key derived from ``rng``.

    The network has a hundred or more parameter tensors, and XLA compiles a threefry draw for
    each of them slowly on CPU (about 4x the compile time of the whole forward pass), while
    ``rbg`` draws (XLA's RngBitGenerator) compile much faster. The parameters are a
    deterministic function of ``rng``.
    """

    @jax.jit
    def init(rng, x, cond):
        bits = jax.random.bits(rng, (2, 4), jnp.uint32)
        p_rng, d_rng = (jax.random.wrap_key_data(b, impl="rbg") for b in bits)
        return net.init({"params": p_rng, "dropout": d_rng}, x, cond)["params"]

    return init(rng, x, cond)


@register("pixelcnn_pp")
def pixelcnn_pp(
    image_shape=(32, 32, 3),
    num_levels: int = 256,
    num_classes: int = 0,
    num_resnets: int = 5,
    features: int = 160,
    num_mixtures: int = 10,
    dropout: float = 0.5,
    weight_norm: bool = False,
    data_init: bool = False,
    dtype: str = "float32",
) -> PixelCNNPP:
    """A PixelCNN++ over images of ``image_shape = (H, W, C)`` (H and W divisible by 4).

    ``num_resnets`` gated resnet blocks per down stage (one more per up stage after the first),
    ``features`` per stream, ``num_mixtures`` logistic components per pixel, ``dropout`` rate
    inside the blocks while training. ``weight_norm`` / ``data_init`` switch on weight
    normalisation and its data-dependent initialisation (off by default). ``dtype`` is the
    compute dtype ("float32" or "bfloat16"); parameters and the likelihood stay float32.
    """
    image_shape = tuple(int(d) for d in image_shape)
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (H, W, C), got {image_shape}")
    h, w, c = image_shape
    factor = 2 ** (NUM_STAGES - 1)
    if h % factor or w % factor or h < factor or w < factor:
        raise ValueError(
            f"image height and width must be positive multiples of {factor} (the U-net halves "
            f"them {NUM_STAGES - 1} times), got image_shape {image_shape}"
        )
    if num_resnets < 1 or features < 1 or num_mixtures < 1:
        raise ValueError(
            "num_resnets, features and num_mixtures must be >= 1, got "
            f"{num_resnets}, {features}, {num_mixtures}"
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if data_init and not weight_norm:
        raise ValueError("data_init=True initialises weight normalisation: set weight_norm=True")
    net = PixelCNNPPNet(
        num_levels=num_levels,
        channels=c,
        features=features,
        num_resnets=num_resnets,
        num_mixtures=num_mixtures,
        dropout=float(dropout),
        num_classes=num_classes,
        weight_norm=bool(weight_norm),
        data_init=bool(data_init),
        dtype=jnp.dtype(dtype),
    )
    return PixelCNNPP(
        name="pixelcnn_pp",
        net=net,
        distribution=DiscretizedLogisticMixture(num_mixtures, num_levels, c),
        event_shape=image_shape,
        num_levels=num_levels,
        num_classes=num_classes,
    )
