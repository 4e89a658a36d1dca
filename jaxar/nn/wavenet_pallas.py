"""The whole WaveNet decode step, every layer and the output head, as ONE Pallas kernel.

The XLA decode step (:func:`jaxar.nn.wavenet.decode_layers`) still runs about four kernels per
layer, each a separate launch on a GPU; at batch 1 the launches, not the arithmetic, bound the
step. Like NVIDIA's nv-wavenet (a persistent kernel that keeps a whole WaveNet step on chip),
:func:`decode_step` is one ``pallas_call`` that walks the layers in a loop inside the kernel:
per layer it reads the layer's past taps from the shared tap-line buffer (row ``rows[l]``, the
rows of :func:`~jaxar.nn.wavenet.line_rows`), runs the dilated conv (past taps and current
input), the gate, the residual and skip matmuls and the residual add, and writes the layer's
new taps back into the buffer in place (``input_output_aliases``); after the last layer it
runs the head (ReLU -> 1x1 -> ReLU -> 1x1) and writes the logits. The streams of a batch are
independent, so the kernel's grid runs one program per :data:`BLOCK` (16) of them: on a GPU,
blocks of the batch on as many SMs at once, each reading every layer's weights.

**Written for the Triton backend of Pallas** (GPU), whose constraints shape the code: every
array the kernel loads or multiplies has power-of-2 sizes, every matrix product is at least
16 x 16 x 16, and no value is sliced or concatenated in the kernel. So :func:`pack` splits the
weights by gate half and by tap and zero-pads every width to :func:`padded` (a power of 2, at
least 16), and the buffer keeps one ``(B', C')`` block per tap: shape ``(sum d_l, k - 1, B',
C')`` (:func:`init_lines`), ``B'`` the padded batch. Zero padding changes no real output: a
padded residual or skip channel stays 0 (its weights are 0), a padded gate unit is
``tanh(0) * sigmoid(.) = 0``, and padded batch rows and logits are cut off. The same code runs
in Pallas' interpret mode on the CPU backend (where Pallas has no compiler) and there draws
the samples of the XLA step from the same key (``tests/test_wavenet_pallas.py``; the sums
differ from the XLA step's only in rounding order, a past tap at a time). The kernel lowers
to Triton for ``cuda`` on a CPU-only machine (a test checks it), and ``benchmarks/aot.py``
compiles it to a cubin for an H200 there; it has never run on a GPU, because none was
available. On a TPU (Mosaic) it is refused in one line: the buffer would have to stay in HBM
and move by DMA.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

__all__ = ["BACKENDS", "BLOCK", "Packed", "decode_step", "init_lines", "pack", "padded"]

#: The backends the kernel runs on: interpreted on CPU, compiled by Triton on GPUs.
BACKENDS = ("cpu", "gpu", "cuda", "rocm")


def padded(n: int) -> int:
    """The kernel's size for a width or batch of ``n``: the next power of 2, at least 16
    (Triton's smallest matrix product is 16 x 16 x 16)."""
    return max(16, 1 << (int(n) - 1).bit_length())


#: Streams per kernel program (the kernel's grid runs ``padded(B) / BLOCK`` of them).
BLOCK = 16


def _spec(x, axis):
    """The BlockSpec of ``x``: BLOCK rows of its batch ``axis`` per program, or (None) all of
    it in every program."""
    n = len(x.shape)
    if axis is None:
        return pl.BlockSpec(x.shape, lambda b: (0,) * n)
    shape = tuple(BLOCK if a == axis else d for a, d in enumerate(x.shape))
    return pl.BlockSpec(shape, lambda b: tuple(b if a == axis else 0 for a in range(n)))


def init_lines(rows: int, batch: int, kernel_size: int, channels: int, dtype=jnp.float32):
    """The kernel's empty tap-line buffer: ``(rows, k - 1, padded(batch), padded(C))`` zeros
    (``rows`` = the sum of the dilations)."""
    return jnp.zeros((rows, kernel_size - 1, padded(batch), padded(channels)), dtype)


def _pad(x, shape):
    return jnp.pad(x, [(0, n - m) for m, n in zip(x.shape, shape, strict=True)])


@struct.dataclass
class Packed:
    """The kernel's weights (:func:`pack`): ``weights``, arrays split by gate half and by tap
    and zero-padded; the unpadded sizes it needs to read its inputs and cut its outputs."""

    weights: dict
    channels: int = struct.field(pytree_node=False)
    gate_channels: int = struct.field(pytree_node=False)
    num_levels: int = struct.field(pytree_node=False)


def pack(w: dict, head: dict) -> Packed:
    """The stacked blocks ``w`` (:func:`jaxar.nn.wavenet.stack_blocks`) and the head's Dense
    parameters (``{"hidden": {"kernel", "bias"}, "logits": {"kernel", "bias"}}``) as the
    kernel takes them, in the blocks' dtype. Done once per sampling call, outside the scan."""
    num_layers, k, c, g = w["conv_kernel"].shape
    dtype = w["conv_kernel"].dtype
    half, skip = g // 2, w["out_kernel"].shape[-1] - c
    cp, hp, sp = padded(c), padded(half), padded(skip)
    hidden, levels = head["logits"]["kernel"].shape
    mp, np_ = padded(hidden), padded(levels)
    kern, bias = w["conv_kernel"], w["conv_bias"][:, None, :]
    out, ob = w["out_kernel"], w["out_bias"][:, None, :]
    L = num_layers
    weights = {
        "past_a": _pad(kern[:, : k - 1, :, :half], (L, k - 1, cp, hp)),
        "past_b": _pad(kern[:, : k - 1, :, half:], (L, k - 1, cp, hp)),
        "cur_a": _pad(kern[:, k - 1, :, :half], (L, cp, hp)),
        "cur_b": _pad(kern[:, k - 1, :, half:], (L, cp, hp)),
        "bias_a": _pad(bias[..., :half], (L, 1, hp)),
        "bias_b": _pad(bias[..., half:], (L, 1, hp)),
        "res": _pad(out[..., :c], (L, hp, cp)),
        "res_bias": _pad(ob[..., :c], (L, 1, cp)),
        "skip": _pad(out[..., c:], (L, hp, sp)),
        "skip_bias": _pad(ob[..., c:], (L, 1, sp)),
        "hidden": _pad(head["hidden"]["kernel"].astype(dtype), (sp, mp)),
        "hidden_bias": _pad(head["hidden"]["bias"].astype(dtype)[None], (1, mp)),
        "logits": _pad(head["logits"]["kernel"].astype(dtype), (mp, np_)),
        "logits_bias": _pad(head["logits"]["bias"].astype(dtype)[None], (1, np_)),
    }
    return Packed(weights, c, g, levels)


def _kernel(h_ref, rows_ref, pa_ref, pb_ref, ca_ref, cb_ref, ga_ref, gb_ref, r_ref, rb_ref,
            s_ref, sb_ref, hk_ref, hb_ref, lk_ref, lb_ref, lines_ref, logits_ref,
            lines_out_ref):  # fmt: skip
    del lines_ref  # aliased with lines_out_ref: read and written through that one
    num_layers, taps = pa_ref.shape[:2]

    def dot(x, y):
        return jnp.dot(x, y, preferred_element_type=x.dtype)

    def layer(i, carry):
        h, skip = carry
        row = rows_ref[i]
        past = [lines_out_ref[row, j] for j in range(taps)]  # x_{t-(k-1)d} .. x_{t-d}
        a, b = dot(past[0], pa_ref[i, 0]), dot(past[0], pb_ref[i, 0])
        for j in range(1, taps):
            a, b = a + dot(past[j], pa_ref[i, j]), b + dot(past[j], pb_ref[i, j])
        a = dot(h, ca_ref[i]) + (a + ga_ref[i])  # ga/gb: the conv bias plus conditioning
        b = dot(h, cb_ref[i]) + (b + gb_ref[i])
        z = jnp.tanh(a) * jax.nn.sigmoid(b)
        for j in range(taps - 1):
            lines_out_ref[row, j] = past[j + 1]
        lines_out_ref[row, taps - 1] = h
        return h + (dot(z, r_ref[i]) + rb_ref[i]), skip + (dot(z, s_ref[i]) + sb_ref[i])

    h0 = h_ref[...]
    skip0 = jnp.zeros((h0.shape[0], s_ref.shape[-1]), h0.dtype)
    _, skip = lax.fori_loop(0, num_layers, layer, (h0, skip0))
    hidden = jnp.maximum(dot(jnp.maximum(skip, 0.0), hk_ref[...]) + hb_ref[...], 0.0)
    logits_ref[...] = (dot(hidden, lk_ref[...]) + lb_ref[...]).astype(logits_ref.dtype)


def decode_step(h, lines, rows, packed: Packed, cond=None, *, backend: str | None = None):
    """One decode step of a whole WaveNet in one kernel: ``(logits (B, N), new lines)``.

    ``h`` ``(B, C)``: the embedded previous sample; ``lines``: the kernel's buffer
    (:func:`init_lines`); ``rows``: :func:`~jaxar.nn.wavenet.line_rows` of the step;
    ``packed``: :func:`pack` of the weights; ``cond`` ``(B, L G)`` or None: the per-layer
    conditioning, as for :func:`~jaxar.nn.wavenet.decode_layers`. ``backend``: "cpu" for
    interpret mode, a GPU's name for Triton, or None (the default) for the platform the
    program is lowered for (``lax.platform_dependent``: a program lowered ahead of time for a
    GPU gets the Triton kernel). ``lines`` is updated in place where the caller donates it
    (inside the sampler's scan it is).
    """
    if (jax.default_backend() if backend is None else backend) not in BACKENDS:
        raise ValueError(
            f"the Pallas WaveNet step runs on {', '.join(BACKENDS)} (Triton on a GPU), "
            f"not on {backend or jax.default_backend()!r}; sample with method='cached'"
        )
    p = packed.weights
    num_layers, taps, cp, hp = p["past_a"].shape
    c, g, dtype = packed.channels, packed.gate_channels, p["cur_a"].dtype
    batch = h.shape[0]
    bp = padded(batch)
    if h.shape != (batch, c) or lines.shape[1:] != (taps, bp, cp):
        raise ValueError(
            f"expected h (B, {c}) and lines (rows, {taps}, padded(B), {cp}), "
            f"got h {tuple(h.shape)} and lines {tuple(lines.shape)}"
        )
    gate_a, gate_b = p["bias_a"], p["bias_b"]
    if cond is not None:  # (B, L G) -> per layer and gate half, (L, B', G/2')
        cond = jnp.moveaxis(cond.astype(dtype).reshape(batch, num_layers, g), 1, 0)
        gate_a = gate_a + _pad(cond[..., : g // 2], (num_layers, bp, hp))
        gate_b = gate_b + _pad(cond[..., g // 2 :], (num_layers, bp, hp))
    per_stream = 1 if gate_a.shape[1] == bp else None  # with conditioning, one row per stream
    blocked = [  # (the kernel's argument, its batch axis, None where it has none)
        (_pad(h.astype(dtype), (bp, cp)), 0),
        (rows.astype(jnp.int32), None),
        *[(p[k], None) for k in ("past_a", "past_b", "cur_a", "cur_b")],
        (gate_a, per_stream),
        (gate_b, per_stream),
        *[(p[k], None) for k in ("res", "res_bias", "skip", "skip_bias")],
        *[(p[k], None) for k in ("hidden", "hidden_bias", "logits", "logits_bias")],
        (lines, 2),
    ]
    args = [a for a, _ in blocked]
    levels = packed.num_levels
    out_shape = (
        jax.ShapeDtypeStruct((bp, p["logits"].shape[-1]), dtype),
        jax.ShapeDtypeStruct(lines.shape, lines.dtype),
    )
    # One program per BLOCK streams: the streams are independent, so blocks of the batch run
    # on as many SMs at once; every program reads all the weights.
    specs = [_spec(a, axis) for a, axis in blocked]
    out_specs = (_spec(out_shape[0], 0), _spec(out_shape[1], 2))

    def call(interpret):
        return pl.pallas_call(
            _kernel,
            out_shape=out_shape,
            grid=(bp // BLOCK,),
            in_specs=specs,
            out_specs=out_specs,
            input_output_aliases={len(args) - 1: 1},
            interpret=interpret,
            compiler_params=None if interpret else pltriton.CompilerParams(num_warps=4),
            name="wavenet_decode_step",
        )

    if backend is None:  # chosen when lowering, by the platform lowered for (AOT too)
        triton = call(False)
        logits, lines = lax.platform_dependent(*args, cpu=call(True), cuda=triton, rocm=triton)
    else:
        logits, lines = call(backend == "cpu")(*args)
    return logits[:batch, :levels], lines
