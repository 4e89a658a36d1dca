"""Prompted completion, temperature / nucleus sampling and fixed-point sampling (issue 17).

For every registered autoregressive model (tiny sizes from ``jaxar.models.create_tiny``): the
cached completion of a prompt equals the naive one from the same key, fixed-point sampling
equals naive, the prompt is kept and the log-probability covers the sampled part only; the
defaults draw exactly what the distributions drew before temperature and ``top_p`` existed;
bad prompts get one-line ValueErrors.
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxar.models
from jaxar import distributions
from jaxar.models.wavenet import InverseCdfCategorical
from jaxar.testing import randomize_params

AR_NAMES = [
    n
    for n in jaxar.models.names()
    if isinstance(jaxar.models.create_tiny(n, "grey"), jaxar.models.AutoregressiveModel)
]


@functools.cache
def _tiny(name):  # one model per name: its jitted samplers compile once for the module
    role = "rgb" if jaxar.models.tiny_shape(name, "rgb") else "grey"
    model = jaxar.models.create_tiny(name, role)
    return model, model.init(jax.random.key(0))


def _prompt(model, num, seed=3):
    return jax.random.randint(
        jax.random.key(seed), (num, *model.event_shape), 0, model.num_levels, jnp.int32
    )


def _draw(model, params, key, method, prompt=None, dims=None, **kw):
    """``model.sample`` of 3 examples with the static options the other tests use (log-prob
    on), so each model's samplers compile once for the module; fixed point: (x, passes)."""
    fixed = method == "fixed_point"
    out = model.sample(
        params,
        key,
        3,
        method=method,
        prompt=prompt,
        prompt_dims=dims,
        with_log_prob=True,
        with_passes=fixed,
        **kw,
    )
    return (out[0], int(out[2])) if fixed else out[0]


def test_every_autoregressive_model_is_covered():
    assert {"pixelcnn", "pixelcnn_pp", "transformer", "wavenet"} <= set(AR_NAMES)
    assert "vqvae" not in AR_NAMES


@pytest.mark.parametrize("name", AR_NAMES)
def test_completion_agrees_across_samplers(name):
    model, params = _tiny(name)
    g = model.distribution.dims_per_step
    steps = model.num_dims // g
    n = (steps // 2) * g  # about half, a whole number of steps
    num, key = 3, jax.random.key(7)
    prompt = _prompt(model, num)
    kw = dict(prompt=prompt, prompt_dims=n, with_log_prob=True)
    naive, lp_naive = model.sample(params, key, num, method="naive", **kw)
    fixed, lp_fixed, passes = model.sample(
        params, key, num, method="fixed_point", with_passes=True, **kw
    )
    flat = np.asarray(naive).reshape(num, -1)
    np.testing.assert_array_equal(flat[:, :n], np.asarray(prompt).reshape(num, -1)[:, :n])
    np.testing.assert_array_equal(fixed, naive)
    assert 1 <= int(passes) <= steps - n // g
    if "cached" in model.sample_methods:
        cached, lp_cached = model.sample(params, key, num, method="cached", **kw)
        np.testing.assert_array_equal(cached, naive)
        np.testing.assert_allclose(lp_cached, lp_naive, rtol=1e-5, atol=1e-4)
    # The log-probability is the model's, of the sampled dimensions only.
    per_dim = np.asarray(model.log_prob(params, naive, per_dim=True)).reshape(num, -1)
    np.testing.assert_allclose(lp_naive, per_dim[:, n:].sum(axis=1), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(lp_fixed, lp_naive, rtol=1e-5, atol=1e-4)


def test_fixed_point_without_prompt_and_its_pass_count():
    model, params = _tiny("pixelcnn")
    g = model.distribution.dims_per_step
    steps = model.num_dims // g
    key = jax.random.key(11)
    prompt = _prompt(model, 3)
    naive = _draw(model, params, key, "naive")
    fixed, passes = _draw(model, params, key, "fixed_point")
    np.testing.assert_array_equal(fixed, naive)
    assert 1 <= passes <= steps
    # All but the last step given: one pass draws it and it is final.
    out, passes = _draw(model, params, key, "fixed_point", prompt, model.num_dims - g)
    assert passes == 1
    np.testing.assert_array_equal(
        out, _draw(model, params, key, "naive", prompt, model.num_dims - g)
    )
    # Every step given: no pass at all, the prompt comes back.
    out, passes = _draw(model, params, key, "fixed_point", prompt, model.num_dims)
    assert passes == 0
    np.testing.assert_array_equal(out, prompt)
    # A network that ignores its input settles at once: the first pass draws every step, the
    # second changes nothing and the loop stops there (not after one pass per step).
    flat = jax.tree.map(jnp.zeros_like, params)
    out, passes = _draw(model, flat, key, "fixed_point")
    assert steps > 2 and passes == 2
    np.testing.assert_array_equal(out, _draw(model, flat, key, "naive"))


def test_the_public_samplers_defaults_draw_the_models_own_distribution():
    """``jaxar.sampling`` called directly, options left at their defaults, gives exactly
    ``model.sample``'s draws: temperature 1, no nucleus, and a prompt without ``prompt_dims``
    keeps nothing."""
    from functools import partial

    from jaxar import sampling

    model, params = _tiny("pixelcnn")
    key, n = jax.random.key(5), 3
    want = model.sample(params, key, n, method="naive").reshape(n, -1)
    forward = partial(model.apply, params, cond=None)
    step = sampling.naive_step_fn(forward, model.distribution, model.event_shape)
    run = jax.jit(
        lambda prompt: sampling.scan_sample(
            step, (), model.distribution, key, n, model.num_dims, prompt=prompt
        )[0]
    )
    np.testing.assert_array_equal(run(None), want)
    np.testing.assert_array_equal(run(_prompt(model, n)), want)
    fixed = jax.jit(
        lambda prompt: sampling.fixed_point_sample(
            forward, model.distribution, model.event_shape, key, n, prompt=prompt
        )[0]
    )
    np.testing.assert_array_equal(fixed(None), want)
    np.testing.assert_array_equal(fixed(_prompt(model, n)), want)


def test_prompt_dims_zero_is_no_prompt():
    model, params = _tiny("transformer")
    key = jax.random.key(2)
    a = model.sample(params, key, 3, method="cached", with_log_prob=True)[0]
    b = _draw(model, params, key, "cached", _prompt(model, 3), 0)
    np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ today's draws
def _legacy_categorical(key, logits):
    return jax.random.categorical(key, logits.astype(jnp.float32), axis=-1)[:, None]


def _legacy_inverse_cdf(dist, key, logits):
    cdf = dist.cdf(jax.nn.softmax(logits.astype(jnp.float32), axis=-1))
    u = jax.random.uniform(key, (logits.shape[0], 1), jnp.float32) * cdf[:, -1:]
    return jnp.minimum(
        jnp.sum((cdf <= u).astype(jnp.int32), -1, keepdims=True), dist.num_levels - 1
    )


def _legacy_mixture(dist, key, params):
    logits, means, log_scales, coeffs = dist._split(params)
    k_mix, k_val = jax.random.split(key)
    comp = jax.random.categorical(k_mix, logits, axis=-1)
    pick = lambda a: jnp.take_along_axis(a, comp[:, None, None], axis=-1)[..., 0]
    mean, log_scale, coeff = pick(means), pick(log_scales), pick(coeffs)
    noise = jax.random.logistic(k_val, mean.shape, mean.dtype)
    last = dist.num_levels - 1
    levels, centred = [], []
    for i in range(dist.channels):
        m = mean[:, i]
        for n, (ii, j) in enumerate(dist.coeff_pairs):
            if ii == i:
                m = m + coeff[:, n] * centred[j]
        y = m + jnp.exp(log_scale[:, i]) * noise[:, i]
        level = jnp.clip(jnp.round((y + 1.0) * (last / 2.0)), 0, last).astype(jnp.int32)
        levels.append(level)
        centred.append(dist._centered(level, mean.dtype))
    return jnp.stack(levels, axis=-1)


@pytest.mark.parametrize("kind", ["categorical", "inverse_cdf", "mixture"])
def test_defaults_draw_exactly_what_was_drawn_before(kind):
    if kind == "mixture":
        dist = distributions.DiscretizedLogisticMixture(5, 256, 3)
        legacy = lambda k, p: _legacy_mixture(dist, k, p)
        size = dist.num_params
    else:
        dist = (distributions.Categorical if kind == "categorical" else InverseCdfCategorical)(256)
        legacy = _legacy_categorical if kind == "categorical" else partial_inverse(dist)
        size = 256
    params = 3.0 * jax.random.normal(jax.random.key(1), (64, size), jnp.float32)
    for s in range(4):
        key = jax.random.key(s)
        want = np.asarray(legacy(key, params))
        np.testing.assert_array_equal(dist.sample_step(key, params), want)
        np.testing.assert_array_equal(dist.sample_step(key, params, 1.0, 1.0), want)


def partial_inverse(dist):
    return lambda k, p: _legacy_inverse_cdf(dist, k, p)


def test_temperature_one_reproduces_the_default_samples():
    model, params = _tiny("wavenet")
    key = jax.random.key(5)
    default = model.sample(params, key, 3, with_log_prob=True)[0]
    np.testing.assert_array_equal(_draw(model, params, key, "cached", temperature=1.0), default)
    cold = _draw(model, params, key, "cached", temperature=0.02)  # nearly the mode at each step
    assert not np.array_equal(cold, default)


# ------------------------------------------------------------------ temperature / top_p
def test_nucleus_keeps_the_fewest_most_probable_values():
    dist = distributions.Categorical(4)
    logits = jnp.log(jnp.array([[0.15, 0.5, 0.05, 0.3]] * 4000, jnp.float32))
    draws = np.asarray(dist.sample_step(jax.random.key(0), logits, top_p=0.7))[:, 0]
    assert set(np.unique(draws)) == {1, 3}  # 0.5 + 0.3 >= 0.7; 0.5 alone is not
    assert abs(np.mean(draws == 1) - 0.5 / 0.8) < 0.03  # renormalised over the nucleus
    draws = np.asarray(dist.sample_step(jax.random.key(0), logits, top_p=0.5))[:, 0]
    assert set(np.unique(draws)) == {1}
    # Temperature: p^(1/T) renormalised.
    draws = np.asarray(dist.sample_step(jax.random.key(1), logits, temperature=0.5))[:, 0]
    p = np.array([0.15, 0.5, 0.05, 0.3]) ** 2
    assert abs(np.mean(draws == 1) - p[1] / p.sum()) < 0.03


def test_top_p_reaches_the_sampler_of_every_categorical_model():
    """A nucleus of one value (top_p tiny) makes every step the most probable value: two keys
    give one sample. (Mutation testing found a categorical that refused top_p unchecked.)"""
    for name in ("pixelcnn", "wavenet"):
        model = jaxar.models.create_tiny(name)
        shapes = jax.eval_shape(model.init, jax.random.key(0))
        params = randomize_params(shapes, jax.random.key(0), fan_in=True)  # no ties at init
        a, b = (model.sample(params, jax.random.key(k), 2, top_p=1e-6) for k in (1, 2))
        np.testing.assert_array_equal(a, b)
        c, d = (model.sample(params, jax.random.key(k), 2) for k in (1, 2))
        assert not np.array_equal(c, d), name


def test_mixture_temperature_scales_logits_and_logistic_scales():
    dist = distributions.DiscretizedLogisticMixture(3, 256, 3)
    params = jax.random.normal(jax.random.key(2), (256, dist.num_params), jnp.float32)
    key, t = jax.random.key(3), 0.6
    logits, rest = params[:, :3], params[:, 3:].reshape(256, -1, 3)
    scaled = rest.at[:, 3:6].set(jnp.maximum(rest[:, 3:6], -7.0) + np.log(t))
    manual = jnp.concatenate([logits / t, scaled.reshape(256, -1)], axis=-1)
    np.testing.assert_array_equal(dist.sample_step(key, params, t), dist.sample_step(key, manual))
    assert not np.array_equal(dist.sample_step(key, params, t), dist.sample_step(key, params))


# ------------------------------------------------------------------ errors
def _one_line_error(match, fn, *args, **kw):
    with pytest.raises(ValueError, match=match) as e:
        fn(*args, **kw)
    assert "\n" not in str(e.value)


def test_bad_prompts_and_options_get_one_line_errors():
    model, params = _tiny("pixelcnn_pp")  # rgb: 3 channels drawn per step
    key, d = jax.random.key(0), model.num_dims
    good = _prompt(model, 3)
    s = lambda **kw: model.sample(params, key, 3, with_log_prob=True, **kw)
    _one_line_error(
        r"prompt of shape \(3, 4, 4, 3\), got shape \(2, 4, 4, 3\)",
        s,
        prompt=_prompt(model, 2),
        prompt_dims=3,
    )
    _one_line_error(r"prompt_dims in \[0, 48\].*got 51", s, prompt=good, prompt_dims=d + 3)
    _one_line_error(r"prompt_dims in \[0, 48\].*got -3", s, prompt=good, prompt_dims=-3)
    _one_line_error(r"multiple of 3.*got 4", s, prompt=good, prompt_dims=4)
    _one_line_error(r"integer in \[0, 48\].*got None", s, prompt=good)
    _one_line_error(r"prompt_dims=6 needs a prompt", s, prompt_dims=6)
    _one_line_error(
        r"values in \[0, 4\), got values in \[0, 4\]",
        s,
        prompt=good.at[1, 0, 1, 2].set(4),
        prompt_dims=6,
    )
    # Values after the kept dimensions are not read, so they may be anything.
    s(prompt=good.at[1, 3, 3, 2].set(-9), prompt_dims=6)
    _one_line_error(
        r"integer prompt.*got dtype float32", s, prompt=good.astype(jnp.float32), prompt_dims=3
    )
    _one_line_error(r"temperature > 0, got 0", s, temperature=0.0)
    _one_line_error(r"top_p in \(0, 1\], got 1.5", s, top_p=1.5)
    _one_line_error(r"top_p .*needs categorical outputs", s, top_p=0.9)
    _one_line_error(r"with_passes=True needs method='fixed_point'", s, with_passes=True)
    _one_line_error(r"unknown sampling method 'jacobi'.*fixed_point", s, method="jacobi")


# ------------------------------------------------------------------ speakers as labels
def test_wav_sub_folders_are_speakers(tmp_path):
    import os

    import soundfile

    from jaxar.data.wav import wav

    rng = np.random.default_rng(0)
    corpus = {"bob": 3, "amy": 4, "cid": 3}  # voice folder -> number of clips
    for voice, n in corpus.items():
        (tmp_path / "store" / voice / "digits").mkdir(parents=True)
        for i in range(n):  # clips of distinct lengths, some in a nested folder
            where = tmp_path / "store" / voice / ("digits" if i % 2 else "")
            soundfile.write(where / f"{i}.wav", rng.uniform(-0.5, 0.5, 400 * (1 + i)), 8000)
    voices = tmp_path / "voices"  # links to the voices, as experiments/data/asterisk_voices
    voices.mkdir()
    for voice in corpus:
        os.symlink(tmp_path / "store" / voice, voices / voice)
    seen = {}
    for split in ("train", "test"):
        src = wav(str(voices), split, length=400, sample_rate=8000, test_fraction=0.3)
        assert src.info.num_classes == 3
        for i in range(len(src)):
            e = src[i]
            path = src.files[int(e["file"])]
            seen[path] = int(e["label"])
    assert len(seen) == sum(corpus.values())
    names = sorted(corpus)  # labels follow the sorted folder names: amy 0, bob 1, cid 2
    for path, label in seen.items():
        assert os.path.relpath(path, voices).split(os.sep)[0] == names[label]
    # One voice's folder (wavs of its own beside sub-folders) stays unlabelled.
    one = wav(str(voices / "amy"), "train", length=400, sample_rate=8000, test_fraction=0.3)
    assert one.info.num_classes == 0 and "label" not in one[0]
    # Two voices are the smallest multi-speaker corpus; a folder holding one is unlabelled.
    for keep, classes in ((("amy", "cid"), 2), (("bob",), 0)):
        some = tmp_path / "-".join(keep)
        some.mkdir()
        for voice in keep:
            os.symlink(tmp_path / "store" / voice, some / voice)
        src = wav(str(some), "train", length=400, sample_rate=8000, test_fraction=0.3)
        assert src.info.num_classes == classes


# ------------------------------------------------------------------ CLI helpers
def test_prompt_dims_and_completion_grid():
    from jaxar.completion import completion_grid, prompt_dims
    from jaxar.data import DataInfo

    image = DataInfo("img", (4, 3, 2), 8)
    audio = DataInfo("wav", (800,), 256, kind="audio", sample_rate=8000)
    assert prompt_dims(image, rows=2) == 2 * 3 * 2
    assert prompt_dims(audio, seconds=0.05) == 400
    assert prompt_dims(audio, seconds=1 / 8000) == 1  # one sample is the shortest prompt
    _one_line_error(r"--prompt-rows in \[1, 3\], got 4", prompt_dims, image, rows=4)
    _one_line_error(r"--prompt-seconds in \(0, 0.1\).*got 0.2", prompt_dims, audio, seconds=0.2)
    _one_line_error(r"--prompt-rows is for image runs", prompt_dims, audio, rows=1)
    _one_line_error(r"one of --prompt-rows or --prompt-seconds", prompt_dims, image)
    x = np.arange(2 * 24).reshape(2, 4, 3, 2) % 8
    completions = np.stack([x + 0, x * 0 + 1, x * 0 + 2], axis=1)  # (2, 3, 4, 3, 2)
    tiles = completion_grid(x, completions, 6, 8).reshape(2, 5, 4, 3, 2)
    np.testing.assert_array_equal(tiles[:, 0], x)  # original
    np.testing.assert_array_equal(tiles[:, 1, :1], x[:, :1])  # prompt: its first row ...
    assert (tiles[:, 1, 1:] == 4).all()  # ... the rest grey
    np.testing.assert_array_equal(tiles[:, 2:], completions)


def test_scan_sample_stopped_at_the_prompt_leaves_zeros_after_it():
    """``num_steps`` stops the sampler; what it did not reach stays 0, the prompt's values
    after ``prompt_dims`` included (a sampler starting from one more would show it here)."""
    from jaxar import sampling

    levels, batch, dims = 5, 2, 6
    step_fn = lambda state, x, i: (jnp.zeros((batch, levels)), state)
    prompt = jnp.full((batch, dims), 3, jnp.int32)
    got = sampling.scan_sample(
        step_fn, (), distributions.Categorical(levels), jax.random.key(0), batch, dims,
        num_steps=2, prompt=prompt, prompt_dims=2,
    )[0]  # fmt: skip
    np.testing.assert_array_equal(got, [[3, 3, 0, 0, 0, 0]] * batch)


@pytest.mark.parametrize(
    "dist, shape, message",
    [
        (distributions.Categorical(5), (4,), "event_shape (4,) must hold 6 dimensions, its "
         "last axis a multiple of the 1 drawn per step"),
        (distributions.DiscretizedLogisticMixture(2, 256, 3), (3, 2), "event_shape (3, 2) must "
         "hold 6 dimensions, its last axis a multiple of the 3 drawn per step"),
    ],
)  # fmt: skip
def test_scan_sample_refuses_an_event_shape_of_other_dimensions_or_steps(dist, shape, message):
    from jaxar import sampling

    step_fn = lambda state, x, i: (None, state)  # never reached
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        sampling.scan_sample(step_fn, (), dist, jax.random.key(0), 2, 6, event_shape=shape)


@pytest.mark.parametrize("inverse_cdf", [True, False])
def test_step_i_draws_with_fold_in_of_key_and_i(inverse_cdf):
    """scan_sample's step ``i`` draws ``sample_step(fold_in(key, i), params)``: what makes two
    samplers whose steps agree draw the same samples (WaveNet's inverse-CDF draw and the
    Gumbel-max one)."""
    from jaxar import sampling

    levels, batch, dims = 16, 3, 9
    dist = InverseCdfCategorical(levels) if inverse_cdf else distributions.Categorical(levels)
    table = jax.random.normal(jax.random.key(2), (dims, levels)) * 2.0
    key = jax.random.key(4)

    def step_fn(state, x, i):  # the logits depend on the values drawn before
        return table[i] + 0.5 * jnp.cos(x.sum(1, keepdims=True) * jnp.arange(levels)), state

    got, logp = jax.jit(lambda: sampling.scan_sample(step_fn, (), dist, key, batch, dims))()
    x, want_logp = np.zeros((batch, dims), np.int32), 0.0
    for i in range(dims):
        params, _ = step_fn((), jnp.asarray(x), i)
        values = dist.sample_step(jax.random.fold_in(key, i), params)
        x[:, i] = np.asarray(values)[:, 0]
        want_logp += np.asarray(dist.step_log_prob(params, values))
    np.testing.assert_array_equal(got, x)
    np.testing.assert_allclose(logp, want_logp, rtol=1e-5)
