"""Output distributions of the autoregressive models, kept apart from the networks that use them.

A distribution object turns a network's raw output (its *parameters*) into exact per-dimension
log-probabilities, and draws one sampling step. A sampling step covers ``dims_per_step``
consecutive dimensions of the flattened event: 1 for a categorical (every sub-pixel or audio
sample is drawn on its own), the colour channels of a pixel for a distribution that draws them
jointly. Randomness is explicit: the sampler passes the key of each step.

Also here: mu-law companding for audio.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = ["Categorical", "DiscretizedLogisticMixture", "mu_law_decode", "mu_law_encode"]


class Categorical:
    """A categorical over ``num_levels`` values for every dimension.

    Parameters are logits of shape ``(B, *event_shape, num_levels)``; the arithmetic is float32
    whatever the dtype the network computed in.
    """

    dims_per_step = 1
    supports_top_p = True

    def __init__(self, num_levels: int):
        if num_levels < 2:
            raise ValueError(f"num_levels must be >= 2, got {num_levels}")
        self.num_levels = int(num_levels)

    def log_prob(self, logits: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
        """``log p(x_i | x_<i)`` for every dimension: logits ``(..., L)``, x ``(...)``."""
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        return jnp.take_along_axis(logp, x[..., None].astype(jnp.int32), axis=-1)[..., 0]

    def step_params(self, logits: jnp.ndarray, step: jnp.ndarray) -> jnp.ndarray:
        """The logits of sampling step ``step`` (a flat dimension index): ``(B, L)``."""
        flat = logits.reshape(logits.shape[0], -1, logits.shape[-1])
        return jax.lax.dynamic_index_in_dim(flat, step, axis=1, keepdims=False)

    def shape_logits(
        self, logits: jnp.ndarray, temperature: float = 1.0, top_p: float = 1.0
    ) -> jnp.ndarray:
        """Logits ``(B, L)`` float32 of the distribution actually drawn from: divided by
        ``temperature``, then (``top_p < 1``) restricted to the nucleus, the fewest most
        probable values whose probabilities add up to at least ``top_p`` (the rest get
        ``-inf``; ties at the cut-off are kept). The defaults return the logits untouched."""
        logits = logits.astype(jnp.float32)
        if temperature != 1.0:
            logits = logits / jnp.float32(temperature)
        if top_p < 1.0:
            probs = jax.nn.softmax(logits, axis=-1)
            ranked = -jnp.sort(-probs, axis=-1)  # descending
            before = jnp.cumsum(ranked, axis=-1) - ranked  # mass of the more probable values
            keep = jnp.maximum(jnp.sum(before < top_p, axis=-1, keepdims=True), 1)
            cutoff = jnp.take_along_axis(ranked, keep - 1, axis=-1)
            logits = jnp.where(probs >= cutoff, logits, -jnp.inf)
        return logits

    def step_noise(self, key: jax.Array, logits: jnp.ndarray) -> jnp.ndarray:
        """The randomness of one step for logits ``(B, L)``: Gumbel noise ``(B, L)`` float32,
        exactly what ``jax.random.categorical(key, logits)`` draws."""
        return jax.random.gumbel(key, logits.shape, jnp.float32)

    def draw(
        self, logits: jnp.ndarray, noise: jnp.ndarray, temperature: float = 1.0, top_p: float = 1.0
    ) -> jnp.ndarray:
        """Values ``(B, 1)`` int32 from logits ``(B, L)`` and :meth:`step_noise` (Gumbel-max)."""
        shaped = self.shape_logits(logits, temperature, top_p)
        return jnp.argmax(noise + shaped, axis=-1)[:, None].astype(jnp.int32)

    def sample_step(
        self, key: jax.Array, logits: jnp.ndarray, temperature: float = 1.0, top_p: float = 1.0
    ) -> jnp.ndarray:
        """Draw one step: logits ``(B, L)`` -> values ``(B, 1)`` int32.

        With the defaults this is ``jax.random.categorical(key, logits)`` bit for bit.
        """
        return self.draw(logits, self.step_noise(key, logits), temperature, top_p)

    def step_log_prob(self, logits: jnp.ndarray, values: jnp.ndarray) -> jnp.ndarray:
        """Log-probability of the values ``(B, 1)`` drawn at one step: ``(B,)``."""
        return self.log_prob(logits, values[:, 0])


MIN_LOG_SCALE = -7.0


def _float_dtype(dtype):
    """float64 stays float64 (for reference computations under x64); all else is float32."""
    return jnp.float64 if dtype == jnp.float64 else jnp.float32


def _log1mexp_neg(log_t: jnp.ndarray) -> jnp.ndarray:
    """``log(1 - exp(-t))`` from ``log t``, exact and finite also when ``t`` underflows."""
    small = log_t < -15.0  # 1 - exp(-t) = t (1 - t/2 + ...): log t to float precision
    t = jnp.exp(jnp.where(small, 0.0, log_t))
    return jnp.where(small, log_t, jnp.log(-jnp.expm1(-t)))


def _log_sigmoid(z: jnp.ndarray) -> jnp.ndarray:
    return -jax.nn.softplus(-z)


class DiscretizedLogisticMixture:
    """The discretized mixture of logistics of PixelCNN++ (Salimans et al. 2017), per pixel.

    A pixel's ``C`` channels take levels ``0 .. L-1``, read on the centred scale
    ``x = 2 l / (L - 1) - 1`` in ``[-1, 1]``; level ``l`` is the bin ``[x - h, x + h]`` with
    ``h = 1 / (L - 1)``, except that the first bin extends to ``-inf`` and the last to ``+inf``.
    The pixel is a mixture of ``K = num_mixtures`` components; in component ``k`` the channels
    are discretized logistics drawn in order, each mean shifted linearly by the channels before
    it (for RGB: ``mu_g + a r`` and ``mu_b + b r + c g`` with ``a, b, c = tanh(raw)``)::

        p(r, g, b) = sum_k pi_k  L(r; mu_rk, s_rk) L(g; mu_gk + a_k r, s_gk)
                                 L(b; mu_bk + b_k r + c_k g, s_bk)

    **Parameter layout.** The last axis of the parameters has ``K * (1 + 2 C + C (C - 1) / 2)``
    entries (``10 K`` for RGB, ``3 K`` for grey), read as ``[logits | rest]`` where ``logits``
    is ``params[..., :K]`` (mixture logits) and ``rest`` reshapes to ``(..., 2C + C(C-1)/2, K)``:
    rows ``0 .. C-1`` are the means, ``C .. 2C-1`` the log-scales (clamped below at -7), and the
    rest the raw coefficients (before ``tanh``) of channel ``j`` on channel ``i < j``, in the
    order ``(1,0), (2,0), (2,1), ...`` (for RGB: ``a = g|r, b = b|r, c = b|g``). Network outputs
    ``(B, H, W, P)`` give the parameters of every pixel.

    **Per-dimension conditionals.** :meth:`log_prob` returns ``log p(x_c | x_<c of the pixel)``
    for every channel (and the network makes the pixel depend only on earlier pixels), so the
    per-dimension values add up to the exact joint: with ``S_kc`` the sum over channels
    ``<= c`` of component ``k``'s log-probabilities and ``J_c = logsumexp_k(log pi_k + S_kc)``,
    the conditional of channel ``c`` is ``J_c - J_{c-1}``.

    **Numerics.** Everything is float32 whatever the network's dtype (float64 parameters, under
    ``jax.experimental.enable_x64``, are kept float64 for reference computations). Bin
    probabilities use closed forms that are exact and finite for any parameters: the first bin
    ``log sigmoid(u_+)``, the last ``log sigmoid(-u_-)``, and an inner bin
    ``sigma(u_+) - sigma(u_-) = sigma(u_+) sigma(-u_-) (1 - exp(u_- - u_+))``, i.e.
    ``log_sigmoid(u_+) + log_sigmoid(-u_-) + log(1 - exp(-2 h / s))`` (the last term from
    ``log(2h) - log s``, so it stays finite when ``2h / s`` underflows), with
    ``u_pm = (x - mu pm h) / s``. It needs no subtraction of nearly equal CDFs, so the
    mid-bin density fallback of the reference code (used there when the CDF difference
    underflows) is never needed: far-out means, huge or tiny scales all stay exact.

    Sampling draws one pixel per step (``dims_per_step = C``): a component from the logits,
    then each channel as a continuous logistic rounded to its bin (clipped at the edges), which
    is exactly the discretized distribution; later channels' means use the drawn levels.
    """

    supports_top_p = False

    def __init__(self, num_mixtures: int, num_levels: int = 256, channels: int = 3):
        if num_mixtures < 1:
            raise ValueError(f"num_mixtures must be >= 1, got {num_mixtures}")
        if num_levels < 2:
            raise ValueError(f"num_levels must be >= 2, got {num_levels}")
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.num_mixtures = int(num_mixtures)
        self.num_levels = int(num_levels)
        self.channels = int(channels)
        self.dims_per_step = self.channels
        c = self.channels
        self.num_coeffs = c * (c - 1) // 2
        # (i, j) pairs, j < i: coefficient of channel j in the mean of channel i.
        self.coeff_pairs = [(i, j) for i in range(c) for j in range(i)]

    @property
    def num_params(self) -> int:
        """Size of the last axis of the parameters: ``K * (1 + 2C + C(C-1)/2)``."""
        return self.num_mixtures * (1 + 2 * self.channels + self.num_coeffs)

    def __repr__(self) -> str:
        return (
            f"DiscretizedLogisticMixture(num_mixtures={self.num_mixtures}, "
            f"num_levels={self.num_levels}, channels={self.channels})"
        )

    # ----------------------------------------------------------------- layout
    def _split(self, params: jnp.ndarray):
        """``params (..., P)`` -> logits ``(..., K)``, means, log-scales ``(..., C, K)``,
        coefficients ``(..., C(C-1)/2, K)``, all float32."""
        if params.shape[-1] != self.num_params:
            raise ValueError(
                f"expected parameters with last axis {self.num_params} "
                f"(= {self.num_mixtures} mixtures * (1 + 2*{self.channels} + "
                f"{self.num_coeffs})), got shape {params.shape}"
            )
        k, c = self.num_mixtures, self.channels
        params = params.astype(_float_dtype(params.dtype))
        logits = params[..., :k]
        rest = params[..., k:].reshape((*params.shape[:-1], 2 * c + self.num_coeffs, k))
        means = rest[..., :c, :]
        log_scales = jnp.maximum(rest[..., c : 2 * c, :], MIN_LOG_SCALE)
        coeffs = jnp.tanh(rest[..., 2 * c :, :])
        return logits, means, log_scales, coeffs

    def _centered(self, levels: jnp.ndarray, dtype) -> jnp.ndarray:
        return levels.astype(dtype) * jnp.asarray(2.0 / (self.num_levels - 1), dtype) - 1.0

    def _shifted_means(self, means, coeffs, xc):
        """Means ``(..., C, K)`` shifted by the earlier channels' centred values ``xc (..., C)``."""
        rows = [means[..., i, :] for i in range(self.channels)]
        for n, (i, j) in enumerate(self.coeff_pairs):
            rows[i] = rows[i] + coeffs[..., n, :] * xc[..., j, None]
        return jnp.stack(rows, axis=-2)

    def _bin_log_prob(self, levels, mean, log_scale):
        """``log P(level)`` of a discretized logistic; ``levels`` broadcast against the rest."""
        last = self.num_levels - 1
        half = 1.0 / last
        x = self._centered(levels, mean.dtype)
        inv_s = jnp.exp(-log_scale)
        centred = x - mean
        plus = inv_s * (centred + half)  # CDF argument at the upper bin edge
        minus = inv_s * (centred - half)  # ... at the lower bin edge
        log_cdf_plus = _log_sigmoid(plus)  # first bin: P = sigmoid(plus)
        log_one_minus_cdf_minus = _log_sigmoid(-minus)  # last bin: P = 1 - sigmoid(minus)
        # Inner bin, exactly: sigmoid(plus) - sigmoid(minus)
        #   = sigmoid(plus) * sigmoid(-minus) * (1 - exp(minus - plus)),  minus - plus = -2h/s.
        inner = (
            log_cdf_plus + log_one_minus_cdf_minus + _log1mexp_neg(math.log(2.0 * half) - log_scale)
        )
        return jnp.where(
            levels == 0, log_cdf_plus, jnp.where(levels == last, log_one_minus_cdf_minus, inner)
        )

    # ----------------------------------------------------------------- likelihood
    def component_log_probs(self, params: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
        """``log p_k(x_c | x_<c)`` of every component: ``(..., C, K)``, x ``(..., C)``."""
        logits, means, log_scales, coeffs = self._split(params)
        del logits
        mean = self._shifted_means(means, coeffs, self._centered(x, means.dtype))
        return self._bin_log_prob(x[..., None].astype(jnp.int32), mean, log_scales)

    def log_prob(self, params: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
        """Per-dimension conditionals ``log p(x_c | x_<c in the pixel)``, shape ``(..., C)``.

        ``params`` is ``(..., P)`` (see the class docstring), ``x`` integer levels ``(..., C)``.
        Their sum over the last axis is the exact log-probability of each pixel.
        """
        if x.shape[-1] != self.channels or x.shape[:-1] != params.shape[:-1]:
            raise ValueError(
                f"expected x of shape {(*params.shape[:-1], self.channels)} for parameters "
                f"of shape {params.shape}, got {x.shape}"
            )
        logits = self._split(params)[0]
        comp = self.component_log_probs(params, x)  # (..., C, K)
        log_mix = jax.nn.log_softmax(logits, axis=-1)
        joint = jax.nn.logsumexp(log_mix[..., None, :] + jnp.cumsum(comp, axis=-2), axis=-1)
        previous = jnp.concatenate([jnp.zeros_like(joint[..., :1]), joint[..., :-1]], axis=-1)
        return joint - previous

    # ----------------------------------------------------------------- sampling
    def step_params(self, params: jnp.ndarray, step: jnp.ndarray) -> jnp.ndarray:
        """The parameters of pixel ``step`` (a flat pixel index, raster order): ``(B, P)``."""
        flat = params.reshape(params.shape[0], -1, params.shape[-1])
        return jax.lax.dynamic_index_in_dim(flat, step, axis=1, keepdims=False)

    def step_noise(self, key: jax.Array, params: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """The randomness of one pixel for parameters ``(B, P)``: Gumbel noise ``(B, K)`` that
        picks the component and logistic noise ``(B, C)`` for the channels."""
        k_mix, k_val = jax.random.split(key)
        dtype = _float_dtype(params.dtype)
        gumbel = jax.random.gumbel(k_mix, (params.shape[0], self.num_mixtures), dtype)
        return gumbel, jax.random.logistic(k_val, (params.shape[0], self.channels), dtype)

    def draw(
        self, params: jnp.ndarray, noise, temperature: float = 1.0, top_p: float = 1.0
    ) -> jnp.ndarray:
        """Levels ``(B, C)`` int32 of one pixel from parameters ``(B, P)`` and
        :meth:`step_noise`. ``temperature`` divides the mixture logits and multiplies every
        logistic scale (as in the PixelCNN++ literature); ``top_p`` is not defined here."""
        if top_p < 1.0:
            raise ValueError(f"top_p is for categorical outputs; {self!r} takes only temperature")
        logits, means, log_scales, coeffs = self._split(params)
        if temperature != 1.0:
            logits = logits / temperature
            log_scales = log_scales + math.log(temperature)
        gumbel, noise = noise
        comp = jnp.argmax(gumbel + logits, axis=-1)  # (B,), as jax.random.categorical
        pick = lambda a: jnp.take_along_axis(a, comp[:, None, None], axis=-1)[..., 0]
        mean, log_scale, coeff = pick(means), pick(log_scales), pick(coeffs)
        last = self.num_levels - 1
        levels, centred = [], []
        for i in range(self.channels):
            m = mean[:, i]
            for n, (ii, j) in enumerate(self.coeff_pairs):
                if ii == i:
                    m = m + coeff[:, n] * centred[j]
            y = m + jnp.exp(log_scale[:, i]) * noise[:, i]
            level = jnp.clip(jnp.round((y + 1.0) * (last / 2.0)), 0, last).astype(jnp.int32)
            levels.append(level)
            centred.append(self._centered(level, mean.dtype))
        return jnp.stack(levels, axis=-1)

    def sample_step(
        self, key: jax.Array, params: jnp.ndarray, temperature: float = 1.0, top_p: float = 1.0
    ) -> jnp.ndarray:
        """Draw one pixel: parameters ``(B, P)`` -> levels ``(B, C)`` int32."""
        return self.draw(params, self.step_noise(key, params), temperature, top_p)

    def step_log_prob(self, params: jnp.ndarray, values: jnp.ndarray) -> jnp.ndarray:
        """Log-probability of the pixel ``values (B, C)`` drawn at one step: ``(B,)``."""
        return self.log_prob(params, values).sum(axis=-1)


def mu_law_encode(audio: jnp.ndarray, num_levels: int = 256) -> jnp.ndarray:
    """Quantise audio in [-1, 1] to ``num_levels`` integer levels by mu-law companding.

    ``mu = num_levels - 1``; ``f(x) = sign(x) ln(1 + mu |x|) / ln(1 + mu)`` is mapped from
    [-1, 1] to {0, ..., mu} by rounding. Values outside [-1, 1] are clipped.
    """
    mu = num_levels - 1
    x = jnp.clip(jnp.asarray(audio, jnp.float32), -1.0, 1.0)
    y = jnp.sign(x) * jnp.log1p(mu * jnp.abs(x)) / jnp.log1p(jnp.float32(mu))
    return jnp.clip(jnp.round((y + 1.0) / 2.0 * mu), 0, mu).astype(jnp.int32)


def mu_law_decode(levels: jnp.ndarray, num_levels: int = 256) -> jnp.ndarray:
    """The inverse of :func:`mu_law_encode`: integer levels -> audio in [-1, 1] (float32)."""
    mu = num_levels - 1
    y = 2.0 * jnp.asarray(levels, jnp.float32) / mu - 1.0
    return jnp.sign(y) * jnp.expm1(jnp.abs(y) * jnp.log1p(jnp.float32(mu))) / mu
