"""VQ-VAE (van den Oord et al. 2017): a convolutional autoencoder with a discrete latent grid.

The encoder maps an image ``(H, W, C)`` to a grid ``(h, w) = (H, W) / 2^num_downsamples`` of
``code_dim`` vectors (``num_downsamples`` convolutions 4x4 of stride 2, ``features // 2``
wide but the last, which is ``features`` wide; a 3x3 convolution,
``num_res_blocks`` residual blocks ``x + conv1x1(relu(conv3x3(relu(x))))``, a 1x1 projection);
:class:`~jaxar.nn.quantize.VectorQuantizer` replaces each vector by its nearest code; the
decoder mirrors the encoder (transposed convolutions 4x4 of stride 2) and outputs, for every
sub-pixel, logits of a categorical over the ``num_levels`` levels. The decoder's likelihood
``p(x | z)`` is therefore a proper discrete distribution (sub-pixels independent given the
codes), and ``-log p(x | z)`` in nats is exact.

The training loss is ``-log p(x | z_q(x)) / D`` (nats per dimension, ``D = H W C``) plus the
codebook and commitment losses of the quantiser (means over the code vectors' elements). The
non-gradient state (EMA codebook statistics, code usage, restart offsets) is the flax
collection ``"vq"``; the runner carries it in the train state.

Two-stage generation (:mod:`jaxar.two_stage`) uses :meth:`VQVAE.encode` to turn a dataset into
code grids, trains any autoregressive image model on them, and decodes the prior's samples with
:meth:`VQVAE.decode_mean`.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxar.distributions import Categorical
from jaxar.models.autoencoder import Autoencoder
from jaxar.models.registry import register
from jaxar.nn.conv import conv_general_dilated
from jaxar.nn.inputs import centered
from jaxar.nn.quantize import VectorQuantizer, code_counts, perplexity

__all__ = ["VQVAE", "VQVAENet", "vqvae"]


# Every convolution goes through jaxar.nn.conv.conv2d: 1x1 ones as matrix products (their kernel
# gradients as convolutions are several times slower on CPU), the others with their kernel
# gradient in output slices on CPU. The same parameters as flax's nn.Conv.
Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)


class ResBlock(nn.Module):
    """``x + conv1x1(relu(conv3x3(relu(x))))``."""

    features: int
    hidden: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        h = Conv(self.hidden, (3, 3), dtype=self.dtype)(nn.relu(x))
        return x + Conv(self.features, (1, 1), dtype=self.dtype)(nn.relu(h))


class Encoder(nn.Module):
    features: int
    res_features: int
    num_res_blocks: int
    num_downsamples: int
    code_dim: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        for i in range(self.num_downsamples):
            width = self.features if i == self.num_downsamples - 1 else self.features // 2
            x = nn.relu(Conv(width, (4, 4), strides=(2, 2), dtype=self.dtype)(x))
        x = Conv(self.features, (3, 3), dtype=self.dtype)(x)
        for _ in range(self.num_res_blocks):
            x = ResBlock(self.features, self.res_features, self.dtype)(x)
        return Conv(self.code_dim, (1, 1), dtype=self.dtype)(nn.relu(x))


class Decoder(nn.Module):
    features: int
    res_features: int
    num_res_blocks: int
    num_downsamples: int
    out_features: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, z):
        x = Conv(self.features, (3, 3), dtype=self.dtype)(z)
        for _ in range(self.num_res_blocks):
            x = ResBlock(self.features, self.res_features, self.dtype)(x)
        x = nn.relu(x)
        for _ in range(self.num_downsamples):
            x = nn.ConvTranspose(self.features // 2, (4, 4), strides=(2, 2), dtype=self.dtype)(x)
            x = nn.relu(x)
        return Conv(self.out_features, (1, 1), dtype=self.dtype)(x)


class VQVAENet(nn.Module):
    """Encoder, quantiser and decoder; ``__call__`` returns the decoder's logits and the
    quantiser's outputs."""

    num_levels: int
    channels: int
    num_codes: int
    code_dim: int
    features: int
    res_features: int
    num_res_blocks: int
    num_downsamples: int
    beta: float
    ema_decay: float
    usage_decay: float
    restart_threshold: float
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.encoder = Encoder(
            self.features,
            self.res_features,
            self.num_res_blocks,
            self.num_downsamples,
            self.code_dim,
            self.dtype,
        )
        self.quantizer = VectorQuantizer(
            self.num_codes,
            self.code_dim,
            beta=self.beta,
            ema_decay=self.ema_decay,
            usage_decay=self.usage_decay,
            restart_threshold=self.restart_threshold,
        )
        self.decoder = Decoder(
            self.features,
            self.res_features,
            self.num_res_blocks,
            self.num_downsamples,
            self.channels * self.num_levels,
            self.dtype,
        )

    def encode_vectors(self, x):
        """The encoder's continuous output ``z_e(x)``: ``(B, h, w, code_dim)`` float32."""
        return self.encoder(centered(x, self.num_levels, self.dtype)).astype(jnp.float32)

    def encode(self, x):
        """Code indices ``(B, h, w)`` int32 of integer images ``x``."""
        return self.quantizer.nearest(self.encode_vectors(x))

    def decode_vectors(self, q):
        """Decoder logits ``(B, H, W, C, num_levels)`` float32 from code vectors ``q``."""
        out = self.decoder(q.astype(self.dtype)).astype(jnp.float32)
        return out.reshape(*out.shape[:-1], self.channels, self.num_levels)

    def decode(self, indices):
        """Decoder logits of code grids ``indices (B, h, w)``."""
        return self.decode_vectors(self.quantizer.embed(indices))

    def __call__(self, x, train: bool = False):
        vq = self.quantizer(self.encode_vectors(x), train=train)
        return self.decode_vectors(vq["quantized"]), vq


class VQVAE(Autoencoder):
    """The VQ-VAE as the runner sees it (see :class:`~jaxar.models.autoencoder.Autoencoder`),
    plus :meth:`encode`, :meth:`decode_logits`, :meth:`decode_mean` and :meth:`nll` for
    two-stage generation. ``variables`` below means ``{"params": params, "vq": state}``."""

    best_metric = "test/recon_bits_per_dim"
    train_curve = "train/recon_bits_per_dim"
    test_curve = "test/recon_bits_per_dim"

    def __init__(self, *, net: VQVAENet, event_shape, num_levels: int):
        super().__init__(name="vqvae", event_shape=event_shape, num_levels=num_levels)
        self.net = net
        self.distribution = Categorical(num_levels)
        self.num_codes = net.num_codes
        f = 2**net.num_downsamples
        self.code_shape = (self.event_shape[0] // f, self.event_shape[1] // f)
        self._encode = jax.jit(lambda v, x: self.net.apply(v, x, method=VQVAENet.encode))
        self._decode = jax.jit(lambda v, c: self.net.apply(v, c, method=VQVAENet.decode))
        self._nll = jax.jit(self._nll_fn)
        self._variables = jax.jit(self._init_variables)  # op by op: one compilation per draw

    # ------------------------------------------------------------------ runner hooks
    def _init_variables(self, rng):
        x = jnp.zeros((1, *self.event_shape), jnp.int32)
        return self.net.init({"params": rng}, x)

    def init(self, rng):
        return self._variables(rng)["params"]

    def init_state(self, rng):
        return self._variables(rng)["vq"]

    def variables(self, params, state):
        return {"params": params, "vq": state}

    def _recon_log_prob(self, logits, x):
        """``log p(x | z)`` per example ``(B,)``, in nats."""
        lp = self.distribution.log_prob(logits, x)
        return lp.reshape(lp.shape[0], -1).sum(axis=-1)

    def _mean_image(self, logits):
        """The decoder's mean of every sub-pixel, in [0, 1] pixel units."""
        probs = jax.nn.softmax(logits, axis=-1)
        levels = jnp.arange(self.num_levels, dtype=jnp.float32) / (self.num_levels - 1)
        return probs @ levels

    def _squared_error(self, logits, x):
        """Per-example mean squared error of the mean image, in [0, 1] pixel units ``(B,)``."""
        target = x.astype(jnp.float32) / (self.num_levels - 1)
        err = (self._mean_image(logits) - target) ** 2
        return err.reshape(err.shape[0], -1).mean(axis=-1)

    def loss(self, params, state, batch, rng):
        x = batch["x"]
        (logits, vq), updates = self.net.apply(
            {"params": params, "vq": state}, x, train=True, mutable=["vq"], rngs={"restart": rng}
        )
        recon = -jnp.mean(self._recon_log_prob(logits, x)) / self.num_dims
        loss = recon + vq["codebook_loss"] + vq["commitment_loss"]
        metrics = {
            "recon_bits_per_dim": recon / math.log(2.0),
            "mse": jnp.mean(self._squared_error(logits, x)),
            "codebook_loss": vq["codebook_loss"],
            "commitment_loss": vq["commitment_loss"],
            "perplexity": vq["perplexity"],
            "usage": vq["usage"],
            "restarts": vq["restarts"],
        }
        return loss, updates["vq"], metrics

    def eval_sums(self, params, state, batch):
        x, mask = batch["x"], batch["mask"]
        logits, vq = self.net.apply({"params": params, "vq": state}, x)
        return {
            "count": jnp.sum(mask),
            "nll": -jnp.sum(self._recon_log_prob(logits, x) * mask),
            "squared_error": jnp.sum(self._squared_error(logits, x) * mask),
            "code_counts": code_counts(vq["indices"], self.num_codes, mask),
        }

    def summarize(self, sums):
        n = float(sums["count"])
        nats = float(sums["nll"]) / n
        counts = jnp.asarray(sums["code_counts"], jnp.float32)
        return {
            "test/recon_bits_per_dim": nats / (self.num_dims * math.log(2.0)),
            "test/recon_nll_nats": nats,
            "test/mse": float(sums["squared_error"]) / n,
            "test/perplexity": float(perplexity(counts)),
            "test/usage": float(jnp.mean((counts > 0).astype(jnp.float32))),
        }

    # ------------------------------------------------------------------ two-stage API
    def _check_images(self, x):
        shape = tuple(getattr(x, "shape", ()))
        if shape[1:] != self.event_shape or not jnp.issubdtype(x.dtype, jnp.integer):
            raise ValueError(
                f"vqvae: expected integer images of shape (batch, {self.event_shape}), got "
                f"shape {shape} dtype {getattr(x, 'dtype', None)}"
            )

    def _check_codes(self, codes):
        shape = tuple(getattr(codes, "shape", ()))
        if shape[1:] != self.code_shape or not jnp.issubdtype(codes.dtype, jnp.integer):
            raise ValueError(
                f"vqvae: expected integer codes of shape (batch, {self.code_shape}) in "
                f"[0, {self.num_codes}), got shape {shape} dtype {getattr(codes, 'dtype', None)}"
            )

    def encode(self, variables, x) -> jnp.ndarray:
        """Code grids ``(B, h, w)`` int32 of integer images ``x (B, H, W, C)``."""
        self._check_images(x)
        return self._encode(variables, jnp.asarray(x))

    def decode_logits(self, variables, codes) -> jnp.ndarray:
        """The decoder's logits ``(B, H, W, C, num_levels)`` for code grids ``(B, h, w)``."""
        self._check_codes(codes)
        return self._decode(variables, jnp.asarray(codes, jnp.int32))

    def decode_mean(self, variables, codes) -> jnp.ndarray:
        """Images ``(B, H, W, C)`` int32: the decoder's mean of each sub-pixel, rounded to a
        level (what sample grids show)."""
        mean = self._mean_image(self.decode_logits(variables, codes))
        return jnp.round(mean * (self.num_levels - 1)).astype(jnp.int32)

    def _nll_fn(self, variables, x):
        logits = self.net.apply(variables, x)[0]
        return -self._recon_log_prob(logits, x), self._squared_error(logits, x)

    def nll(self, variables, x):
        """``(-log p(x | z_q(x)) in nats, mean squared error in [0, 1] units)``, each ``(B,)``."""
        self._check_images(x)
        return self._nll(variables, jnp.asarray(x))


@register(
    "vqvae",
    tiny=dict(num_codes=8, code_dim=4, features=8, res_features=4, num_res_blocks=1),
    shapes={"grey": (4, 4, 1), "rgb": (4, 4, 3)},  # H, W divisible by 2 ** num_downsamples
)
def vqvae(
    image_shape=(28, 28, 1),
    num_levels: int = 256,
    num_codes: int = 128,
    code_dim: int = 32,
    features: int = 64,
    res_features: int = 32,
    num_res_blocks: int = 2,
    num_downsamples: int = 2,
    beta: float = 0.25,
    ema_decay: float = 0.0,
    usage_decay: float = 0.99,
    restart_threshold: float = 0.03,
    dtype: str = "float32",
) -> VQVAE:
    """A VQ-VAE over images ``image_shape = (H, W, C)`` with ``num_levels`` levels.

    ``H`` and ``W`` must be divisible by ``2^num_downsamples`` (the code grid is
    ``(H, W) / 2^num_downsamples``); ``num_codes`` is K; ``beta`` weighs the commitment loss;
    ``ema_decay > 0`` learns the codebook by EMA instead of the codebook loss (the codebook's
    own EMA, not the runner's parameter EMA ``config.ema_decay``); ``restart_threshold`` (0: off)
    restarts codes used by fewer than ``restart_threshold / K`` of the vectors (moving average
    with ``usage_decay``). ``features`` is even (the upsampling layers have ``features / 2``).
    """
    image_shape = tuple(int(d) for d in image_shape)
    if len(image_shape) != 3 or min(image_shape) < 1:
        raise ValueError(f"image_shape must be (H, W, C) of positive sizes, got {image_shape}")
    f = 2**num_downsamples
    if num_downsamples < 1 or image_shape[0] % f or image_shape[1] % f:
        raise ValueError(
            f"num_downsamples must be >= 1 with H and W divisible by 2^num_downsamples; got "
            f"num_downsamples={num_downsamples} for image_shape {image_shape}"
        )
    if num_codes < 2 or code_dim < 1 or features < 2 or features % 2 or res_features < 1:
        raise ValueError(
            f"need num_codes >= 2, code_dim >= 1, even features >= 2, res_features >= 1; got "
            f"{num_codes}, {code_dim}, {features}, {res_features}"
        )
    if not 0.0 <= ema_decay < 1.0 or not 0.0 <= usage_decay < 1.0:
        raise ValueError(
            f"ema_decay and usage_decay must be in [0, 1), got {ema_decay} and {usage_decay}"
        )
    net = VQVAENet(
        num_levels=num_levels,
        channels=image_shape[-1],
        num_codes=num_codes,
        code_dim=code_dim,
        features=features,
        res_features=res_features,
        num_res_blocks=num_res_blocks,
        num_downsamples=num_downsamples,
        beta=beta,
        ema_decay=ema_decay,
        usage_decay=usage_decay,
        restart_threshold=restart_threshold,
        dtype=jnp.dtype(dtype),
    )
    return VQVAE(net=net, event_shape=image_shape, num_levels=num_levels)
