"""The whole WaveNet decode step, every layer and the output head, as ONE Pallas kernel.

The XLA decode step (:func:`jaxar.nn.wavenet.decode_layers`) still runs about four kernels per
layer, each a separate launch on a GPU; at batch 1 the launches, not the arithmetic, bound the
step. Like NVIDIA's nv-wavenet (a persistent kernel that keeps a whole WaveNet step on chip),
:func:`decode_step` is one ``pallas_call`` that walks the layers in a loop inside the kernel:
per layer it reads the layer's past taps from the shared tap-line buffer (the same layout as
:func:`~jaxar.nn.wavenet.decode_layers`: row ``rows[l]`` of ``lines``), runs the dilated
conv (past taps and current input), the gate, the residual/skip matmul and the residual add,
and writes the layer's new taps back into the buffer in place (``input_output_aliases``);
after the last layer it runs the head (ReLU -> 1x1 -> ReLU -> 1x1) and writes the logits.

The kernel computes the same sums in the same order as the XLA step, so it draws the same
samples from the same key (checked in Pallas' interpret mode on CPU, ``tests/
test_wavenet_pallas.py``). ``interpret`` defaults to True on CPU (where Pallas has no
compiler) and False elsewhere. On a GPU the kernel is one program over whole arrays (no grid):
it is meant for the small batches where launches dominate, and it has been run in interpret
mode only (no accelerator was available): the compiled GPU/TPU paths are unmeasured.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

__all__ = ["decode_step", "default_interpret"]


def default_interpret() -> bool:
    """Pallas interpret mode where there is no Pallas compiler: on the CPU backend."""
    return jax.default_backend() == "cpu"


def _kernel(h_ref, lines_ref, rows_ref, wp_ref, wl_ref, cb_ref, c_ref, ok_ref, ob_ref,
            hk_ref, hb_ref, lk_ref, lb_ref, logits_ref, lines_out_ref):  # fmt: skip
    del lines_ref  # aliased with lines_out_ref: read and written through that one
    num_layers = wp_ref.shape[0]
    c = h_ref.shape[-1]
    half = wl_ref.shape[-1] // 2

    def layer(i, carry):
        h, skip = carry
        row = rows_ref[i]
        past = lines_out_ref[pl.ds(row, 1)][0]  # (B, (k-1) C): x_{t-(k-1)d} .. x_{t-d}
        pre = jnp.dot(past, wp_ref[i], preferred_element_type=h.dtype) + cb_ref[i] + c_ref[i]
        gate = jnp.dot(h, wl_ref[i], preferred_element_type=h.dtype) + pre
        z = jnp.tanh(gate[:, :half]) * jax.nn.sigmoid(gate[:, half:])
        out = jnp.dot(z, ok_ref[i], preferred_element_type=h.dtype) + ob_ref[i]
        lines_out_ref[pl.ds(row, 1)] = jnp.concatenate([past[:, c:], h], axis=-1)[None]
        return h + out[:, :c], skip + out[:, c:]

    h0 = h_ref[...]
    skip0 = jnp.zeros((h0.shape[0], ok_ref.shape[-1] - c), h0.dtype)
    _, skip = lax.fori_loop(0, num_layers, layer, (h0, skip0))
    hidden = jnp.dot(jax.nn.relu(skip), hk_ref[...], preferred_element_type=skip.dtype)
    hidden = jax.nn.relu(hidden + hb_ref[...])
    logits = jnp.dot(hidden, lk_ref[...], preferred_element_type=hidden.dtype) + lb_ref[...]
    logits_ref[...] = logits.astype(logits_ref.dtype)


def decode_step(h, lines, rows, w: dict, head: dict, cond=None, *, interpret: bool | None = None):
    """One decode step of a whole WaveNet in one kernel: ``(logits (B, N), new lines)``.

    ``h`` ``(B, C)``: the embedded previous sample; ``lines``, ``rows``, ``w`` (the stacked
    blocks) and ``cond`` ``(B, L G)`` or None as for :func:`~jaxar.nn.wavenet.decode_layers`;
    ``head``: ``{"hidden": {"kernel", "bias"}, "logits": {"kernel", "bias"}}`` (the
    ``head_hidden`` and ``head_logits`` Dense parameters). ``lines`` is updated in place
    where the caller donates it (inside the sampler's scan it is).
    """
    num_layers, k, c, g = w["conv_kernel"].shape
    dtype = w["conv_kernel"].dtype
    batch = h.shape[0]
    if h.shape != (batch, c) or lines.shape[1:] != (batch, (k - 1) * c):
        raise ValueError(
            f"expected h (B, {c}) and lines (rows, B, {(k - 1) * c}), "
            f"got h {tuple(h.shape)} and lines {tuple(lines.shape)}"
        )
    if cond is None:
        cond = jnp.zeros((num_layers, 1, g), dtype)
    else:
        cond = jnp.moveaxis(cond.astype(dtype).reshape(batch, num_layers, g), 1, 0)
    args = (
        h.astype(dtype),
        lines,
        rows.astype(jnp.int32),
        w["conv_kernel"][:, : k - 1].reshape(num_layers, (k - 1) * c, g),
        w["conv_kernel"][:, k - 1],
        w["conv_bias"][:, None, :],
        cond,
        w["out_kernel"],
        w["out_bias"][:, None, :],
        head["hidden"]["kernel"].astype(dtype),
        head["hidden"]["bias"].astype(dtype)[None, :],
        head["logits"]["kernel"].astype(dtype),
        head["logits"]["bias"].astype(dtype)[None, :],
    )
    num_levels = head["logits"]["kernel"].shape[-1]
    return pl.pallas_call(
        _kernel,
        out_shape=(
            jax.ShapeDtypeStruct((batch, num_levels), dtype),
            jax.ShapeDtypeStruct(lines.shape, lines.dtype),
        ),
        input_output_aliases={1: 1},
        interpret=default_interpret() if interpret is None else interpret,
    )(*args)
