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

Two kernels, one per Pallas compiler, share the weights' packing, the buffer's layout and the
layers' arithmetic:

* **Triton** (GPUs), :func:`_kernel`, whose constraints shape both: every array the kernel loads
  or multiplies has power-of-2 sizes, every matrix product is at least 16 x 16 x 16, and no
  value is sliced or concatenated in the kernel. So :func:`pack` splits the weights by gate half
  and by tap and zero-pads every width to :func:`padded` (a power of 2, at least 16), and the
  buffer keeps one ``(B', C')`` block per tap: shape ``(sum d_l, k - 1, B', C')``
  (:func:`init_lines`), ``B'`` the padded batch. The grid runs one program per :data:`BLOCK`
  streams; the buffer is read and written in global memory where it lies.
* **Mosaic** (TPUs), :func:`_mosaic_kernel`: the buffer can outgrow VMEM (200 MB for the
  paper's model at batch 64) and a step needs one row of it per layer, so the kernel takes it
  where XLA put it (``pl.ANY``: HBM, or VMEM where it fits) and moves rows by DMA, every
  layer's row requested before the first layer runs and its new taps sent back while the next
  layers run. The weights are VMEM operands (XLA keeps them there across the sampler's loop
  where they fit). One program: a TPU core runs a grid's steps in turn.

Zero padding changes no real output: a padded residual or skip channel stays 0 (its weights are
0), a padded gate unit is ``tanh(0) * sigmoid(.) = 0``, and padded batch rows and logits are cut
off. Matrix products accumulate in float32 and the gate is computed in float32 (neither Triton
nor a v5e computes it in bfloat16); each result is rounded to the compute dtype, as XLA's step
rounds its own. Both kernels run in Pallas' interpret mode on the CPU backend (where Pallas has no
compiler; Mosaic's interpret mode runs the DMAs and semaphores too) and there draw the samples of
the XLA step from the same key (``tests/test_wavenet_pallas.py``; the sums differ from the XLA
step's only in rounding order, a past tap at a time). Both lower for their accelerator on a
CPU-only machine (a test checks it, in float32 and bfloat16), and ``benchmarks/aot.py`` compiles
them with the accelerators' own compilers: to a cubin for an H200, through libtpu's Mosaic for a
TPU v5e and v6e. Neither has run on its accelerator, because none was available.

On a TPU the ``(B', C')`` blocks are tiled 8 x 128, so a ``C'`` of 64 (the paper's) takes twice
its size in memory and in each DMA: 50 MB at batch 16, 200 MB at batch 64 for the paper's buffer.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as pltriton

__all__ = ["BACKENDS", "BLOCK", "KERNELS", "Packed", "decode_step", "init_lines", "pack", "padded"]

#: The kernel each backend compiles: Triton's on a GPU, Mosaic's (tap lines moved by DMA) on a
#: TPU. On CPU, where Pallas has no compiler, either one runs in its interpret mode.
KERNELS = {"gpu": "triton", "cuda": "triton", "rocm": "triton", "tpu": "mosaic"}

#: The backends the step runs on.
BACKENDS = ("cpu", *KERNELS)


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


def _gate(a, b):
    """``tanh(a) * sigmoid(b)`` in float32, in ``a``'s dtype: neither Triton (no bfloat16
    division) nor a v5e (no bfloat16 vector unit) computes it in bfloat16."""
    f32 = jnp.float32
    return (jnp.tanh(a.astype(f32)) * jax.nn.sigmoid(b.astype(f32))).astype(a.dtype)


def _dot(x, y):
    """``x @ y`` accumulated in float32 (the only accumulator Mosaic's matrix unit takes) and
    rounded to ``x``'s dtype, like XLA's dot."""
    return jnp.dot(x, y, preferred_element_type=jnp.float32).astype(x.dtype)


def _network(h_ref, weights, logits_ref, read_taps, write_taps):
    """The layers and the head, the arithmetic both kernels share. ``weights``: the packed
    refs, in :func:`decode_step`'s order; ``read_taps(i)``: layer ``i``'s ``k - 1`` past taps
    ``x_{t-(k-1)d} .. x_{t-d}``; ``write_taps(i, taps)`` stores its new ones. The kernels
    differ only in where the taps are (global memory for Triton; HBM, moved by DMA, for
    Mosaic)."""
    pa, pb, ca, cb, ga, gb, r, rb, s, sb, hk, hb, lk, lb = weights
    num_layers, taps = pa.shape[:2]

    def layer(i, carry):
        h, skip = carry
        past = read_taps(i)
        a, b = _dot(past[0], pa[i, 0]), _dot(past[0], pb[i, 0])
        for j in range(1, taps):
            a, b = a + _dot(past[j], pa[i, j]), b + _dot(past[j], pb[i, j])
        a = _dot(h, ca[i]) + (a + ga[i])  # ga/gb: the conv bias plus conditioning
        b = _dot(h, cb[i]) + (b + gb[i])
        z = _gate(a, b)
        write_taps(i, [*past[1:], h])
        return h + (_dot(z, r[i]) + rb[i]), skip + (_dot(z, s[i]) + sb[i])

    h0 = h_ref[...]
    skip0 = jnp.zeros((h0.shape[0], s.shape[-1]), h0.dtype)
    _, skip = lax.fori_loop(0, num_layers, layer, (h0, skip0))
    hidden = jnp.maximum(_dot(jnp.maximum(skip, 0.0), hk[...]) + hb[...], 0.0)
    logits_ref[...] = (_dot(hidden, lk[...]) + lb[...]).astype(logits_ref.dtype)


def _kernel(h_ref, rows_ref, *refs):
    """The GPU (Triton) kernel: the tap lines are read and written in global memory."""
    *weights, lines_ref, logits_ref, lines_out_ref = refs
    del lines_ref  # aliased with lines_out_ref: read and written through that one
    taps = weights[0].shape[1]

    def read_taps(i):
        return [lines_out_ref[rows_ref[i], j] for j in range(taps)]

    def write_taps(i, new):
        for j, x in enumerate(new):
            lines_out_ref[rows_ref[i], j] = x

    _network(h_ref, weights, logits_ref, read_taps, write_taps)


def _mosaic_kernel(h_ref, rows_ref, *refs):
    """The TPU (Mosaic) kernel: the tap-line buffer stays where XLA put it and moves by DMA.

    The buffer (``sum d_l`` rows: 3,069 for the paper's dilations) is read one row per layer:
    every layer's row is requested before the first layer runs (the rows are known from
    ``rows``, in SMEM), each layer waits for its own, and its new taps go back by DMA while
    the next layers run; the kernel ends when every write has landed. The rows are distinct,
    so no read meets a write.
    """
    *weights, lines_ref, logits_ref, lines_out_ref, past_ref, new_ref, sems = refs
    del lines_ref  # aliased with lines_out_ref: read and written through that one
    num_layers, taps = weights[0].shape[:2]

    def read(i):
        return pltpu.make_async_copy(lines_out_ref.at[rows_ref[i]], past_ref.at[i], sems.at[0, i])

    def write(i):
        return pltpu.make_async_copy(new_ref.at[i], lines_out_ref.at[rows_ref[i]], sems.at[1, i])

    def read_taps(i):
        read(i).wait()
        return [past_ref[i, j] for j in range(taps)]

    def write_taps(i, new):
        for j, x in enumerate(new):
            new_ref[i, j] = x
        write(i).start()

    def each(op):
        def body(i, carry):
            op(i)
            return carry

        lax.fori_loop(0, num_layers, body, 0)

    each(lambda i: read(i).start())
    _network(h_ref, weights, logits_ref, read_taps, write_taps)
    each(lambda i: write(i).wait())


def decode_step(
    h, lines, rows, packed: Packed, cond=None, *, backend: str | None = None,
    kernel: str | None = None,
):  # fmt: skip
    """One decode step of a whole WaveNet in one kernel: ``(logits (B, N), new lines)``.

    ``h`` ``(B, C)``: the embedded previous sample; ``lines``: the kernel's buffer
    (:func:`init_lines`); ``rows``: :func:`~jaxar.nn.wavenet.line_rows` of the step;
    ``packed``: :func:`pack` of the weights; ``cond`` ``(B, L G)`` or None: the per-layer
    conditioning, as for :func:`~jaxar.nn.wavenet.decode_layers`. ``backend``: the platform
    to run on ("cpu": interpret mode; a GPU: Triton; "tpu": Mosaic), or None (the default) for
    the platform the program is lowered for (``lax.platform_dependent``: a program lowered
    ahead of time for a GPU gets the Triton kernel, for a TPU the Mosaic one). ``kernel``:
    "triton" or "mosaic", the kernel to interpret on CPU (default: Triton's); elsewhere the
    backend's own (:data:`KERNELS`). ``lines`` is updated in place where the caller donates
    it (inside the sampler's scan it is).
    """
    on = jax.default_backend() if backend is None else backend
    if on not in BACKENDS:
        raise ValueError(
            f"the Pallas WaveNet step runs on {', '.join(BACKENDS)} (Triton on a GPU, Mosaic on "
            f"a TPU), not on {on!r}; sample with method='cached'"
        )
    if kernel not in (None, "triton", "mosaic"):
        raise ValueError(f"kernel must be 'triton', 'mosaic' or None, got {kernel!r}")
    if backend not in (None, "cpu") and kernel not in (None, KERNELS[backend]):
        raise ValueError(
            f"on {backend!r} the step compiles the {KERNELS[backend]} kernel, got kernel={kernel!r}"
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
    aliases = {len(args) - 1: 1}  # the buffer is updated in place

    def triton(interpret):
        # One program per BLOCK streams: the streams are independent, so blocks of the batch
        # run on as many SMs at once; every program reads all the weights.
        return pl.pallas_call(
            _kernel,
            out_shape=out_shape,
            grid=(bp // BLOCK,),
            in_specs=[_spec(a, axis) for a, axis in blocked],
            out_specs=(_spec(out_shape[0], 0), _spec(out_shape[1], 2)),
            input_output_aliases=aliases,
            interpret=interpret,
            compiler_params=None if interpret else pltriton.CompilerParams(num_warps=4),
            name="wavenet_decode_step",
        )

    def mosaic(interpret):
        # One program: a TPU core runs a grid's steps one after another, so blocks of the
        # batch would only add DMAs. The weights are VMEM operands; the buffer is left where
        # XLA puts it (HBM where it does not fit in VMEM).
        vmem, hbm = pl.BlockSpec(memory_space=pltpu.VMEM), pl.BlockSpec(memory_space=pl.ANY)
        smem = pl.BlockSpec(memory_space=pltpu.SMEM)
        taps_shape = (num_layers, taps, bp, cp)
        return pl.pallas_call(
            _mosaic_kernel,
            out_shape=out_shape,
            in_specs=[vmem, smem, *[vmem] * (len(args) - 3), hbm],
            out_specs=(vmem, hbm),
            scratch_shapes=[
                pltpu.VMEM(taps_shape, lines.dtype),  # the layers' past taps, read by DMA
                pltpu.VMEM(taps_shape, lines.dtype),  # their new taps, written by DMA
                pltpu.SemaphoreType.DMA((2, num_layers)),
            ],
            input_output_aliases=aliases,
            interpret=pltpu.InterpretParams() if interpret else False,
            name="wavenet_decode_step",
        )

    build = {"triton": triton, "mosaic": mosaic}
    if backend is None:  # chosen when lowering, by the platform lowered for (AOT too)
        on_gpu = triton(False)
        logits, lines = lax.platform_dependent(
            *args, cpu=build[kernel or "triton"](True), cuda=on_gpu, rocm=on_gpu, tpu=mosaic(False)
        )
    else:
        chosen = kernel or KERNELS.get(backend, "triton")
        logits, lines = build[chosen](backend == "cpu")(*args)
    return logits[:batch, :levels], lines
