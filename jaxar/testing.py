"""Checks that an autoregressive model is what it claims to be; for tests and for forks.

Each check uses only the model contract, so it applies to every registered model:

* :func:`assert_causal`: the conditional of dimension ``i`` (raster order, R < G < B inside a
  pixel) does not change when any later dimension changes, and is a normalised distribution
  over the values of ``x_i`` whatever ``x_i`` is (a model that peeks at ``x_i`` itself fails);
  first, :func:`assert_batch_independent`: no example's conditionals depend on the other
  examples of its batch (a batch-wide statistic would hide a leak from the batched check);
* :func:`assert_normalized`: the probabilities of every possible event sum to 1 (tiny events);
* :func:`assert_cached_matches_naive`: cached and naive sampling draw the same samples from the
  same key, and the samples' likelihood equals the sum of the log-probabilities drawn with;
* :func:`assert_teacher_forced_matches_full`: the cached decode step, fed a real event one step
  at a time, gives at every step the distribution parameters of the full forward pass.

For checks of what XLA makes of a sampler, :func:`compiled_sampler` gives the compiled program's
text and :func:`moved_arrays` the shapes of the arrays it copies (or transposes): a cache, the
events or a weight copied inside the sampler's loop costs its size at every step.
:func:`invariant_slices` finds, before XLA, the slices a sampler's step takes of what does not
change from step to step (its weights) that XLA leaves inside the loop: a copy at every step.
"""

from __future__ import annotations

import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jax_core

__all__ = [
    "assert_batch_independent",
    "assert_cached_matches_naive",
    "assert_causal",
    "assert_normalized",
    "assert_teacher_forced_matches_full",
    "compiled_sampler",
    "invariant_slices",
    "invariant_work",
    "moved_arrays",
    "randomize_params",
    "teacher_forced_params",
]


def randomize_params(params, key: jax.Array, scale: float = 0.5, *, fan_in: bool = False):
    """Normal random values for every parameter, biases included, so nothing is zero by
    accident (zero-initialised biases can hide a leak). With ``fan_in``, weight matrices and
    kernels (2 or more dimensions) are scaled by ``1 / sqrt(fan in)``, which keeps deep
    networks' outputs of order one (their float32 rounding stays small too).

    ``params`` may hold arrays or only their shapes (``jax.eval_shape(model.init, key)``):
    nothing but shapes and dtypes is read, so a test need not compile the model's ``init``.
    The draws are one jitted computation from ``rbg`` keys derived from ``key`` (XLA compiles
    a threefry draw per parameter slowly on CPU)."""
    leaves, treedef = jax.tree.flatten(params)
    shapes = [(tuple(leaf.shape), jnp.dtype(leaf.dtype)) for leaf in leaves]

    @jax.jit
    def draw_all(key):
        rbg = jax.random.wrap_key_data(jax.random.bits(key, (4,), jnp.uint32), impl="rbg")
        out = []
        for k, (shape, dtype) in zip(jax.random.split(rbg, len(shapes)), shapes, strict=True):
            std = scale
            if fan_in and len(shape) > 1:
                std = scale / float(np.sqrt(np.prod(shape[:-1])))
            out.append((std * jax.random.normal(k, shape, jnp.float32)).astype(dtype))
        return out

    return treedef.unflatten(draw_all(key))


def _batched(fn, xs, chunk: int):
    return np.concatenate([np.asarray(fn(xs[i : i + chunk])) for i in range(0, len(xs), chunk)])


def _repeat_cond(cond, n):
    return None if cond is None else jax.tree.map(lambda c: jnp.repeat(c, n, axis=0), cond)


def assert_batch_independent(
    model,
    params,
    x,
    cond=None,
    *,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    seed: int = 0,
    batch: int = 4,
):
    """Assert that the conditionals of the single event ``x`` are the same in a batch of
    ``batch`` copies of ``x`` and in a batch of ``x`` with other (random) events, whichever
    those are: nothing flows between the examples of a batch (batch statistics, a mean over the
    batch, an example reading its neighbour, ...). Both batches have one shape, so the model is
    compiled once. The tolerance is ``atol + rtol * |log p|``.

    ``cond`` is the conditioning of one example (batch of 1), or None.
    """
    if batch < 2:
        raise ValueError(f"assert_batch_independent needs a batch of at least 2, got {batch}")
    flat = np.asarray(x).reshape(1, -1)
    gen = np.random.default_rng(seed)

    def per_dim(xs):
        xs = jnp.asarray(xs.reshape((len(xs), *model.event_shape)), jnp.int32)
        lp = model.log_prob(params, xs, _repeat_cond(cond, len(xs)), per_dim=True)
        return np.asarray(lp).reshape(len(xs), -1)

    alone = per_dim(np.repeat(flat, batch, axis=0))[0]
    for trial in range(2):
        others = gen.integers(0, model.num_levels, (batch - 1, flat.shape[1]), dtype=np.int64)
        batched = per_dim(np.concatenate([flat, others]))
        err = np.abs(batched[0] - alone).max()
        if (np.abs(batched[0] - alone) > atol + rtol * np.abs(alone)).any():
            raise AssertionError(
                f"the conditionals of an example change by {err:.2e} with the other examples of "
                f"its batch (trial {trial}): the model leaks across the batch"
            )


def assert_causal(
    model, params, x, cond=None, *, atol: float = 1e-5, chunk: int = 512, batch_check=True
):
    """Assert that ``model`` is causal at every dimension of the single event ``x``.

    1. For every dimension ``j`` and a changed value of ``x_j``, the conditionals
       ``log p(x_i | x_<i)`` of every ``i < j`` are unchanged.
    2. For every dimension ``j``, ``sum_v p(x_j = v | x_<j)``, each term computed with ``x_j = v``
       in the input, is 1: the conditional of ``x_j`` does not read ``x_j``.

    Both checks score many variants of ``x`` in batches, which is only sound if examples do
    not interact, so :func:`assert_batch_independent` runs first (``batch_check=False`` skips
    it). Every batch has one size (the last is padded with copies of ``x``): one compilation.
    ``cond`` is the conditioning of one example (batch of 1), or None.
    """
    flat = np.asarray(x).reshape(-1)
    d, levels = flat.size, model.num_levels
    size = min(chunk, d * levels)
    if batch_check:
        assert_batch_independent(model, params, x, cond, atol=atol, batch=max(size, 2))

    def per_dim(xs):
        pad = (-len(xs)) % size
        xs = np.concatenate([xs, np.repeat(flat[None], pad, axis=0)])
        xs = jnp.asarray(xs.reshape((len(xs), *model.event_shape)), jnp.int32)
        lp = model.log_prob(params, xs, _repeat_cond(cond, len(xs)), per_dim=True)
        return np.asarray(lp).reshape(len(xs), d)[: len(xs) - pad]

    # Every (dimension, value) variant of x: variants[j * L + v] has x_j = v.
    variants = np.repeat(flat[None], d * levels, axis=0)
    variants[np.arange(d * levels), np.repeat(np.arange(d), levels)] = np.tile(np.arange(levels), d)
    lp = _batched(per_dim, variants, size).reshape(d, levels, d)
    base = lp[np.arange(d), flat]  # (d, d): each row is log p at x itself
    for j in range(d):
        bad = np.flatnonzero((np.abs(lp[j, :, :j] - base[j, None, :j]) > atol).any(0))
        if bad.size:
            raise AssertionError(f"x_{j} leaks into the conditionals of dimensions {bad}")
    for j in range(d):
        total = np.exp(lp[j, :, j].astype(np.float64)).sum()
        if abs(total - 1.0) > 1e-4:
            raise AssertionError(
                f"the conditional of x_{j} reads x_{j} itself: its probabilities over the "
                f"{levels} values sum to {total:.6f}, not 1"
            )
    # Not vacuous: later dimensions do depend on earlier ones somewhere.
    later = [np.abs(lp[j, :, j + 1 :] - base[j, None, j + 1 :]).max(initial=0.0) for j in range(d)]
    if d > 1 and max(later) <= atol:
        raise AssertionError("no dimension depends on any earlier one: the check is vacuous")


def assert_normalized(model, params, cond=None, *, rtol: float = 1e-5, chunk: int = 4096):
    """Assert that ``p(x)`` sums to 1 over every possible event (``num_levels ** D`` of them)."""
    d, levels = model.num_dims, model.num_levels
    if levels**d > 1 << 16:
        raise ValueError(f"{levels}**{d} events are too many to enumerate")
    events = np.array(list(itertools.product(range(levels), repeat=d)), np.int32)

    def lp(xs):
        xs = jnp.asarray(xs.reshape((len(xs), *model.event_shape)))
        return model.log_prob(params, xs, _repeat_cond(cond, len(xs)))

    total = np.exp(_batched(lp, events, chunk).astype(np.float64)).sum()
    np.testing.assert_allclose(total, 1.0, rtol=rtol, err_msg="probabilities do not sum to 1")


def assert_cached_matches_naive(model, params, key, num: int, cond=None, *, rtol=1e-5):
    """Assert that every sampling method draws the same samples from ``key``, and that the
    samples' ``log_prob`` equals the sum of the step log-probabilities the sampler drew with."""
    results = {
        m: model.sample(params, key, num, cond, method=m, with_log_prob=True)
        for m in model.sample_methods
    }
    (first, (ref, ref_lp)), *rest = results.items()
    for method, (samples, lp) in rest:
        np.testing.assert_array_equal(samples, ref, err_msg=f"{method} != {first} samples")
        np.testing.assert_allclose(lp, ref_lp, rtol=rtol)
    np.testing.assert_allclose(model.log_prob(params, ref, cond), ref_lp, rtol=rtol)
    return ref


def teacher_forced_params(model, params, x, cond=None) -> jnp.ndarray:
    """Run the model's cached step over every sampling step, feeding the dimensions of ``x``
    before the step (later ones zero, as the sampler has them): ``(B, steps, P)``."""
    b, d, g = x.shape[0], model.num_dims, model.distribution.dims_per_step
    x_flat = x.reshape(b, d)

    @jax.jit
    def run(params, x_flat, cond):
        def body(cache, step):
            seen = jnp.where(jnp.arange(d) < step * g, x_flat, 0)
            out, cache = model.cached_step(params, cache, seen, step, cond)
            return cache, out

        _, out = jax.lax.scan(body, model.init_cache(params, b, cond), jnp.arange(d // g))
        return jnp.moveaxis(out, 0, 1)

    return run(params, x_flat, cond)


def assert_teacher_forced_matches_full(model, params, x, cond=None, *, rtol: float = 1e-5):
    """Assert that the cached step's parameters equal the full forward pass's at every step,
    within ``rtol`` relative to the largest parameter."""
    cached = np.asarray(teacher_forced_params(model, params, x, cond))
    full = np.asarray(jax.jit(model.apply)(params, x, cond)).reshape(cached.shape)
    err = np.abs(cached - full).max(axis=(0, 2))
    scale = np.abs(full).max()
    bad = np.flatnonzero(err > rtol * scale)
    assert bad.size == 0, (
        f"cached step differs from the full forward at steps {bad[:10].tolist()}: max relative "
        f"error {err.max() / scale:.2e} > {rtol}"
    )


def compiled_sampler(model, params, batch: int, cond=None, method: str = "cached"):
    """``(program, loop)``: the text of ``model.sample(params, key, batch, cond, method=...)``
    as XLA compiles it for the default backend, and its part before the entry computation
    (the sampler's loop and every computation it calls; not the set-up). ``params`` may be
    shapes (``jax.eval_shape(model.init, key)``): nothing runs."""
    sample = jax.jit(lambda p, key: model.sample(p, key, batch, cond, method=method))
    program = sample.lower(params, jax.random.key(0)).compile().as_text()
    return program, program[: program.index("\nENTRY")]


def moved_arrays(text: str, dtype: str = "f32", ops=("copy",)) -> list[tuple[int, ...]]:
    """The shapes of the ``dtype`` arrays that the instructions ``ops`` (``copy``,
    ``transpose``) produce in the compiled ``text``, one entry per instruction."""
    pattern = rf"= {dtype}\[([0-9,]*)\]\{{[0-9,]*\}} (?:{'|'.join(ops)})\("
    return [tuple(int(v) for v in s.split(",") if v) for s in re.findall(pattern, text)]


#: XLA's ``slice`` (what these primitives lower to), and the operations its loop-invariant code
#: motion does not hoist out of a loop alone, only with a consumer that it hoists.
_SLICES = ("slice", "split")
_NOT_WORTH_ALONE = frozenset(
    {"slice", "split", "reshape", "squeeze", "expand_dims", "broadcast_in_dim", "transpose"}
    | {"rev", "iota"}
)
#: What moves data without arithmetic (:func:`invariant_work` leaves it out).
_MOVES = _NOT_WORTH_ALONE | {"gather", "dynamic_slice", "concatenate", "pad"}


def invariant_slices(model, params, batch: int, cond=None, method: str = "cached") -> list:
    """``(primitive, operand shape, result shape)`` of every slice that one step of the
    sequential sampler ``method`` takes of a value that does not change from step to step
    (the weights, the conditioning, what is computed from them alone) and that stays in the
    sampler's loop, i.e. a copy at every step.

    XLA's loop-invariant code motion hoists a slice (like a reshape, transpose or broadcast)
    out of a loop only together with a consumer it hoists: a slice of a weight that a matrix
    product with the step's activations reads stays, ``w[:k] * mask`` goes. A ``gather`` or
    ``dynamic_slice`` of invariants is hoisted alone and is not listed. A sampler that lays out
    its weights before its loop has none. Traced, nothing compiled or run.
    """
    found = []
    for fixed, users in _invariant_walk(*_step_jaxpr(model, params, batch, cond, method)):

        def hoisted(var) -> bool:  # does a consumer XLA hoists take ``var`` out of the loop?
            for e in users.get(var, ()):
                if id(e) in fixed and (
                    e.primitive.name not in _NOT_WORTH_ALONE or any(map(hoisted, e.outvars))
                ):
                    return True
            return False

        for eqn in fixed.values():
            if eqn.primitive.name in _SLICES and not all(map(hoisted, eqn.outvars)):
                shapes = (eqn.invars[0].aval.shape, eqn.outvars[0].aval.shape)
                found.append((eqn.primitive.name, *shapes))
    return found


def invariant_work(model, params, batch: int, cond=None, method: str = "cached") -> list:
    """``(primitive, result shape)`` of every array operation that one step of the sequential
    sampler ``method`` does on values that do not change from step to step alone (the
    weights, closed over or carried unchanged in the sampler's state, the conditioning,
    constants, what only they compute), other than moving data
    (reshapes, broadcasts, gathers, padding; slices: :func:`invariant_slices`).

    Whether such work leaves the loop is up to the compiler, and not every backend takes it
    out: compiled for an H200, PixelCNN's step multiplied each masked kernel by its mask at
    every step (BENCHMARKS.md). A sampler that builds its weights before its loop
    (:func:`jaxar.nn.decode.decode_weight`) has none. Only floating-point arrays are listed:
    scalars and integer arrays computed from constants alone (index arithmetic) are folded by
    XLA. Traced, nothing compiled or run.
    """
    found = []
    for fixed, _ in _invariant_walk(*_step_jaxpr(model, params, batch, cond, method)):
        for eqn in fixed.values():
            if (
                eqn.primitive.name not in _MOVES
                and next(_sub_jaxprs(eqn), None) is None
                and any(v.aval.shape != () and _inexact(v) for v in eqn.outvars)
            ):
                found.append((eqn.primitive.name, eqn.outvars[0].aval.shape))
    return found


def _inexact(var) -> bool:
    return jnp.issubdtype(var.aval.dtype, jnp.inexact)


def _step_jaxpr(model, params, batch, cond, method):
    """The jaxpr of one step of ``model``'s sequential sampler ``method`` (the sampler's state
    an argument, its weights closed over) and the variables that do not change from step to
    step: its constants and the parts of the state the step passes on unchanged (weights a
    sampler built before its loop)."""
    state, step_fn = model.cached_sampler(params, batch, cond, method)
    x_flat = jnp.zeros((batch, model.num_dims), jnp.int32)
    jaxpr = jax.make_jaxpr(step_fn)(state, x_flat, jnp.int32(0)).jaxpr
    n = len(jax.tree.leaves(state))
    ins, outs = jaxpr.invars[:n], jaxpr.outvars[-n:]  # step_fn returns (output, new state)
    return jaxpr, set(jaxpr.constvars) | {v for v, w in zip(ins, outs) if v is w}


def _invariant_walk(jaxpr, invariant: set | None = None):
    """``(fixed, users)`` for ``jaxpr`` and each jaxpr nested in it: ``fixed`` the
    equations (by id) that compute from invariants alone, ``users`` each variable's
    consumers. ``invariant`` are the variables known not to change (``jaxpr``'s constants
    when None, and what only they and literals compute)."""
    invariant = set(jaxpr.constvars) if invariant is None else invariant
    fixed, users = {}, {}
    is_fixed = lambda v: isinstance(v, jax_core.Literal) or v in invariant
    for eqn in jaxpr.eqns:
        ins = [is_fixed(v) for v in eqn.invars]
        for v in eqn.invars:
            if not isinstance(v, jax_core.Literal):
                users.setdefault(v, []).append(eqn)
        for sub in _sub_jaxprs(eqn):
            # A cond's branches take its operands after the branch index; any other nested
            # jaxpr whose inputs are not the equation's own gets none marked invariant.
            args = ins[1:] if eqn.primitive.name == "cond" else ins
            if len(args) != len(sub.invars):
                args = [False] * len(sub.invars)
            inner = {v for v, f in zip(sub.invars, args) if f} | set(sub.constvars)
            yield from _invariant_walk(sub, inner)
        if all(ins):
            invariant.update(eqn.outvars)
            fixed[id(eqn)] = eqn
    yield fixed, users


def _sub_jaxprs(eqn):
    for value in eqn.params.values():
        for v in value if isinstance(value, tuple | list) else (value,):
            if isinstance(v, jax_core.ClosedJaxpr):
                yield v.jaxpr
            elif isinstance(v, jax_core.Jaxpr):
                yield v
