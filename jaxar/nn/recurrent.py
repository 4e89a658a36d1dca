"""The recurrent layers of PixelRNN (van den Oord et al. 2016): Row LSTM and Diagonal BiLSTM.

Both layers map a feature map ``(B, H, W, F)`` to hidden states ``(B, H, W, hidden)`` with an
LSTM whose recurrence runs in a single ``lax.scan`` (over rows, or over the columns of the
skewed map); there is no Python loop over rows or columns. Each step computes all four gates
with one fused matmul of the state-to-state window, added to an input-to-state map that is
precomputed for the whole image by a masked convolution (:class:`jaxar.nn.MaskedConv2D`).

Gate layout. The ``4 * hidden`` pre-activations are ordered colour-major,
``(color_channels, 4, hidden / color_channels)`` with gates ``(i, f, o, g)``, so the colour
group of a gate unit (see :mod:`jaxar.nn.masks`) is the colour group of the hidden unit it
drives. The input-to-state convolution is masked (type B) with those groups; the state-to-state
convolution is not masked: it only reads states of strictly earlier pixels, all of whose colour
channels are known. The LSTM cell is ``c = f * c_prev + i * g``, ``h = o * tanh(c)`` with
``i, f, o`` sigmoids and ``g`` a tanh; the cell runs in float32 whatever the compute dtype.

* :class:`RowLSTM`: input-to-state is a masked ``1 x k`` convolution along the row; the
  state-to-state ``1 x k`` convolution reads the previous row's hidden states; ``c_prev`` is the
  cell state of the pixel above. A scan step computes a whole row. Receptive field: the
  triangle above the pixel (plus what the input features already see).
* :class:`DiagonalLSTM`: the input-to-state map (masked ``1 x 1``) is skewed (:func:`skew`),
  the state-to-state ``2 x 1`` convolution reads the previous column of the skewed map (the
  pixel above and the pixel to the left), ``c_prev`` is the cell state of the pixel to the
  left, and the result is unskewed. States outside the image are held at zero, so the
  recurrence has exact zero boundary conditions.
* :class:`DiagonalBiLSTM`: a left-to-right :class:`DiagonalLSTM` plus a right-to-left one run
  on the mirrored map, whose output is shifted down one row before the two are added, so the
  output at row ``i`` sees only rows ``< i`` through the backward direction.

Every layer also has a decode path for the cached samplers, called with ``pos = (i, j)`` and
the layer input at that pixel ``(B, F)``; it returns the hidden state there ``(B, hidden)`` and
keeps what later pixels need in the flax ``cache`` collection. Pixels must be visited in raster
order; revisiting a pixel (one step per colour channel) overwrites it.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from jaxar.nn.conv import MaskedConv2D
from jaxar.nn.decode import cast_weight

__all__ = ["DiagonalBiLSTM", "DiagonalLSTM", "RowLSTM", "lstm_cell", "skew", "unskew"]


def skew(x: jnp.ndarray) -> jnp.ndarray:
    """Shift row ``i`` of ``x`` ``(B, H, W, F)`` right by ``i``: ``(B, H, W + H - 1, F)``.

    Pixel ``(i, j)`` lands at column ``i + j``; the other entries are zero. Column ``s`` of
    the result holds the anti-diagonal ``i + j = s``.
    """
    b, h, w, f = x.shape
    flat = jnp.pad(x, ((0, 0), (0, 0), (0, h), (0, 0))).reshape(b, h * (w + h), f)
    return flat[:, : h * (w + h - 1)].reshape(b, h, w + h - 1, f)


def unskew(x: jnp.ndarray, width: int) -> jnp.ndarray:
    """The inverse of :func:`skew`: ``(B, H, width + H - 1, F)`` -> ``(B, H, width, F)``."""
    b, h, ws, f = x.shape
    if ws != width + h - 1:
        raise ValueError(
            f"unskew: expected a skewed map of width {width} + {h} - 1 = {width + h - 1}, "
            f"got width {ws}"
        )
    flat = jnp.pad(x.reshape(b, h * ws, f), ((0, 0), (0, h), (0, 0)))
    return flat.reshape(b, h, width + h, f)[:, :, :width]


def lstm_cell(
    z: jnp.ndarray, c_prev: jnp.ndarray, color_channels: int, dtype: Any = jnp.float32
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """One LSTM update from the fused gate pre-activations.

    Args:
      z: ``(..., 4 * hidden)`` pre-activations in the colour-major gate layout (module doc).
      c_prev: ``(..., hidden)`` the previous cell state (float32).
      color_channels: the number of colour groups.
      dtype: the dtype of the returned hidden state.

    Returns:
      ``(h, c)``: the hidden state ``(..., hidden)`` in ``dtype`` and the cell state (float32).
    """
    hidden = z.shape[-1] // 4
    g = color_channels
    zz = z.astype(jnp.float32).reshape((*z.shape[:-1], g, 4, hidden // g))
    i, f, o = (nn.sigmoid(zz[..., k, :]) for k in range(3))
    u = jnp.tanh(zz[..., 3, :])
    c = f * c_prev.astype(jnp.float32).reshape((*c_prev.shape[:-1], g, hidden // g)) + i * u
    h = o * jnp.tanh(c)
    shape = (*z.shape[:-1], hidden)
    return h.reshape(shape).astype(dtype), c.reshape(shape)


def _zero_state(z: jnp.ndarray, hidden: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Zero ``(h, c)`` of shape ``(*z.shape[:-1], hidden)``, made from ``z`` (gate
    pre-activations of one scan step) so that they carry its dtype and, under a mesh with
    explicit sharding, its batch sharding (a scan's carry must keep its type)."""
    h = jnp.zeros_like(z[..., :hidden])
    return h, jnp.zeros_like(h, jnp.float32)


def _check_hidden(hidden: int, color_channels: int) -> None:
    if hidden < 1 or hidden % color_channels:
        raise ValueError(
            f"hidden ({hidden}) must be a positive multiple of color_channels "
            f"({color_channels}) so the states split into colour groups"
        )


class RowLSTM(nn.Module):
    """Row LSTM: a row-by-row LSTM with ``1 x kernel`` input-to-state and state-to-state.

    Attributes:
      hidden: hidden units (a multiple of ``color_channels``).
      kernel: odd width of both 1-D convolutions (3 in the paper).
      color_channels: colour groups (1 or 3).
      dtype: compute dtype.
    """

    hidden: int
    kernel: int = 3
    color_channels: int = 1
    dtype: Any = jnp.float32

    def setup(self):
        _check_hidden(self.hidden, self.color_channels)
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"RowLSTM kernel must be odd and positive, got {self.kernel}")
        self.input_to_state = MaskedConv2D(
            4 * self.hidden, (1, self.kernel), "B", self.color_channels, dtype=self.dtype
        )
        # One (kernel * hidden, 4 * hidden) matrix: the fused state-to-state convolution.
        self.state_to_state = self.param(
            "state_to_state",
            nn.initializers.lecun_normal(),
            (self.kernel, self.hidden, 4 * self.hidden),
            jnp.float32,
        )

    def _ss_matrix(self, decode: bool = False):
        w = self.state_to_state.reshape(self.kernel * self.hidden, 4 * self.hidden)
        return cast_weight(self, "state_to_state", w, self.dtype, decode)

    def __call__(self, x: jnp.ndarray, pos=None, width: int | None = None) -> jnp.ndarray:
        """``(B, H, W, F)`` -> ``(B, H, W, hidden)``; or the decode path at ``pos``."""
        if pos is not None:
            return self._decode(x, pos, width)
        w = x.shape[2]
        k, p = self.kernel, self.kernel // 2
        z_is = self.input_to_state(x)  # (B, H, W, 4 hidden), the whole image at once
        w_ss = self._ss_matrix()

        def row(carry, z_row):
            h_prev, c_prev = carry  # the previous row, (B, W, hidden)
            hp = jnp.pad(h_prev, ((0, 0), (p, p), (0, 0)))
            window = jnp.concatenate([hp[:, d : d + w] for d in range(k)], axis=-1)
            h, c = lstm_cell(z_row + window @ w_ss, c_prev, self.color_channels, self.dtype)
            return (h, c), h

        _, hs = lax.scan(row, _zero_state(z_is[:, 0], self.hidden), jnp.moveaxis(z_is, 1, 0))
        return jnp.moveaxis(hs, 0, 1)

    @nn.compact
    def _decode(self, x, pos, width):
        """Hidden state at ``pos = (i, j)`` from the layer input there, ``x`` ``(B, F)``.

        Cache: the input-to-state ring buffer of the current row (inside ``input_to_state``)
        and, for the hidden and cell states side by side (float32), two row slots (rows ``i -
        1`` and ``i``). One buffer written once: with the cell state apart, its write was not
        ordered after a read of the previous cell state that XLA fuses into the hidden state's
        computation, and the compiled sampler copied the buffer twice per step.
        """
        if width is None:
            raise ValueError("the RowLSTM decode path needs the static image width")
        i, j = pos
        b, k, p, n = x.shape[0], self.kernel, self.kernel // 2, self.hidden
        z_is = self.input_to_state(x, pos, width)  # (B, 4 hidden)
        shape = (b, 2, width + 2 * p, 2 * n)
        buf = self.variable("cache", "hc", jnp.zeros, shape, jnp.float32)
        prev, cur = (i + 1) % 2, i % 2  # the ring slots of rows i - 1 and i
        window = lax.dynamic_slice_in_dim(buf.value[:, prev, :, :n], j, k, axis=1)  # j-p .. j+p
        z = z_is + window.astype(self.dtype).reshape(b, k * n) @ self._ss_matrix(decode=True)
        h, c = lstm_cell(z, buf.value[:, prev, j + p, n:], self.color_channels, self.dtype)
        # Row -1 reads as zeros: slot 1 is still all zeros while row 0 is generated.
        hc = jnp.concatenate([h.astype(jnp.float32), c.astype(jnp.float32)], axis=-1)
        buf.value = buf.value.at[:, cur, j + p].set(hc)
        return h


class DiagonalLSTM(nn.Module):
    """One direction (left to right) of the Diagonal BiLSTM.

    Attributes:
      hidden: hidden units (a multiple of ``color_channels``).
      color_channels: colour groups (1 or 3).
      dtype: compute dtype.
    """

    hidden: int
    color_channels: int = 1
    dtype: Any = jnp.float32

    def setup(self):
        _check_hidden(self.hidden, self.color_channels)
        self.input_to_state = MaskedConv2D(
            4 * self.hidden, 1, "B", self.color_channels, dtype=self.dtype
        )
        # Taps (above, left): one (2 * hidden, 4 * hidden) matrix, the fused 2 x 1 convolution
        # over the previous column of the skewed map.
        self.state_to_state = self.param(
            "state_to_state",
            nn.initializers.lecun_normal(),
            (2, self.hidden, 4 * self.hidden),
            jnp.float32,
        )

    def _ss_matrix(self, decode: bool = False):
        w = self.state_to_state.reshape(2 * self.hidden, 4 * self.hidden)
        return cast_weight(self, "state_to_state", w, self.dtype, decode)

    def __call__(self, x: jnp.ndarray, pos=None, width: int | None = None) -> jnp.ndarray:
        """``(B, H, W, F)`` -> ``(B, H, W, hidden)``; or the decode path at ``pos``."""
        if pos is not None:
            return self._decode(x, pos, width)
        _, height, w, _ = x.shape
        z_is = skew(self.input_to_state(x))  # (B, H, W + H - 1, 4 hidden)
        inside = skew(jnp.ones((1, height, w, 1), self.dtype))[0]  # (H, W + H - 1, 1)
        w_ss = self._ss_matrix()

        def column(carry, inp):
            h_prev, c_prev = carry  # the previous column of the skewed map, (B, H, hidden)
            z_col, m = inp
            up = jnp.pad(h_prev, ((0, 0), (1, 0), (0, 0)))[:, :height]
            z = z_col + jnp.concatenate([up, h_prev], axis=-1) @ w_ss
            h, c = lstm_cell(z, c_prev, self.color_channels, self.dtype)
            return (h * m, c * m.astype(jnp.float32)), h * m

        xs = (jnp.moveaxis(z_is, 2, 0), jnp.moveaxis(inside, 1, 0))
        _, hs = lax.scan(column, _zero_state(z_is[:, :, 0], self.hidden), xs)
        return unskew(jnp.moveaxis(hs, 0, 2), w)

    @nn.compact
    def _decode(self, x, pos, width):
        """Hidden state at ``pos = (i, j)`` from the layer input there, ``x`` ``(B, F)``.

        Cache: the hidden and cell states (side by side, float32) of rows ``i - 1`` and ``i``
        (two slots, column ``j`` at index ``j + 1``, index 0 the zero boundary), in one buffer
        written once per step, as :class:`RowLSTM` keeps them (and why).
        """
        if width is None:
            raise ValueError("the DiagonalLSTM decode path needs the static image width")
        i, j = pos
        b, n = x.shape[0], self.hidden
        z_is = self.input_to_state(x, pos, width)  # (B, 4 hidden), a 1 x 1 convolution
        buf = self.variable("cache", "hc", jnp.zeros, (b, 2, width + 1, 2 * n), jnp.float32)
        prev, cur = (i + 1) % 2, i % 2  # the ring slots of rows i - 1 and i
        up, left = buf.value[:, prev, j + 1, :n], buf.value[:, cur, j]  # (i - 1, j), (i, j - 1)
        z = z_is + jnp.concatenate([up, left[:, :n]], axis=-1).astype(self.dtype) @ self._ss_matrix(
            decode=True
        )
        h, c = lstm_cell(z, left[:, n:], self.color_channels, self.dtype)
        # Row -1 reads as zeros (slot 1 is untouched during row 0), column -1 from index 0.
        hc = jnp.concatenate([h.astype(jnp.float32), c.astype(jnp.float32)], axis=-1)
        buf.value = buf.value.at[:, cur, j + 1].set(hc)
        return h

    def row_reversed(self, x_row: jnp.ndarray, h_above: jnp.ndarray) -> jnp.ndarray:
        """This direction run right to left over one complete row, for the cached sampler.

        ``x_row`` ``(B, W, F)`` is the row's input (in image orientation) and ``h_above``
        ``(B, W, hidden)`` this direction's hidden states of the row above (image
        orientation). Returns the row's hidden states ``(B, W, hidden)``, equal to the row of
        ``flip(self(flip(x)))`` (flip: mirror the width).
        """
        z_is = self.input_to_state(x_row[:, None], decode=True)[:, 0]  # (B, W, 4 hidden)
        w_ss = self._ss_matrix(decode=True)

        def column(carry, inp):
            h_right, c_right = carry
            z_j, up = inp
            z = z_j + jnp.concatenate([up, h_right], axis=-1) @ w_ss
            h, c = lstm_cell(z, c_right, self.color_channels, self.dtype)
            return (h, c), h

        xs = (jnp.moveaxis(z_is, 1, 0), jnp.moveaxis(h_above.astype(self.dtype), 1, 0))
        _, hs = lax.scan(column, _zero_state(z_is[:, 0], self.hidden), xs, reverse=True)
        return jnp.moveaxis(hs, 0, 1)


class DiagonalBiLSTM(nn.Module):
    """Diagonal BiLSTM: left-to-right plus right-to-left (shifted down one row) LSTMs.

    Attributes:
      hidden: hidden units of each direction (a multiple of ``color_channels``).
      color_channels: colour groups (1 or 3).
      dtype: compute dtype.
    """

    hidden: int
    color_channels: int = 1
    dtype: Any = jnp.float32

    def setup(self):
        self.forward_lstm = DiagonalLSTM(self.hidden, self.color_channels, self.dtype)
        self.backward_lstm = DiagonalLSTM(self.hidden, self.color_channels, self.dtype)

    def __call__(self, x: jnp.ndarray, pos=None, width: int | None = None) -> jnp.ndarray:
        """``(B, H, W, F)`` -> ``(B, H, W, hidden)``; or the decode path at ``pos``.

        Decode path: the backward direction's row ``i - 1`` must have been computed by
        :meth:`finish_row` before the first step of row ``i``.
        """
        if pos is not None:
            return self._decode(x, pos, width)
        fwd = self.forward_lstm(x)
        bwd = jnp.flip(self.backward_lstm(jnp.flip(x, axis=2)), axis=2)
        # Shift down one row: row i sees the backward states of row i - 1 (zeros for row 0).
        bwd = jnp.pad(bwd, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]
        return fwd + bwd

    def _cache(self, batch, width, features):
        x_row = self.variable("cache", "x_row", jnp.zeros, (batch, width, features), self.dtype)
        h_bwd = self.variable(
            "cache", "h_backward", jnp.zeros, (batch, width, self.hidden), self.dtype
        )
        return x_row, h_bwd

    @nn.compact
    def _decode(self, x, pos, width):
        """Cache: the current row's layer input (for the backward pass at the row's end) and
        the backward hidden states of the last completed row."""
        if width is None:
            raise ValueError("the DiagonalBiLSTM decode path needs the static image width")
        _, j = pos
        x_row, h_bwd = self._cache(x.shape[0], width, x.shape[-1])
        x_row.value = lax.dynamic_update_slice(
            x_row.value, x.astype(self.dtype)[:, None, :], (0, j, 0)
        )
        fwd = self.forward_lstm(x, pos, width)
        return fwd + lax.dynamic_index_in_dim(h_bwd.value, j, axis=1, keepdims=False)

    def finish_row(self) -> None:
        """Run the backward direction over the row just completed (decode path only)."""
        x_row = self.get_variable("cache", "x_row")
        h_bwd = self.get_variable("cache", "h_backward")
        self.put_variable("cache", "h_backward", self.backward_lstm.row_reversed(x_row, h_bwd))
