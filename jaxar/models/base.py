"""The model contract every autoregressive model in jaxar implements.

An :class:`AutoregressiveModel` pairs a Flax network (integer event in, distribution parameters
out) with an output distribution from :mod:`jaxar.distributions`. It gives exact
log-likelihoods by the chain rule, bits per dimension, and samples through the samplers of
:mod:`jaxar.sampling`. The trainer, evaluator, samplers and CLI use nothing else.

Public methods validate their inputs (shape, dtype, value range, conditioning) and raise
``ValueError`` naming what was expected and what was given. Value ranges are only checked on
concrete arrays, so the methods can also be called inside ``jax.jit``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxar import objectives, sampling
from jaxar.nn.decode import DECODE_WEIGHTS

__all__ = ["AutoregressiveModel"]

Params = Any


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


@partial(jax.jit, static_argnums=0)
def _init_net(net: nn.Module, rng: jax.Array, x, cond) -> Params:
    """``net``'s parameters, one compilation per equal network (``net`` is static: a linen
    module is a hashable dataclass, equal to any other built with the same fields). Every
    ``create`` builds a new model object, so a per-object ``jax.jit`` compiled the same
    ``init`` again for each (the runner, the CLI, every test)."""
    p_rng, d_rng = jax.random.split(rng)
    return net.init({"params": p_rng, "dropout": d_rng}, x, cond)["params"]


def _zeros(shapes):
    """Zeros shaped like ``shapes`` (a tree of ``jax.ShapeDtypeStruct``)."""
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


class AutoregressiveModel:
    """An autoregressive model over integer events of shape ``event_shape``.

    Subclasses set the network and distribution, and may provide a cached decode path by
    overriding :meth:`init_cache` and :meth:`cached_step`.

    Attributes:
      name: the registry name.
      event_shape: shape of one example, e.g. ``(H, W, C)`` or ``(T,)``.
      num_levels: number of values each dimension takes, ``0 .. num_levels - 1``.
      num_classes: number of class labels for class conditioning (0: unconditional).
      hparams: the hyperparameters the model was created with.
    """

    sample_methods: tuple[str, ...] = ("naive",)
    default_sample_method = "naive"

    def __init__(
        self,
        *,
        name: str,
        net: nn.Module,
        distribution: Any,
        event_shape: Sequence[int],
        num_levels: int,
        num_classes: int = 0,
        hparams: dict | None = None,
    ):
        self.name = name
        self.net = net
        self.distribution = distribution
        self.event_shape = tuple(int(d) for d in event_shape)
        self.num_levels = int(num_levels)
        self.num_classes = int(num_classes)
        self.hparams = dict(hparams or {})
        self._log_prob_jit = jax.jit(self._log_prob, static_argnames=("per_dim",))
        self._sample_jit = jax.jit(
            self._sample,
            static_argnames=(
                "num",
                "method",
                "with_log_prob",
                "with_passes",
                "temperature",
                "top_p",
            ),
        )

    # ----------------------------------------------------------------- properties
    @property
    def num_dims(self) -> int:
        """D, the number of dimensions of one example."""
        return math.prod(self.event_shape)

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v!r}" for k, v in sorted(self.hparams.items()))
        return f"{type(self).__name__}({self.name!r}, {hp})"

    # ----------------------------------------------------------------- validation
    def check_input(self, x, cond=None) -> None:
        """Raise ValueError unless ``x`` is a batch of valid events and ``cond`` fits it."""
        shape = tuple(getattr(x, "shape", ()))
        if len(shape) != len(self.event_shape) + 1 or shape[1:] != self.event_shape:
            raise ValueError(
                f"{self.name}: expected x of shape (batch, {', '.join(map(str, self.event_shape))})"
                f", got shape {shape}"
            )
        if shape[0] == 0:
            raise ValueError(f"{self.name}: expected a batch of at least 1 example, got 0")
        dtype = getattr(x, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.integer):
            raise ValueError(
                f"{self.name}: expected integer x with values in [0, {self.num_levels}), "
                f"got dtype {dtype}"
            )
        if _is_concrete(x) and shape[0] > 0:
            v = np.asarray(x)  # a jax array's own min would be staged inside a jit
            lo, hi = int(v.min()), int(v.max())
            if lo < 0 or hi >= self.num_levels:
                raise ValueError(
                    f"{self.name}: expected values in [0, {self.num_levels}), "
                    f"got values in [{lo}, {hi}]"
                )
        self.check_cond(cond, shape[0])

    def check_cond(self, cond, batch: int) -> None:
        """Validate the conditioning for a batch of ``batch`` examples (class labels here)."""
        if self.num_classes == 0:
            if cond is not None:
                raise ValueError(
                    f"{self.name}: this model is unconditional (num_classes=0) but got cond"
                )
            return
        if cond is None:
            raise ValueError(
                f"{self.name}: expected cond, integer class labels of shape ({batch},) "
                f"in [0, {self.num_classes}), got None"
            )
        shape = tuple(getattr(cond, "shape", ()))
        dtype = getattr(cond, "dtype", None)
        if shape != (batch,) or dtype is None or not jnp.issubdtype(dtype, jnp.integer):
            raise ValueError(
                f"{self.name}: expected cond of integer class labels with shape ({batch},), "
                f"got shape {shape} dtype {dtype}"
            )
        if _is_concrete(cond) and batch > 0:
            v = np.asarray(cond)
            lo, hi = int(v.min()), int(v.max())
            if lo < 0 or hi >= self.num_classes:
                raise ValueError(
                    f"{self.name}: expected class labels in [0, {self.num_classes}), "
                    f"got values in [{lo}, {hi}]"
                )

    def check_params(self, params) -> None:
        """Raise ValueError if any parameter is NaN or infinite, naming the first such one."""
        leaves = [
            (path, leaf)
            for path, leaf in jax.tree_util.tree_leaves_with_path(params)
            if _is_concrete(leaf)
        ]
        flags = [jnp.all(jnp.isfinite(leaf)) for _, leaf in leaves]  # dispatched together
        if not flags or bool(jnp.all(jnp.stack(flags))):
            return
        for (path, _), ok in zip(leaves, flags):
            if not bool(ok):
                raise ValueError(
                    f"{self.name}: parameter {jax.tree_util.keystr(path)} holds NaN or inf; "
                    "expected finite parameters (a diverged run? evaluate an earlier checkpoint)"
                )

    def cond_from_batch(self, batch: dict):
        """The conditioning for a data batch (``{"x", "label", ...}``): labels if conditional."""
        return batch["label"] if self.num_classes else None

    # ----------------------------------------------------------------- runner hooks
    def objective(self) -> objectives.Objective:
        """How the runner trains and evaluates this model: by its exact likelihood."""
        return objectives.Likelihood(self)

    #: Whether :meth:`init_from_data` reads its batch (data-dependent initialisation); the
    #: runner then hands it the first training batch.
    init_needs_data = False

    def init_from_data(self, rng: jax.Array, x, cond=None) -> Params:
        """The parameters, given a batch ``x`` (and its ``cond``); only models with
        :attr:`init_needs_data` read it, the rest are :meth:`init` ``(rng)``."""
        return self.init(rng)

    def sampling_examples(self, source, num: int) -> dict | None:
        """Data examples the samples are conditioned on (a vocoder resynthesises the first
        ``num`` examples of ``source`` from their local features), as one batch; None for a
        model whose samples need no data."""
        return None

    def sample_cond(self, num: int, class_label: int | None = None, examples=None):
        """Conditioning for ``num`` samples: the given class, else classes 0, 1, ... in turn
        (None for an unconditional model). ``examples`` (see :meth:`sampling_examples`) is
        for models that condition on data."""
        if class_label is not None:
            if not self.num_classes:
                raise ValueError(f"{self.name} is unconditional; --class needs a conditional model")
            if not 0 <= class_label < self.num_classes:
                raise ValueError(
                    f"class must be in [0, {self.num_classes}) for {self.name}, got {class_label}"
                )
            return jnp.full((num,), class_label, jnp.int32)
        if self.num_classes:
            return jnp.arange(num, dtype=jnp.int32) % self.num_classes
        return None

    # ----------------------------------------------------------------- network
    def dummy_cond(self, batch: int):
        """A valid conditioning input for ``batch`` examples (used to initialise)."""
        return jnp.zeros((batch,), jnp.int32) if self.num_classes else None

    def init(self, rng: jax.Array) -> Params:
        """Initialise the parameters (a pytree) from a PRNG key, as one jitted computation
        (op by op, every parameter's draw was its own compilation: 1.5x slower), compiled
        once per network: models built with equal hyperparameters share it."""
        x = jnp.zeros((1, *self.event_shape), jnp.int32)
        return _init_net(self.net, rng, x, self.dummy_cond(1))

    def apply(self, params: Params, x, cond=None, *, train: bool = False, rng=None):
        """Run the network: the distribution parameters for every dimension of ``x``.

        ``train=True`` enables dropout (where a model has it) and needs ``rng``.
        """
        rngs = {"dropout": rng} if rng is not None else None
        return self.net.apply({"params": params}, x, cond, train=train, rngs=rngs)

    # ----------------------------------------------------------------- likelihood
    def _log_prob(self, params, x, cond=None, per_dim=False, train=False, rng=None):
        out = self.apply(params, x, cond, train=train, rng=rng)
        lp = self.distribution.log_prob(out, x)
        if per_dim:
            return lp
        return lp.reshape(lp.shape[0], -1).sum(axis=-1)

    def log_prob(
        self, params: Params, x, cond=None, per_dim: bool = False, *, train=False, rng=None
    ) -> jnp.ndarray:
        """Exact log-likelihood in nats.

        Returns ``log p(x)`` of shape ``(B,)``, or with ``per_dim=True`` the conditionals
        ``log p(x_i | x_<i)`` of shape ``(B, *event_shape)``. ``x`` holds integers in
        ``[0, num_levels)``. ``train=True`` (with ``rng``) applies dropout, for training.
        """
        self.check_input(x, cond)
        if not _is_concrete(x) or train:
            return self._log_prob(params, x, cond, per_dim=per_dim, train=train, rng=rng)
        lp = self._log_prob_jit(params, jnp.asarray(x), cond, per_dim=per_dim)
        # Under an outer jit (traced params) lp is a tracer, whose values are not known here.
        if _is_concrete(lp) and not bool(jnp.all(jnp.isfinite(lp))):
            self.check_params(params)
        return lp

    def bits_per_dim(self, params: Params, x, cond=None) -> jnp.ndarray:
        """``-log2 p(x) / D`` for every example, shape ``(B,)``."""
        return -self.log_prob(params, x, cond) / (self.num_dims * math.log(2.0))

    # ----------------------------------------------------------------- sampling
    def init_cache(self, params: Params, batch: int, cond=None) -> Any:
        """The initial decode state of the cached sampler (models with one override this)."""
        raise ValueError(f"{self.name} has no cached sampler; methods: {self.sample_methods}")

    def zero_cache(self, params: Params, method, *args) -> Any:
        """Zeros shaped like the ``cache`` collection that ``self.net.apply(..., method=method)``
        writes on ``args``: the empty cache of a decode path (shapes from ``jax.eval_shape``,
        nothing is computed)."""
        shapes = jax.eval_shape(
            lambda p, a: self.net.apply({"params": p}, *a, method=method, mutable=["cache"])[1][
                "cache"
            ],
            params,
            args,
        )
        return _zeros(shapes)

    def decode_state(self, params: Params, method, *args) -> dict:
        """The initial state of the decode path ``self.net.apply(..., method=method)`` on
        ``args``: ``{"cache": zeros}`` shaped like the ``cache`` collection it writes
        (:meth:`zero_cache`) and, when its layers derive weights from their parameters
        (:func:`jaxar.nn.decode.decode_weight`, a masked kernel), those weights, built here,
        once, in the ``decode_weights`` collection: the sampler's loop then reads them and
        does not compute them again at every step (:meth:`decode`)."""

        def variables(p, a):
            mutable = ["cache", DECODE_WEIGHTS]
            return self.net.apply({"params": p}, *a, method=method, mutable=mutable)[1]

        shapes = jax.eval_shape(variables, params, args)
        state = {"cache": _zeros(shapes["cache"])}
        if shapes.get(DECODE_WEIGHTS):  # one decode step run; under jit, only the weights'
            state[DECODE_WEIGHTS] = variables(params, args)[DECODE_WEIGHTS]  # work is kept
        return state

    def with_decode_weights(self, params: Params, state: dict, method, *args) -> dict:
        """``state`` (of :meth:`decode_state`) with the weights that the decode path
        ``method`` on ``args`` derives from its parameters added, for a model whose step runs
        more than one method (the Diagonal BiLSTM's row completion)."""

        def weights(p, s, a):
            mutable = ["cache", DECODE_WEIGHTS]
            out = self.net.apply({"params": p, **s}, *a, method=method, mutable=mutable)[1]
            return out.get(DECODE_WEIGHTS, {})

        if not jax.eval_shape(weights, params, state, args):  # none: nothing run
            return state
        return {**state, DECODE_WEIGHTS: weights(params, state, args)}  # as decode_state

    def decode(self, params: Params, state: dict, *args, method) -> tuple[Any, dict]:
        """``(output, new state)`` of the decode path ``method`` on ``args`` and the state of
        :meth:`decode_state`: its ``cache`` updated, its weights passed on unchanged."""
        out, variables = self.net.apply(
            {"params": params, **state}, *args, method=method, mutable=["cache"]
        )
        return out, {**state, "cache": variables["cache"]}

    def cached_step(self, params, cache, x_flat, step, cond=None):
        """One cached decode step: ``(params of step's distribution, new cache)``."""
        raise ValueError(f"{self.name} has no cached sampler; methods: {self.sample_methods}")

    def _sample(
        self,
        params,
        rng,
        cond,
        prompt=None,
        prompt_dims=0,
        *,
        num,
        method,
        with_log_prob,
        with_passes=False,
        temperature=1.0,
        top_p=1.0,
    ):
        shaping = dict(prompt=prompt, prompt_dims=prompt_dims, temperature=temperature, top_p=top_p)
        passes = None
        if method == "fixed_point":
            forward = partial(self.apply, params, cond=cond)
            x, logp, passes = sampling.fixed_point_sample(
                forward, self.distribution, self.event_shape, rng, num, **shaping
            )
        else:
            if method == "naive":
                forward = partial(self.apply, params, cond=cond)
                step_fn = sampling.naive_step_fn(forward, self.distribution, self.event_shape)
                state = ()
            else:
                state, step_fn = self.cached_sampler(params, num, cond, method)
            x, logp = sampling.scan_sample(
                step_fn,
                state,
                self.distribution,
                rng,
                num,
                self.num_dims,
                event_shape=self.event_shape,
                **shaping,
            )
        out = (x.reshape((num, *self.event_shape)),)
        out += (logp,) if with_log_prob else ()
        out += (passes,) if with_passes else ()
        return out if len(out) > 1 else out[0]

    def _cached_step_fn(self, params, cond, cache, x_flat, step):
        return self.cached_step(params, cache, x_flat, step, cond)

    def cached_sampler(self, params: Params, batch: int, cond=None, method: str = "cached"):
        """``(state, step_fn)`` of the sequential sampler ``method`` (one of
        :attr:`sample_methods` other than "naive"): the initial decode state for ``batch``
        streams and ``step_fn(state, x_flat, step) -> (params of step's distribution,
        state)``, what one iteration of the sampler's scan runs (a model with several decode
        steps picks by ``method``)."""
        del method  # one decode step unless a model overrides this
        return self.init_cache(params, batch, cond), partial(self._cached_step_fn, params, cond)

    #: The parallel samplers every model has on top of its :attr:`sample_methods`.
    parallel_sample_methods: tuple[str, ...] = ("fixed_point",)

    @property
    def all_sample_methods(self) -> tuple[str, ...]:
        """Every ``method`` :meth:`sample` takes: :attr:`sample_methods` (sequential, one
        ``lax.scan``) then :attr:`parallel_sample_methods`."""
        return self.sample_methods + self.parallel_sample_methods

    def sample(
        self,
        params: Params,
        rng: jax.Array,
        num: int,
        cond=None,
        method: str | None = None,
        *,
        prompt=None,
        prompt_dims: int | None = None,
        temperature: float = 1.0,
        top_p: float = 1.0,
        with_log_prob: bool = False,
        with_passes: bool = False,
    ):
        """Draw ``num`` samples, shape ``(num, *event_shape)`` int32.

        ``method`` is one of :attr:`all_sample_methods` (default
        :attr:`default_sample_method`): ``"naive"``, ``"cached"`` (where the model has it) or
        ``"fixed_point"`` (parallel: whole-event passes until nothing changes, see
        :func:`jaxar.sampling.fixed_point_sample`). All methods draw step ``i`` with
        ``fold_in(rng, i)``, so they agree sample for sample.

        ``prompt`` (``(num, *event_shape)`` integers) with ``prompt_dims = n``: keep the first
        ``n`` flat dimensions of each example (raster order, channels inside a pixel; time for
        audio) and sample the rest; ``n`` is in ``[0, D]`` and a whole number of sampling
        steps (pixels for PixelCNN++). ``temperature`` (> 0) and ``top_p`` (nucleus, in
        ``(0, 1]``; categorical outputs only) reshape every step's distribution; the defaults
        leave the samples unchanged.

        ``with_log_prob=True`` also returns the model's log-probability of the sampled part
        (the dimensions after the prompt), shape ``(num,)``, at temperature 1 whatever
        ``temperature``. ``with_passes=True`` (``fixed_point`` only) also returns the number
        of forward passes it took (int32 scalar), last.
        """
        method = method or self.default_sample_method
        if method not in self.all_sample_methods:
            raise ValueError(
                f"{self.name}: unknown sampling method {method!r}; expected one of "
                f"{list(self.all_sample_methods)}"
            )
        if with_passes and method != "fixed_point":
            raise ValueError(
                f"{self.name}: with_passes=True needs method='fixed_point', got method={method!r}"
            )
        if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
            raise ValueError(f"num must be a positive whole number of samples, got {num!r}")
        self.check_cond(cond, int(num))
        self.check_params(params)
        temperature, top_p = self.check_sample_shaping(temperature, top_p)
        prompt, prompt_dims = self.check_prompt(prompt, prompt_dims, int(num))
        return self._sample_jit(
            params,
            rng,
            cond,
            prompt,
            prompt_dims,
            num=int(num),
            method=method,
            with_log_prob=with_log_prob,
            with_passes=with_passes,
            temperature=temperature,
            top_p=top_p,
        )

    def check_sample_shaping(self, temperature, top_p) -> tuple[float, float]:
        """Validate ``temperature`` and ``top_p`` for :meth:`sample`; returns them as floats."""
        t, p = float(temperature), float(top_p)
        if not (math.isfinite(t) and t > 0):
            raise ValueError(f"{self.name}: expected temperature > 0, got {temperature}")
        if not (0.0 < p <= 1.0):
            raise ValueError(f"{self.name}: expected top_p in (0, 1], got {top_p}")
        if p < 1.0 and not getattr(self.distribution, "supports_top_p", False):
            raise ValueError(
                f"{self.name}: top_p (nucleus sampling) needs categorical outputs, but "
                f"{type(self.distribution).__name__} has none; got top_p={top_p}"
            )
        return t, p

    def check_prompt(self, prompt, prompt_dims, num: int):
        """Validate a prompt for :meth:`sample`: ``(prompt as int32, prompt_dims)``. No prompt
        is an empty one (zeros, ``prompt_dims`` 0), so both compile to one sampler and draw
        the same samples."""
        if prompt is None:
            if prompt_dims not in (None, 0):
                raise ValueError(
                    f"{self.name}: prompt_dims={prompt_dims} needs a prompt, got prompt=None"
                )
            return jnp.zeros((num, *self.event_shape), jnp.int32), 0
        d, g = self.num_dims, self.distribution.dims_per_step
        if isinstance(prompt_dims, bool) or not isinstance(prompt_dims, int | np.integer):
            raise ValueError(
                f"{self.name}: expected prompt_dims, an integer in [0, {d}], with a prompt, "
                f"got {prompt_dims!r}"
            )
        if not 0 <= prompt_dims <= d:
            raise ValueError(
                f"{self.name}: expected prompt_dims in [0, {d}] (the flat dimensions kept), "
                f"got {prompt_dims}"
            )
        if prompt_dims % g:
            raise ValueError(
                f"{self.name}: expected prompt_dims a multiple of {g} (whole pixels: this model "
                f"draws the {g} channels of a pixel in one step), got {prompt_dims}"
            )
        shape = tuple(getattr(prompt, "shape", ()))
        want = (num, *self.event_shape)
        if shape != want:
            raise ValueError(f"{self.name}: expected a prompt of shape {want}, got shape {shape}")
        dtype = getattr(prompt, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.integer):
            raise ValueError(
                f"{self.name}: expected an integer prompt with values in [0, {self.num_levels}),"
                f" got dtype {dtype}"
            )
        if _is_concrete(prompt):
            kept = np.asarray(prompt).reshape(num, -1)[:, :prompt_dims]
            if kept.size and (kept.min() < 0 or kept.max() >= self.num_levels):
                raise ValueError(
                    f"{self.name}: expected prompt values in [0, {self.num_levels}), got values "
                    f"in [{int(kept.min())}, {int(kept.max())}] in its first {prompt_dims} dims"
                )
        return jnp.asarray(prompt, jnp.int32), int(prompt_dims)
