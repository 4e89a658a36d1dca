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
block when training, each block's mask drawn from the ``'dropout'`` rng stream (JAX's default
threefry; XLA's RngBitGenerator, which an ``rbg`` key uses, drew the masks 4.6x slower on a CPU,
BENCHMARKS.md). Weight normalisation is
optional (``weight_norm``). ``weight_init`` picks the initialisation
(:data:`jaxar.nn.shifted.WEIGHT_INITS`):
``"unit"`` (unit-norm filters, gain 1, or 0.1 for a block's last convolution), ``"data"`` (the
paper's data-dependent initialisation of the weight-norm gains and biases, from the batch
:meth:`PixelCNNPP.init` is given) or ``"fan_in"`` (PyTorch's default fan-in uniform draw,
which the public PyTorch implementation relies on). Measured against that implementation at
equal budget on Fashion-MNIST (README, ``benchmarks/equal_budget.py``): over seeds 0-2, test
3.245 (``unit``), 3.268 (``data``), 3.225 (``fan_in``) against the peer's 3.176 bits/dim; over
seeds 0-5, ``fan_in`` 3.211 (3.160-3.238) against 3.202 (3.151-3.254), inside the seed
spread. Without weight norm (as the shipped configs train) ``unit`` wins: 3.152 (3.147-3.160)
against ``fan_in``'s 3.233 over seeds 0-2. So the default (``weight_init=None``) is ``fan_in``
with weight norm and ``unit`` without.

Sampling draws one pixel (all channels jointly) per step: by default with the cached decoder
(:class:`CachedDecoder`, receptive-field-local work per pixel, as in Ramachandran et al. 2017,
"Fast Generation for Convolutional Autoregressive Models"), or naively with a full forward
pass per pixel.
"""

from __future__ import annotations

import itertools
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxar.distributions import DiscretizedLogisticMixture
from jaxar.models.base import AutoregressiveModel
from jaxar.models.registry import register
from jaxar.nn.decode import DECODE_WEIGHTS
from jaxar.nn.inputs import centered
from jaxar.nn.shifted import (
    NIN,
    WEIGHT_INITS,
    DownRightShiftedConv2D,
    DownRightShiftedConvTranspose2D,
    DownShiftedConv2D,
    DownShiftedConvTranspose2D,
    GatedResnet,
    ShiftedConv2D,
    concat_elu,
    decode_weights,
    down_shift,
    right_shift,
)
from jaxar.sampling import when

__all__ = ["CachedDecoder", "PixelCNNPP", "PixelCNNPPNet"]

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
    weight_init: str = "unit"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, cond=None, train: bool = False):
        f, dt = self.features, self.dtype
        wn = dict(weight_norm=self.weight_norm, weight_init=self.weight_init, dtype=dt)
        block = lambda shift: GatedResnet(
            shift=shift, dropout=self.dropout, num_classes=self.num_classes, **wn
        )
        label = cond if self.num_classes else None
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
                u = block("down")(u, label=label, train=train)
                ul = block("down_right")(ul, u, label=label, train=train)
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
                u = block("down")(u, us.pop(), label=label, train=train)
                ul = block("down_right")(
                    ul, jnp.concatenate([u, uls.pop()], axis=-1), label=label, train=train
                )
            if stage < NUM_STAGES - 1:
                u = DownShiftedConvTranspose2D(f, (2, 3), **wn)(u)
                ul = DownRightShiftedConvTranspose2D(f, (2, 2), **wn)(ul)
        assert not us and not uls, "every shortcut is used exactly once"

        num_params = DiscretizedLogisticMixture(
            self.num_mixtures, self.num_levels, self.channels
        ).num_params
        out = NIN(num_params, name="out", **wn)(nn.elu(ul))
        return out.astype(jnp.float64 if dt == jnp.float64 else jnp.float32)


class PixelCNNPP(AutoregressiveModel):
    """PixelCNN++ with exact discretized-logistic-mixture likelihood; cached and naive samplers.

    The cached sampler (the default) draws one pixel per step, all channels jointly, through
    :class:`CachedDecoder`.
    """

    sample_methods = ("cached", "naive")
    default_sample_method = "cached"

    @property
    def decoder(self) -> CachedDecoder:
        return CachedDecoder(self.net, *self.event_shape[:2])

    def init_cache(self, params, batch: int, cond=None):
        return {"cache": self.decoder.init_cache(batch), "weights": self.decoder.weights(params)}

    def cached_step(self, params, state, x_flat, step, cond=None):
        out, cache = self.decoder.step(state["weights"], state["cache"], x_flat, step, cond)
        return out, {**state, "cache": cache}

    @property
    def init_needs_data(self) -> bool:
        """Data-dependent initialisation (``weight_init="data"``) reads a batch."""
        return self.net.weight_init == "data"

    def init_from_data(self, rng: jax.Array, x, cond=None):
        return self.init(rng, x, cond) if self.init_needs_data else self.init(rng)

    def init(self, rng: jax.Array, x=None, cond=None):
        """Initialise the parameters from a PRNG key (one jitted computation).

        With ``weight_init="data"`` (and ``weight_norm=True``) pass a batch of images ``x`` (and its
        ``cond``): the weight-norm gains and biases are set from its statistics. Without it the
        network is initialised on a dummy image.
        """
        if x is None:
            if self.init_needs_data:
                raise ValueError(
                    f"{self.name}: weight_init='data' needs a batch of images to initialise from: "
                    "init(rng, x, cond), got x=None"
                )
            x, cond = jnp.zeros((1, *self.event_shape), jnp.int32), self.dummy_cond(1)
        else:
            self.check_input(x, cond)
        return _jit_init(self.net, rng, jnp.asarray(x), cond)


class CachedDecoder:
    """The cached decode of :class:`PixelCNNPPNet` (evaluation mode): one pixel per step.

    Generating pixel ``(r, c)`` needs only what the two streams compute at that pixel, if every
    layer keeps the inputs its later outputs will read. The schedule follows the streams'
    causal invariants (:mod:`jaxar.nn.shifted`):

    * **rows** (the down stream ``u``): row ``r`` of every ``u`` layer depends only on image
      rows ``< r``, so at the first pixel of fine row ``r`` the whole ``u`` row is computed,
      at every level ``s`` (resolution ``1 / 2**s``) whose row ``r / 2**s`` starts there. A
      ``(2, 3)`` convolution reads its input's previous row (cached) and current row.
    * **pixels** (the down-right stream ``ul``): the value at ``(i, j)`` of level ``s``
      depends only on pixels before ``(2**s i, 2**s j)``, so at fine pixel ``(r, c)`` every
      level with ``r`` and ``c`` divisible by ``2**s`` computes its ``ul`` at
      ``(r >> s, c >> s)``: the down blocks, the deeper level (if due), then the up blocks. A
      ``(2, 2)`` convolution reads a 2x2 window of its input, cached in a ring of two rows.
    * **resolution changes**: a stride-2 convolution runs when its coarse position is due,
      reading the fine rows (window) it needs from the cache; a transposed one runs on one
      coarse row (pixel) and writes the two fine rows (2x2 fine pixels) it produces into a
      buffer that the finer level reads when it gets there.

    The first layers read the image itself, which the sampler fills as it goes, so no cache
    ever holds a value that was not yet sampled. Each step costs ``O(num_resnets)`` 2x2
    convolutions per due level, plus one row of the ``u`` stream at the start of a row;
    nothing depends on the image size except the row computations. The caches are a plain
    pytree (returned by :meth:`init_cache`, threaded through :meth:`step`) because whole
    levels are skipped (:func:`jaxar.sampling.when`); each level keeps its blocks' caches
    stacked in two arrays (indexed by the block's position, down blocks first), which the
    compiled sampler updates in place at every step, never copying them. So are the layers'
    weights (:meth:`weights`): converted to the compute dtype (and weight-normalised) once, before
    the sampler's loop, and passed on unchanged by every step."""

    def __init__(self, net: PixelCNNPPNet, height: int, width: int):
        self.net, self.height, self.width = net, int(height), int(width)
        r = net.num_resnets
        # The names the full network's modules get, in the order it creates them.
        blocks = (f"GatedResnet_{i}" for i in itertools.count())
        self.down, self.downsample = [], []
        for s in range(NUM_STAGES):
            self.down.append([(next(blocks), next(blocks)) for _ in range(r)])
            if s < NUM_STAGES - 1:
                self.downsample.append((f"DownShiftedConv2D_{s}", f"DownRightShiftedConv2D_{s}"))
        self.up, self.upsample = [None] * NUM_STAGES, [None] * (NUM_STAGES - 1)
        for stage in range(NUM_STAGES):
            s = NUM_STAGES - 1 - stage  # the up pass starts at the coarsest level
            self.up[s] = [(next(blocks), next(blocks)) for _ in range(r + (stage > 0))]
            if s > 0:  # upsample[s - 1]: from level s to level s - 1
                self.upsample[s - 1] = (
                    f"DownShiftedConvTranspose2D_{stage}",
                    f"DownRightShiftedConvTranspose2D_{stage}",
                )

    # ------------------------------------------------------------------ state
    def init_cache(self, batch: int) -> dict:
        """Zeros for every cache (zeros are the convolutions' padding). Per level ``s`` (width
        ``w``, ``n`` blocks per stream): ``u[s]`` ``(n, 3, B, w, F)``, each ``u`` block's
        last row: its two convolution inputs (what the next row's convolutions read as the row
        above) and its output (what the ``ul`` stream reads); ``ul[s]``
        ``(n, 2, 2, B, w + 1, F)``, each ``ul`` block's two-row rings of its two convolution
        inputs."""
        f, dt, last = self.net.features, self.net.dtype, NUM_STAGES - 1
        zeros = lambda *shape: jnp.zeros(shape, dt)
        width = [self.width >> s for s in range(NUM_STAGES)]
        cache = {"u": [], "ul": [], "ds_u": [], "ds_ul": [], "up_u": [], "up_ul": []}
        for s in range(NUM_STAGES):
            w, n = width[s], len(self.down[s]) + len(self.up[s])
            cache["u"].append(zeros(n, 3, batch, w, f))
            cache["ul"].append(zeros(n, 2, 2, batch, w + 1, f))
            if s < last:
                cache["ds_u"].append(zeros(batch, w, f))
                cache["ds_ul"].append(zeros(2, batch, w + 1, f))
                cache["up_u"].append(zeros(batch, 2, w, f))
                cache["up_ul"].append(zeros(2, batch, w, f))
        return cache

    def weights(self, params) -> dict:
        """What :meth:`step` reads: ``params`` with each layer's parameters replaced by its
        flax variables, the parameters and their ``decode_weights`` (unit-norm filters with
        weight norm, everything in the compute dtype: :func:`jaxar.nn.shifted.decode_weights`),
        and the class embeddings in the compute dtype. Built once, before the sampler's loop:
        the step does no work on its weights alone (:func:`jaxar.testing.invariant_work`)."""
        wn, dtype = self.net.weight_norm, self.net.dtype

        def walk(tree):
            if "kernel" in tree:
                return {"params": tree, DECODE_WEIGHTS: decode_weights(tree, wn, dtype)}
            if "embedding" in tree:
                return {"embedding": tree["embedding"].astype(dtype)}
            return {name: walk(sub) for name, sub in tree.items()}

        return walk(params)

    def step(self, weights, cache, x_flat, step, cond=None):
        """Mixture parameters ``(B, P)`` of pixel ``step`` (raster order) and the new cache.

        ``weights``: :meth:`weights`; ``x_flat`` ``(B, H W C)`` holds every pixel before
        ``step``; steps must come in order.
        """
        r, c = jnp.divmod(step, self.width)
        img = x_flat.reshape(x_flat.shape[0], self.height, self.width, -1)
        label = cond if self.net.num_classes else None
        cache = when(c == 0, lambda k: self._row(weights, k, img, r, label), cache)
        ul, cache = self._pixel(weights, cache, img, r, c, label)
        out = NIN(self._num_params, **self._wn).apply(weights["out"], nn.elu(ul), decode=True)
        return out.astype(jnp.float64 if self.net.dtype == jnp.float64 else jnp.float32), cache

    # ------------------------------------------------------------------ layers
    @property
    def _wn(self) -> dict:
        return dict(weight_norm=self.net.weight_norm, dtype=self.net.dtype)

    @property
    def _num_params(self) -> int:
        n = self.net
        return DiscretizedLogisticMixture(n.num_mixtures, n.num_levels, n.channels).num_params

    def _conv(self, p, x, kernel, shift, decode, features=None, **kw):
        conv = ShiftedConv2D(features or self.net.features, kernel, shift, **kw, **self._wn)
        return conv.apply(p, x, decode=decode)

    def _input(self, img, rows, cols):
        """The first layer's input ``[centred image, 1]`` at ``rows x cols`` (index vectors),
        zero outside the image: ``(B, len(rows), len(cols), C + 1)``."""
        dt = self.net.dtype
        inside = lambda i, n: (i >= 0) & (i < n)
        win = img[:, jnp.clip(rows, 0, self.height - 1)][:, :, jnp.clip(cols, 0, self.width - 1)]
        h = centered(win, self.net.num_levels, dt)
        h = jnp.concatenate([h, jnp.ones_like(h[..., :1])], axis=-1)
        valid = inside(rows, self.height)[:, None] & inside(cols, self.width)[None, :]
        return h * valid[None, :, :, None].astype(dt)

    def _gate(self, p, x, h, label):
        if label is not None:
            emb = p["class_embed"]["embedding"][label].astype(self.net.dtype)
            h = h + emb.reshape(emb.shape[0], *([1] * (h.ndim - 2)), emb.shape[-1])
        a, b = jnp.split(h, 2, axis=-1)
        return x + a * nn.sigmoid(b)

    def _aux(self, p, aux):
        return NIN(self.net.features, **self._wn).apply(p["aux"], concat_elu(aux), decode=True)

    def _block_row(self, p, prev, x, aux, label):
        """A ``u`` block on one row ``x`` ``(B, W, F)``; ``prev`` ``(3, B, W, F)`` holds the
        previous row of both convolutions' inputs (and the block's output). Returns the output
        and this row's ``(3, B, W, F)``."""
        conv = lambda name, before, cur, **kw: self._conv(
            p[name], concat_elu(jnp.stack([before, cur], 1)), (2, 3), "down", "row", **kw
        )[:, 0]
        h = conv("conv_in", prev[0], x)
        if aux is not None:
            h = h + self._aux(p, aux)
        out = conv("conv_out", prev[1], h, features=2 * self.net.features, init_scale=0.1)
        out = self._gate(p, x, out, label)
        return out, jnp.stack([x, h, out])

    def _block_pixel(self, p, rings, k, x, aux, label, i, j):
        """``ul`` block ``k`` of a level at ``(i, j)``, ``x`` ``(B, F)``; ``rings[k]`` holds two
        rows of both convolutions' inputs. Returns the output and the new rings."""

        def conv(name, rings, t, v, **kw):
            rings, win = _ring_window(rings, (k, t), v, i, j)
            return rings, self._conv(p[name], concat_elu(win), (2, 2), "down_right", "pixel", **kw)

        rings, h = conv("conv_in", rings, 0, x)
        h = h[:, 0, 0]
        if aux is not None:
            h = h + self._aux(p, aux)
        rings, out = conv("conv_out", rings, 1, h, features=2 * self.net.features, init_scale=0.1)
        return self._gate(p, x, out[:, 0, 0], label), rings

    # ------------------------------------------------------------------ the u stream, by rows
    def _row(self, weights, cache, img, r, label):
        """Compute row ``r`` of the ``u`` stream at every level whose row starts there."""
        rows = r - 2 + jnp.arange(2)
        win = self._input(img, rows, jnp.arange(self.width))
        u = self._conv(weights["u_in"], win, (2, 3), "down", "row")[:, 0]
        u = u * (r > 0).astype(u.dtype)  # down_shift: row 0 sees nothing
        return self._u_level(weights, cache, 0, r, u, label)

    def _u_level(self, weights, cache, s, i, u, label):
        # The level's stack is built whole at the end from the blocks' rows, not updated block
        # by block, and it holds each block's output: XLA copies the whole stack (it is written
        # in place of the previous row's) unless data dependence orders the write after every
        # read of the previous rows, the last block's second convolution's read included.
        cache, last = dict(cache), NUM_STAGES - 1
        prev, new = cache["u"][s], []
        pushed = [u]
        for k, (name, _) in enumerate(self.down[s]):
            u, row = self._block_row(weights[name], prev[k], u, None, label)
            pushed.append(u)
            new.append(row)
        if s < last:
            above, cur = cache["ds_u"][s], u

            def deeper(cache):
                win = jnp.stack([above, cur], axis=1)
                name = self.downsample[s][0]
                e = self._conv(weights[name], win, (2, 3), "down", "row", strides=2)[:, 0]
                return self._u_level(weights, cache, s + 1, i // 2, e, label)

            cache = when(i % 2 == 0, deeper, cache)
            cache["ds_u"] = _replace(cache["ds_u"], s, cur)
            u = cache["up_u"][s][:, i % 2]
        else:
            u = pushed.pop()
        n_down = len(self.down[s])
        for k, (name, _) in enumerate(self.up[s]):
            u, row = self._block_row(weights[name], prev[n_down + k], u, pushed.pop(), label)
            new.append(row)
        cache["u"] = _replace(cache["u"], s, jnp.stack(new))
        if s > 0:  # one coarse row gives the two fine rows of the finer level
            conv = ShiftedConv2D(
                self.net.features, (2, 3), "down", strides=2, transpose=True, **self._wn
            )
            fine = conv.apply(weights[self.upsample[s - 1][0]], u[:, None], cached=True)
            cache["up_u"] = _replace(cache["up_u"], s - 1, fine)
        return cache

    # ------------------------------------------------------------------ the ul stream, by pixels
    def _pixel(self, weights, cache, img, r, c, label):
        """``ul`` at fine pixel ``(r, c)`` (and at every coarser level due there)."""
        above = self._input(img, r - 1 + jnp.zeros(1, jnp.int32), c - 1 + jnp.arange(3))
        left = self._input(img, r - 1 + jnp.arange(2), c - 1 + jnp.zeros(1, jnp.int32))
        ul_up = self._conv(weights["ul_in_up"], above, (1, 3), "down", "pixel")[:, 0, 0]
        ul_left = self._conv(weights["ul_in_left"], left, (2, 1), "down_right", "pixel")[:, 0, 0]
        ul = ul_up * (r > 0).astype(ul_up.dtype) + ul_left * (c > 0).astype(ul_left.dtype)
        return self._ul_level(weights, cache, 0, r, c, ul, label)

    def _ul_level(self, weights, cache, s, i, j, ul, label):
        cache, last = dict(cache), NUM_STAGES - 1
        rings = cache["ul"][s]
        u_col = lax.dynamic_index_in_dim(cache["u"][s][:, 2], j, 2, keepdims=False)  # (n, B, F)
        pushed = [ul]
        for k, (_, name) in enumerate(self.down[s]):
            ul, rings = self._block_pixel(weights[name], rings, k, ul, u_col[k], label, i, j)
            pushed.append(ul)
        if s < last:
            ring, win = _ring_window(cache["ds_ul"][s], (), ul, i, j)
            cache["ds_ul"] = _replace(cache["ds_ul"], s, ring)

            def deeper(cache):
                name = self.downsample[s][1]
                e = self._conv(weights[name], win, (2, 2), "down_right", "pixel", strides=2)
                cache = self._ul_level(weights, cache, s + 1, i // 2, j // 2, e[:, 0, 0], label)[1]
                return cache

            cache = when((i % 2 == 0) & (j % 2 == 0), deeper, cache)
            ul = lax.dynamic_index_in_dim(cache["up_ul"][s][i % 2], j, 1, keepdims=False)
        else:
            ul = pushed.pop()
        n_down = len(self.down[s])
        for k, (_, name) in enumerate(self.up[s]):
            aux = jnp.concatenate([u_col[n_down + k], pushed.pop()], axis=-1)
            ul, rings = self._block_pixel(weights[name], rings, n_down + k, ul, aux, label, i, j)
        cache["ul"] = _replace(cache["ul"], s, rings)
        if s > 0:  # one coarse pixel gives 2x2 fine pixels of the finer level
            conv = ShiftedConv2D(
                self.net.features, (2, 2), "down_right", strides=2, transpose=True, **self._wn
            )
            fine = conv.apply(weights[self.upsample[s - 1][1]], ul[:, None, None], cached=True)
            buf = lax.dynamic_update_slice_in_dim(
                cache["up_ul"][s - 1], fine.transpose(1, 0, 2, 3), 2 * j, axis=2
            )
            cache["up_ul"] = _replace(cache["up_ul"], s - 1, buf)
        return ul, cache


def _replace(items: list, index: int, value) -> list:
    items = list(items)
    items[index] = value
    return items


def _ring_window(rings, index: tuple, v, i, j):
    """Write ``v`` ``(B, F)`` at ``(i, j)`` of the two-row ring ``rings[index]`` (``rings`` is
    ``(*lead, 2, B, W + 1, F)``, column 0 the left padding, ``index`` static and as long as
    ``lead``) and read the 2x2 window ending there: ``(rings, (B, 2, 2, F))``."""
    at = lambda row, col: (*index, row, 0, col, 0)
    rings = lax.dynamic_update_slice(
        rings,
        v.reshape((1,) * (len(index) + 1) + v.shape[:1] + (1,) + v.shape[1:]),
        at(i % 2, j + 1),
    )
    size = (1,) * (len(index) + 1) + (v.shape[0], 2, v.shape[1])
    rows = [lax.dynamic_slice(rings, at(t % 2, j), size) for t in (i - 1, i)]
    win = jnp.stack([row.reshape(v.shape[0], 2, v.shape[1]) for row in rows], axis=1)
    return rings, win


@partial(jax.jit, static_argnums=0)
def _jit_init(net: nn.Module, rng: jax.Array, x, cond):
    """``net.init`` in one jitted computation, drawing with an ``rbg`` key derived from ``rng``.

    The network has a hundred or more parameter tensors, and XLA compiles a threefry draw for
    each of them slowly on CPU (about 4x the compile time of the whole forward pass), while
    ``rbg`` draws (XLA's RngBitGenerator) compile much faster. The parameters are a
    deterministic function of ``rng``. ``net`` is static, so equal networks (every ``create``
    with the same hyperparameters) share one compilation: still 6-14 s for a tiny network on
    one CPU core at the tests' LLVM level 0.
    """
    bits = jax.random.bits(rng, (2, 4), jnp.uint32)
    p_rng, d_rng = (jax.random.wrap_key_data(b, impl="rbg") for b in bits)
    return net.init({"params": p_rng, "dropout": d_rng}, x, cond)["params"]


@register(
    "pixelcnn_pp",
    tiny=dict(num_resnets=1, features=8, num_mixtures=2, dropout=0.0),
    shapes={"grey": (4, 4, 1), "rgb": (4, 4, 3), "small": (4, 4, 1)},  # H, W divisible by 4
)
def pixelcnn_pp(
    image_shape=(32, 32, 3),
    num_levels: int = 256,
    num_classes: int = 0,
    num_resnets: int = 5,
    features: int = 160,
    num_mixtures: int = 10,
    dropout: float = 0.5,
    weight_norm: bool = False,
    weight_init: str | None = None,
    data_init: bool = False,
    dtype: str = "float32",
) -> PixelCNNPP:
    """A PixelCNN++ over images of ``image_shape = (H, W, C)`` (H and W divisible by 4).

    ``num_resnets`` gated resnet blocks per down stage (one more per up stage after the first),
    ``features`` per stream, ``num_mixtures`` logistic components per pixel, ``dropout`` rate
    inside the blocks while training. ``weight_norm`` switches on weight normalisation;
    ``weight_init`` is ``"unit"``, ``"data"`` (data-dependent, needs ``weight_norm``) or
    ``"fan_in"`` (see the module docstring); by default (None) the one that learned fastest at
    equal budget for the parametrisation: ``"fan_in"`` with weight norm, ``"unit"`` without.
    ``data_init=True`` is the older spelling of
    ``weight_init="data"`` (runs saved with it still load). ``dtype`` is the compute dtype
    ("float32" or "bfloat16"); parameters and the likelihood stay float32.
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
    if data_init:
        if weight_init not in (None, "unit", "data"):
            raise ValueError(
                f"data_init=True means weight_init='data'; got it with weight_init={weight_init!r}"
            )
        weight_init = "data"
    if weight_init is None:
        weight_init = "fan_in" if weight_norm else "unit"
    if weight_init not in WEIGHT_INITS:
        raise ValueError(f"weight_init must be one of {WEIGHT_INITS}, got {weight_init!r}")
    if weight_init == "data" and not weight_norm:
        raise ValueError(
            "weight_init='data' initialises weight normalisation: set weight_norm=True"
        )
    net = PixelCNNPPNet(
        num_levels=num_levels,
        channels=c,
        features=features,
        num_resnets=num_resnets,
        num_mixtures=num_mixtures,
        dropout=float(dropout),
        num_classes=num_classes,
        weight_norm=bool(weight_norm),
        weight_init=str(weight_init),
        dtype=jnp.dtype(dtype),
    )
    return PixelCNNPP(
        name="pixelcnn_pp",
        net=net,
        distribution=DiscretizedLogisticMixture(num_mixtures, num_levels, c),
        event_shape=image_shape,
        num_levels=num_levels,
        num_classes=num_classes,
        hparams=dict(weight_init=weight_init),  # the resolved choice
    )
