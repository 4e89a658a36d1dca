"""WaveNet (van den Oord et al. 2016, "WaveNet: A Generative Model for Raw Audio").

A sequence of ``length`` mu-law levels ``x_0 .. x_{T-1}`` (``num_levels`` = 256, mu = 255) is
modelled as ``prod_t p(x_t | x_<t, cond)``. The input at time ``t`` is the previous sample
``x_{t-1}`` (a learned start token at ``t = 0``), embedded (equivalent to a 1x1 convolution of
its one-hot code) to ``residual_channels``; shifting by one makes every layer after it a plain
causal convolution, so the logits at ``t`` depend on ``x_<t`` only. Then
``num_cycles * layers_per_cycle`` residual blocks (:class:`jaxar.nn.wavenet.ResidualBlock`) with
dilations ``1, 2, ..., 2^(layers_per_cycle-1)`` repeated per cycle; their skip outputs are
summed -> ReLU -> 1x1 -> ReLU -> 1x1 -> logits ``(B, T, num_levels)`` of a categorical.
Initialisation is Flax's default (LeCun-normal kernels, an embedding of standard deviation
1 / sqrt(residual_channels), zero biases), with no weight norm and no residual or skip
rescaling: against r9y9/wavenet_vocoder (weight norm, Kaiming-normal kernels, sqrt(0.5)
residual scaling) at the same size, crops and optimizer, it reached 4.524 test bits per sample
against 4.706, ahead on each of 3 seeds
(``benchmarks/equal_budget_wavenet.py``; README, "Results").

Conditioning enters every layer before the gate, ``tanh(W_f * x + V_f c) * sigmoid(W_g * x +
V_g c)``, with one fused projection for all layers:

* global (``num_classes > 0``): a class or speaker label, through a learned embedding;
* local (``local_features > 0``): a feature sequence such as a log-mel spectrogram with one
  frame per ``local_hop`` samples, upsampled to the sample rate by repetition
  (``upsample="repeat"``) or by a learned transposed convolution of stride and width
  ``local_hop`` (``upsample="transposed"``), then projected per layer.

``cond`` is ``None`` for an unconditional model, else a dict with ``"label"`` (int ``(B,)``) when
``num_classes > 0`` and ``"features"`` (float ``(B, length // local_hop, local_features)``) when
``local_features > 0``. A bare label array is accepted for a model with global conditioning
only. :meth:`WaveNet.cond_from_batch` builds ``cond`` from a data batch.

Fast generation (Paine et al. 2016): the cached sampler runs one time step per scan step, each
layer reading its past inputs from a cache of its last ``dilation * (kernel_size - 1)`` inputs
(see :class:`jaxar.nn.wavenet.CausalConv1D`), and the conditioning of that time step is
computed from its one frame, so each sample costs ``O(layers)`` work whatever the length. The
draw inverts the CDF with one uniform per example (:class:`InverseCdfCategorical`).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxar.distributions import Categorical
from jaxar.models.base import AutoregressiveModel, _is_concrete
from jaxar.models.registry import register
from jaxar.nn import wavenet_pallas
from jaxar.nn.wavenet import (
    ResidualBlock,
    decode_layers,
    decode_weights,
    line_rows,
    receptive_field,
    stack_blocks,
)

__all__ = ["UPSAMPLE_MODES", "InverseCdfCategorical", "Upsample", "WaveNet", "WaveNetNet"]

UPSAMPLE_MODES = ("repeat", "transposed")
HEAD = ("head_hidden", "head_logits")  # the output head's parameters


def _split_cond(cond):
    """``cond`` -> ``(labels or None, features or None)``."""
    if cond is None:
        return None, None
    if isinstance(cond, dict):
        return cond.get("label"), cond.get("features")
    return cond, None


class InverseCdfCategorical(Categorical):
    """:class:`~jaxar.distributions.Categorical` drawing by inverting the CDF.

    One uniform per example instead of the ``num_levels`` Gumbel draws of
    ``jax.random.categorical``: on CPU the PRNG, not the network, otherwise dominates a cached
    WaveNet step. Exact: value ``i`` is drawn with probability ``softmax(logits)_i`` (up to
    float32 rounding of the CDF, see :meth:`cdf`).
    """

    def cdf(self, probs: jnp.ndarray) -> jnp.ndarray:
        """``cdf[:, i] = sum_{j <= i} probs[:, j]`` for ``probs`` ``(B, n)``, in two levels.

        The ``n`` levels are padded to ``m * m`` (``m = ceil(sqrt(n))``) and split into ``m``
        blocks of ``m``: a matmul with an ``m x m`` upper-triangular matrix of ones sums within
        each block, a second one sums the block totals before each block. That is
        ``O(B n sqrt(n))`` multiply-adds where one ``n x n`` triangle would take ``O(B n^2)``
        (for n = 256, 4.4k instead of 65.5k per example: ~7% of a paper-size WaveNet step).
        """
        batch, n = probs.shape
        m = math.isqrt(n - 1) + 1  # the least m with m * m >= n
        blocks = jnp.pad(probs, ((0, 0), (0, m * m - n))).reshape(batch, m, m)
        # numpy triangles: constants in the program (built with jnp, a GPU sampler built them
        # again at every step)
        ones = np.ones((m, m), np.float32)
        within = blocks @ jnp.asarray(np.triu(ones), probs.dtype)  # sums inside each block
        before = within[:, :, -1] @ jnp.asarray(np.triu(ones, 1), probs.dtype)  # blocks before
        return (within + before[:, :, None]).reshape(batch, m * m)[:, :n]

    def step_noise(self, key: jax.Array, logits: jnp.ndarray) -> jnp.ndarray:
        """One uniform per example, ``(B, 1)`` float32."""
        return jax.random.uniform(key, (logits.shape[0], 1), jnp.float32)

    def draw(self, logits, noise, temperature: float = 1.0, top_p: float = 1.0) -> jnp.ndarray:
        probs = jax.nn.softmax(self.shape_logits(logits, temperature, top_p), axis=-1)
        cdf = self.cdf(probs)
        u = noise * cdf[:, -1:]
        values = jnp.sum((cdf <= u).astype(jnp.int32), axis=-1, keepdims=True)
        return jnp.minimum(values, self.num_levels - 1)


class Upsample(nn.Module):
    """Frames ``(B, T', F)`` -> one vector per sample ``(B, T' * hop, channels)``.

    ``"repeat"`` repeats each frame ``hop`` times (``channels`` = F, no parameters).
    ``"transposed"`` is a transposed convolution with stride = width = ``hop``: sample
    ``f * hop + p`` is ``frames[f] @ K[p] + b``.
    """

    hop: int
    mode: str = "repeat"
    channels: int = 0
    dtype: Any = jnp.float32

    def _kernel(self, in_features):
        k = self.param(
            "kernel", nn.initializers.lecun_normal(), (self.hop, in_features, self.channels)
        )
        b = self.param("bias", nn.initializers.zeros, (self.channels,))
        return k.astype(self.dtype), b.astype(self.dtype)

    @nn.compact
    def __call__(self, frames, step=None):
        """Full path (``step`` None) or the vector of sample ``step`` only, ``(B, channels)``."""
        frames = frames.astype(self.dtype)
        batch, num_frames, fin = frames.shape
        if step is not None:
            frame = lax.dynamic_index_in_dim(frames, step // self.hop, axis=1, keepdims=False)
            if self.mode == "repeat":
                return frame
            k, b = self._kernel(fin)
            return frame @ lax.dynamic_index_in_dim(k, step % self.hop, keepdims=False) + b
        if self.mode == "repeat":
            return jnp.repeat(frames, self.hop, axis=1)
        k, b = self._kernel(fin)
        y = jnp.einsum("bfi,pio->bfpo", frames, k) + b
        return y.reshape(batch, num_frames * self.hop, self.channels)


class WaveNetNet(nn.Module):
    """The WaveNet network: int ``(B, T)`` (+ cond) -> logits ``(B, T, num_levels)``."""

    num_levels: int
    dilations: tuple[int, ...]
    kernel_size: int = 3
    residual_channels: int = 64
    gate_channels: int = 128
    skip_channels: int = 64
    head_channels: int = 64
    num_classes: int = 0
    local_features: int = 0
    local_hop: int = 1
    local_channels: int = 0
    upsample: str = "repeat"
    dtype: Any = jnp.float32

    def setup(self):
        cond_width = len(self.dilations) * self.gate_channels
        # num_levels + 1 rows: the last one is the start token read at t = 0.
        self.embed = nn.Embed(
            self.num_levels + 1, self.residual_channels, dtype=self.dtype, name="embed"
        )
        self.blocks = [
            ResidualBlock(
                self.residual_channels,
                self.gate_channels,
                self.skip_channels,
                self.kernel_size,
                d,
                dtype=self.dtype,
                name=f"block{i}",
            )
            for i, d in enumerate(self.dilations)
        ]
        if self.num_classes:
            self.global_proj = nn.Embed(
                self.num_classes, cond_width, dtype=self.dtype, name="global_proj"
            )
        if self.local_features:
            self.upsampler = Upsample(
                self.local_hop,
                self.upsample,
                self.local_channels,
                dtype=self.dtype,
                name="upsample",
            )
            self.local_proj = nn.Dense(cond_width, dtype=self.dtype, name="local_proj")
        self.head_hidden = nn.Dense(self.head_channels, dtype=self.dtype, name="head_hidden")
        self.head_logits = nn.Dense(self.num_levels, dtype=self.dtype, name="head_logits")

    def global_conditioning(self, cond):
        """The label's per-layer conditioning ``(B, layers * gate)``, or None: the same at
        every time step, so a sampler computes it once, before its loop."""
        labels, _ = _split_cond(cond)
        return self.global_proj(labels) if self.num_classes else None

    def _conditioning(self, cond, step, global_c=None):
        """The summed per-layer conditioning ``(B, [T,] layers * gate)``, or None;
        ``global_c``: :meth:`global_conditioning`, if already computed."""
        _, features = _split_cond(cond)
        c = None
        if self.num_classes:
            c = self.global_conditioning(cond) if global_c is None else global_c
            if step is None:
                c = c[:, None, :]
        if self.local_features:
            lc = self.local_proj(self.upsampler(features, step))
            c = lc if c is None else c + lc
        return c

    def _stack(self, h, cond, step):
        c = self._conditioning(cond, step)
        g = self.gate_channels
        skip = None
        for i, block in enumerate(self.blocks):
            h, s = block(h, None if c is None else c[..., i * g : (i + 1) * g], step)
            skip = s if skip is None else skip + s
        return self.head(skip)

    def head(self, skip):
        """The summed skips ``(..., S)`` -> logits ``(..., num_levels)``."""
        return self.head_logits(nn.relu(self.head_hidden(nn.relu(skip))))

    def __call__(self, x, cond=None, train: bool = False):
        del train  # no dropout
        start = jnp.full((x.shape[0], 1), self.num_levels, jnp.int32)
        prev = jnp.concatenate([start, x[:, :-1].astype(jnp.int32)], axis=1)
        return self._stack(self.embed(prev), cond, None)

    def step_inputs(self, prev, step, cond=None, global_c=None):
        """The decode step's stack input ``(B, C)`` and per-layer conditioning ``(B, L G)``
        (None for an unconditional model); ``global_c`` as for :meth:`_conditioning`."""
        return self.embed(prev), self._conditioning(cond, step, global_c)

    @nn.compact
    def step(self, prev, step, cond=None):
        """Decode path: ``prev`` ``(B,)`` is ``x_{step-1}`` (the start token ``num_levels`` at
        step 0) -> logits of ``x_step``, ``(B, num_levels)``. Steps go 0, 1, 2, ... in order.

        All layers run through :func:`jaxar.nn.wavenet.decode_layers` on one tap-line buffer,
        the ``cache`` variable ``lines`` ``(sum of dilations, B, (k-1) C)``."""
        h, c = self.step_inputs(prev, step, cond)
        shape = (sum(self.dilations), h.shape[0], (self.kernel_size - 1) * h.shape[-1])
        lines = self.variable("cache", "lines", jnp.zeros, shape, self.dtype)
        w = decode_weights(self.variables["params"], len(self.dilations), self.dtype)
        rows = line_rows(step, self.dilations)
        _, skip, lines.value = decode_layers(h, lines.value, rows, w, c)
        return self.head(skip)


class WaveNet(AutoregressiveModel):
    """WaveNet over mu-law audio with exact likelihood, cached (fast) and naive samplers.

    ``method="pallas"`` samples with the cached sampler whose decode step is one Pallas kernel
    (:func:`jaxar.nn.wavenet_pallas.decode_step`: Triton on a GPU, Mosaic on a TPU, interpret
    mode on CPU): on CPU the same samples as ``"cached"`` from the same key.
    """

    sample_methods = ("cached", "naive", "pallas")
    default_sample_method = "cached"

    def cached_sampler(self, params, batch, cond=None, method: str = "cached"):
        """The cached sampler on the XLA decode step ("cached": :func:`decode_layers`, the
        arithmetic of :meth:`cached_step`) or on the one-kernel Pallas step ("pallas", whose
        tap lines have the kernel's own layout, :func:`jaxar.nn.wavenet_pallas.init_lines`).

        Either step's weights are laid out once, here, before the sampler's loop
        (:func:`decode_weights`, :func:`jaxar.nn.wavenet_pallas.pack`, the input layers' and
        the head's weights cast to the compute dtype), with the label's conditioning, so that
        the loop body reads every weight as a whole operand, converts none and copies none of
        them per step (:func:`jaxar.testing.invariant_work` and ``invariant_slices``)."""
        net = self.net
        num_layers = len(net.dilations)
        global_c = net.apply({"params": params}, cond, method=WaveNetNet.global_conditioning)
        cast = lambda tree: jax.tree.map(lambda a: a.astype(net.dtype), tree)
        # The step's input layers (embedding, local conditioning) in the compute dtype.
        inputs = {k: cast(v) for k, v in params.items() if not k.startswith("block")}
        if method == "pallas":
            head = {"hidden": params["head_hidden"], "logits": params["head_logits"]}
            packed = wavenet_pallas.pack(stack_blocks(params, num_layers, net.dtype), head)
            lines = wavenet_pallas.init_lines(
                sum(net.dilations), batch, net.kernel_size, net.residual_channels, net.dtype
            )

            def network(h, lines, rows, c):
                return wavenet_pallas.decode_step(h, lines, rows, packed, c)

        else:
            w = decode_weights(params, num_layers, net.dtype)
            head = {k: inputs[k] for k in HEAD}
            lines = self.init_cache(params, batch, cond)["cache"]["lines"]

            def network(h, lines, rows, c):
                _, skip, lines = decode_layers(h, lines, rows, w, c)
                return net.apply({"params": head}, skip, method=WaveNetNet.head), lines

        def step_fn(cache, x_flat, step):
            prev = self._previous(x_flat, step)
            h, c = net.apply(
                {"params": inputs}, prev, step, cond, global_c, method=WaveNetNet.step_inputs
            )
            logits, lines = network(h, cache["lines"], line_rows(step, net.dilations), c)
            return logits, {"lines": lines}

        return {"lines": lines}, step_fn

    @property
    def local_features(self) -> int:
        return self.net.local_features

    @property
    def num_frames(self) -> int:
        """Frames of local conditioning per example: ``length // local_hop``."""
        return self.event_shape[0] // self.net.local_hop

    @property
    def receptive_field(self) -> int:
        """How many previous samples the logits at t see: ``x_{t-rf} .. x_{t-1}``."""
        return receptive_field(self.net.kernel_size, self.net.dilations)

    # ----------------------------------------------------------------- conditioning
    def _cond_desc(self, batch) -> str:
        keys = []
        if self.num_classes:
            keys.append(f'"label": int ({batch},) in [0, {self.num_classes})')
        if self.local_features:
            keys.append(f'"features": float ({batch}, {self.num_frames}, {self.local_features})')
        return "{" + ", ".join(keys) + "}"

    def check_cond(self, cond, batch: int) -> None:
        """Validate ``cond``: None, or a dict with "label" and/or "features" (see module doc)."""
        if not self.num_classes and not self.local_features:
            if cond is not None:
                raise ValueError(f"{self.name}: this model is unconditional but got cond")
            return
        if cond is None:
            raise ValueError(f"{self.name}: expected cond {self._cond_desc(batch)}, got None")
        if not isinstance(cond, dict):
            if self.local_features:
                raise ValueError(
                    f"{self.name}: expected cond as a dict {self._cond_desc(batch)}, "
                    f"got {type(cond).__name__}"
                )
            cond = {"label": cond}
        expected = {"label"} if self.num_classes else set()
        expected |= {"features"} if self.local_features else set()
        if set(cond) != expected:
            raise ValueError(
                f"{self.name}: expected cond keys {sorted(expected)} "
                f"{self._cond_desc(batch)}, got keys {sorted(cond)}"
            )
        if self.num_classes:
            super().check_cond(cond["label"], batch)
        if self.local_features:
            f = cond["features"]
            shape, dtype = tuple(getattr(f, "shape", ())), getattr(f, "dtype", None)
            want = (batch, self.num_frames, self.local_features)
            if shape != want or dtype is None or not jnp.issubdtype(dtype, jnp.floating):
                raise ValueError(
                    f"{self.name}: expected cond['features'] of float shape {want} "
                    f"(length {self.event_shape[0]} / hop {self.net.local_hop} frames), "
                    f"got shape {shape} dtype {dtype}"
                )
            if _is_concrete(f) and batch > 0 and not np.all(np.isfinite(np.asarray(f))):
                raise ValueError(f"{self.name}: cond['features'] holds NaN or inf")

    def dummy_cond(self, batch: int):
        if not self.num_classes and not self.local_features:
            return None
        cond = {}
        if self.num_classes:
            cond["label"] = jnp.zeros((batch,), jnp.int32)
        if self.local_features:
            cond["features"] = jnp.zeros((batch, self.num_frames, self.local_features), jnp.float32)
        return cond

    def cond_from_batch(self, batch: dict):
        """The conditioning for a data batch: its "label" and/or "features" entries."""
        if not self.num_classes and not self.local_features:
            return None
        missing = [
            k
            for k, on in (("label", self.num_classes), ("features", self.local_features))
            if on and k not in batch
        ]
        if missing:
            raise ValueError(
                f"{self.name}: the model is conditioned on {missing} but the data batch has "
                f"only keys {sorted(batch)}"
            )
        cond = {}
        if self.num_classes:
            cond["label"] = batch["label"]
        if self.local_features:
            cond["features"] = batch["features"]
        return cond

    # ----------------------------------------------------------------- sampling conditioning
    def sampling_examples(self, source, num: int) -> dict | None:
        """A vocoder (``local_features``) resynthesises the first ``num`` examples of
        ``source`` from their features: those examples as one batch; None otherwise."""
        if not self.local_features:
            return None
        if len(source) < num:
            raise ValueError(
                f"{num} samples need the local features of {num} examples, but "
                f"{source.info.name} has {len(source)}"
            )
        elements = [source[i] for i in range(num)]
        return {k: np.stack([e[k] for e in elements]) for k in elements[0]}

    def sample_cond(self, num: int, class_label: int | None = None, examples=None):
        """Labels as for any model (for a vocoder without ``class_label``: the examples'
        labels), plus the examples' local features for a vocoder."""
        if not self.local_features:
            return super().sample_cond(num, class_label)
        if examples is None:
            raise ValueError(f"{self.name} is conditioned on local features: pass examples")
        labels = None
        if class_label is not None or not self.num_classes:
            labels = super().sample_cond(num, class_label)
        else:
            labels = jnp.asarray(examples["label"], jnp.int32)
        cond = {"features": jnp.asarray(examples["features"], jnp.float32)}
        if labels is not None:
            cond["label"] = labels
        return cond

    # ----------------------------------------------------------------- fast generation
    def init_cache(self, params, batch, cond=None):
        prev = jnp.zeros((batch,), jnp.int32)
        zero = jnp.zeros((), jnp.int32)
        if cond is None:
            cond = self.dummy_cond(batch)
        return self.decode_state(params, WaveNetNet.step, prev, zero, cond)

    def _previous(self, x_flat, step):
        """The step's input ``(B,)``: ``x_{step-1}``, or the start token at step 0."""
        prev = lax.dynamic_index_in_dim(x_flat, jnp.maximum(step - 1, 0), axis=1, keepdims=False)
        return jnp.where(step > 0, prev, self.num_levels).astype(jnp.int32)

    def cached_step(self, params, cache, x_flat, step, cond=None):
        prev = self._previous(x_flat, step)
        return self.decode(params, cache, prev, step, cond, method=WaveNetNet.step)


@register(
    "wavenet",
    tiny=dict(
        residual_channels=8, gate_channels=8, skip_channels=8, num_cycles=2, layers_per_cycle=3
    ),
)
def wavenet(
    length: int = 16000,
    num_levels: int = 256,
    residual_channels: int = 64,
    gate_channels: int = 128,
    skip_channels: int = 64,
    head_channels: int = 0,
    kernel_size: int = 3,
    num_cycles: int = 3,
    layers_per_cycle: int = 10,
    num_classes: int = 0,
    local_features: int = 0,
    local_hop: int = 80,
    local_channels: int = 0,
    upsample: str = "repeat",
    dtype: str = "float32",
) -> WaveNet:
    """A WaveNet over ``length`` mu-law samples of ``num_levels`` levels.

    ``num_cycles`` cycles of ``layers_per_cycle`` layers with dilations 1, 2, 4, ...;
    ``gate_channels`` (even) is the dilated conv's output, split into tanh and sigmoid halves;
    ``head_channels`` (0: ``skip_channels``) is the width of the output head's hidden layer.
    ``num_classes > 0`` adds global conditioning; ``local_features > 0`` adds local
    conditioning on frames of that many features, one per ``local_hop`` samples (``length``
    must be a multiple of it), upsampled by ``upsample`` ("repeat", or "transposed" with
    ``local_channels`` outputs, 0: ``local_features``). ``dtype`` is the compute dtype.
    """
    if length < 1 or num_cycles < 1 or layers_per_cycle < 1 or kernel_size < 2:
        raise ValueError(
            f"expected length >= 1, num_cycles >= 1, layers_per_cycle >= 1, kernel_size >= 2; "
            f"got {length}, {num_cycles}, {layers_per_cycle}, {kernel_size}"
        )
    if gate_channels % 2:
        raise ValueError(
            f"gate_channels must be even (tanh and sigmoid halves), got {gate_channels}"
        )
    if upsample not in UPSAMPLE_MODES:
        raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
    if local_features and (local_hop < 1 or length % local_hop):
        raise ValueError(
            f"length ({length}) must be a positive multiple of local_hop ({local_hop}) "
            "for local conditioning"
        )
    dilations = tuple(2**i for i in range(layers_per_cycle)) * num_cycles
    net = WaveNetNet(
        num_levels=num_levels,
        dilations=dilations,
        kernel_size=kernel_size,
        residual_channels=residual_channels,
        gate_channels=gate_channels,
        skip_channels=skip_channels,
        head_channels=head_channels or skip_channels,
        num_classes=num_classes,
        local_features=local_features,
        local_hop=local_hop if local_features else 1,
        local_channels=(local_channels or local_features) if upsample == "transposed" else 0,
        upsample=upsample,
        dtype=jnp.dtype(dtype),
    )
    return WaveNet(
        name="wavenet",
        net=net,
        distribution=InverseCdfCategorical(num_levels),
        event_shape=(int(length),),
        num_levels=num_levels,
        num_classes=num_classes,
    )
