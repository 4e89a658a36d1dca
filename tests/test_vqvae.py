"""VQ-VAE and two-stage generation: quantiser maths, training through the runner, encoding,
a prior over the codes, decoded samples, the image bound, exact resume, bad input."""

import json
import math
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxar import config as jaxar_config
from jaxar import models, train, two_stage
from jaxar.checkpointing import Checkpointer
from jaxar.data import ArraySource, DataInfo, load
from jaxar.nn.quantize import VectorQuantizer, perplexity
from jaxar.runner import loop

K, D = 8, 3


def _vq(**kw):
    vq = VectorQuantizer(K, D, **kw)
    z = jax.random.normal(jax.random.key(1), (5, 4, D))
    variables = vq.init({"params": jax.random.key(0)}, z)
    return vq, variables, z


def _codebook(vq, variables):
    return np.asarray(vq.apply(variables, method=VectorQuantizer.codebook))


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_nearest_neighbour_quantisation_is_exact(ema_decay):
    vq, variables, z = _vq(ema_decay=ema_decay)
    out = vq.apply(variables, z)
    codebook = _codebook(vq, variables)
    dist = ((np.asarray(z)[..., None, :] - codebook) ** 2).sum(-1)
    np.testing.assert_array_equal(out["indices"], dist.argmin(-1))
    np.testing.assert_allclose(out["quantized"], codebook[dist.argmin(-1)], rtol=1e-6, atol=1e-6)


def test_straight_through_gradient_and_loss_formulas():
    vq, variables, z = _vq(beta=0.25)
    w = jax.random.normal(jax.random.key(2), z.shape)
    out = vq.apply(variables, z)
    q = _codebook(vq, variables)[np.asarray(out["indices"])]
    sq = float(np.mean((np.asarray(z) - q) ** 2))
    np.testing.assert_allclose(out["codebook_loss"], sq, rtol=1e-5)
    np.testing.assert_allclose(out["commitment_loss"], 0.25 * sq, rtol=1e-5)

    def f(params, z):
        o = vq.apply({**variables, "params": params}, z)
        return jnp.sum(o["quantized"] * w), o["codebook_loss"], o["commitment_loss"]

    # Straight through: d/dz of the quantised output is the identity.
    np.testing.assert_allclose(jax.grad(lambda z: f(variables["params"], z)[0])(z), w)
    # The codebook loss moves only the codebook, the commitment loss only the encoder.
    gz = jax.grad(lambda z: f(variables["params"], z)[1])(z)
    assert float(jnp.abs(gz).max()) == 0.0
    gp = jax.grad(lambda p: f(p, z)[2])(variables["params"])
    assert float(jnp.abs(gp["codebook"]).max()) == 0.0
    assert float(jnp.abs(jax.grad(lambda p: f(p, z)[1])(variables["params"])["codebook"]).max())


def test_ema_moves_codes_toward_their_assigned_means():
    vq, variables, z = _vq(ema_decay=0.5)
    before = _codebook(vq, variables)
    out, updates = vq.apply(variables, z, train=True, mutable=["vq"])
    after = _codebook(vq, {**variables, **updates})
    idx, flat = np.asarray(out["indices"]).ravel(), np.asarray(z).reshape(-1, D)
    for k in np.unique(idx):
        mean = flat[idx == k].mean(0)
        assert np.linalg.norm(after[k] - mean) < np.linalg.norm(before[k] - mean)
    unused = np.setdiff1d(np.arange(K), idx)
    np.testing.assert_allclose(after[unused], before[unused], rtol=1e-4)


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_dead_codes_are_restarted_onto_encoder_outputs(ema_decay):
    vq, variables, _ = _vq(ema_decay=ema_decay, usage_decay=0.5, restart_threshold=0.5)
    z = jnp.zeros((16, D)) + jnp.arange(16, dtype=jnp.float32)[:, None] * 1e-3 + 10.0
    state = variables["vq"]
    restarts = 0.0
    for i in range(3):  # one code takes every vector; the others' usage decays below 0.5/K
        out, upd = vq.apply(
            {**variables, "vq": state},
            z,
            train=True,
            mutable=["vq"],
            rngs={"restart": jax.random.key(i)},
        )
        state, restarts = upd["vq"], restarts + float(out["restarts"])
    assert restarts >= K - 1
    codebook = _codebook(vq, {**variables, "vq": state})
    # Every restarted code now sits on one of the batch's vectors.
    dist = np.abs(codebook[:, None, :] - np.asarray(z)[None]).max(-1).min(-1)
    assert (dist < 1e-3).sum() >= K - 1


def test_perplexity_is_k_for_uniform_usage_and_one_for_a_single_code():
    np.testing.assert_allclose(perplexity(jnp.ones(K) * 3.0), K, rtol=1e-6)
    np.testing.assert_allclose(perplexity(jnp.eye(K)[2] * 5.0), 1.0, rtol=1e-6)


# ------------------------------------------------------------------------------ runner
def vqvae_config(**overrides):
    c = jaxar_config.default()
    c.data.name = "digits"
    c.model_name = "vqvae"
    c.model = jaxar_config.ml_collections.ConfigDict(
        dict(
            num_codes=16,
            code_dim=4,
            features=16,
            res_features=8,
            num_res_blocks=1,
            num_downsamples=1,
            restart_threshold=0.03,
        )
    )
    c.batch_size, c.eval_batch_size = 32, 100
    c.num_steps, c.log_every, c.eval_every, c.checkpoint_every = 12, 4, 6, 6
    c.optim.warmup_steps, c.optim.learning_rate = 2, 3e-3
    c.num_samples = 8
    for key, value in overrides.items():
        node, (*path, last) = c, key.split(".")
        for p in path:
            node = node[p]
        node[last] = value
    return c


@pytest.fixture(scope="module")
def two_stage_runs(tmp_path_factory):
    """A VQ-VAE trained on digits, its codes, and a tiny Gated PixelCNN prior over them."""
    root = tmp_path_factory.mktemp("two_stage")
    vq_dir, prior_dir = str(root / "vqvae"), str(root / "prior")
    c = vqvae_config(num_steps=60, eval_every=60, checkpoint_every=60)
    _, test_src, info = train.load_data(c)
    model = train.build_model(c, info)
    rng = jax.random.key(c.seed)
    before = train.evaluate(
        model, model.init(rng), test_src, batch_size=100, model_state=model.init_state(rng)
    )
    after = train.train_and_evaluate(c, vq_dir)
    meta = two_stage.encode_run(vq_dir)
    p = jaxar_config.default()
    p.data.name, p.data.conditional = f"codes:{vq_dir}", True
    p.model_name = "gated_pixelcnn"
    p.model = jaxar_config.ml_collections.ConfigDict(
        dict(features=8, num_layers=1, first_kernel=3, output_features=16)
    )
    p.batch_size, p.eval_batch_size, p.num_steps = 32, 100, 10
    p.log_every = p.eval_every = p.checkpoint_every = 10
    p.num_samples = 4
    prior = train.train_and_evaluate(p, prior_dir)
    return dict(
        vq_dir=vq_dir, prior_dir=prior_dir, before=before, after=after, meta=meta, prior=prior
    )


def test_vqvae_trains_through_the_runner(two_stage_runs):
    before, after = two_stage_runs["before"], two_stage_runs["after"]
    assert after["test/recon_bits_per_dim"] < before["test/recon_bits_per_dim"] - 0.5
    assert 0.0 <= after["test/mse"] < before["test/mse"]
    # No codebook collapse: the 16 codes are used like at least two equally used ones (4.5
    # measured); 16 is the most K = 16 codes can give.
    assert 2.0 <= after["test/perplexity"] <= 16.0
    vq_dir = two_stage_runs["vq_dir"]
    records = [json.loads(line) for line in open(os.path.join(vq_dir, "metrics.jsonl"))]
    assert {"train/loss", "train/perplexity", "train/usage", "train/mse"} <= set(records[0])
    assert os.path.exists(os.path.join(vq_dir, "reconstructions.png"))
    x, recon = np.load(os.path.join(vq_dir, "reconstructions.npy"))
    assert x.shape == recon.shape == (8, 8, 8, 1) and recon.max() <= 16
    assert Checkpointer(vq_dir, best_metric="test/recon_bits_per_dim").best_step() == 60


def test_encoding_writes_codes_and_the_codes_loader_reads_them(two_stage_runs):
    vq_dir, meta = two_stage_runs["vq_dir"], two_stage_runs["meta"]
    src = load(f"codes:{vq_dir}", "test")
    assert len(src) == 297 and src.info.event_shape == (4, 4, 1) and src.info.num_levels == 16
    assert src.info.num_classes == 10 and 0 <= src[0]["label"] < 10
    _, model, variables, _, _ = two_stage._load_autoencoder(vq_dir)
    images = load("digits", "test")
    x = np.stack([images[i]["x"] for i in range(5)]).astype(np.int32)
    codes = np.stack([src[i]["x"][..., 0] for i in range(5)])
    np.testing.assert_array_equal(model.encode(variables, x), codes)
    every = np.stack([images[i]["x"] for i in range(297)]).astype(np.int32)
    nll, sq = model.nll(variables, every)
    np.testing.assert_allclose(meta["test_recon_nll_nats"], float(np.mean(nll)), rtol=1e-4)
    # In batches of 128 (the last one padded): every batch's codes, labels and sums count once.
    got_codes, got_labels, nll_sum, sq_sum = two_stage._encode_split(
        model, variables, images, 128, "", 0, nll=True
    )
    np.testing.assert_array_equal(got_codes, model.encode(variables, every))
    np.testing.assert_array_equal(got_labels, [images[i]["label"] for i in range(297)])
    np.testing.assert_allclose([nll_sum, sq_sum], [np.sum(nll), np.sum(sq)], rtol=1e-5)


def test_prior_trains_on_codes_and_the_image_bound_holds(two_stage_runs):
    prior, meta = two_stage_runs["prior"], two_stage_runs["meta"]
    assert np.isfinite(prior["test/bits_per_dim"])
    bound = two_stage.image_bound(prior["test/nll_nats"], meta)
    dims = 8 * 8 * 1
    recon_bpd = meta["test_recon_nll_nats"] / (dims * math.log(2.0))
    assert np.isfinite(bound["test/image_bound_bits_per_dim"])
    assert bound["test/image_bound_bits_per_dim"] >= recon_bpd
    np.testing.assert_allclose(
        bound["test/image_bound_nats"], meta["test_recon_nll_nats"] + prior["test/nll_nats"]
    )


def _cli(*args):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, "-m", "jaxar.cli", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_sample_decodes_and_eval_reports_the_bound(two_stage_runs, tmp_path):
    prior_dir = two_stage_runs["prior_dir"]
    r = _cli("sample", f"--workdir={prior_dir}", "--num=3", "--class=2", f"--out={tmp_path}/s")
    assert r.returncode == 0, r.stderr[-3000:]
    assert np.load(f"{tmp_path}/s.npy").shape == (3, 4, 4, 1)
    decoded = np.load(f"{tmp_path}/s_decoded.npy")
    assert decoded.shape == (3, 8, 8, 1) and 0 <= decoded.min() and decoded.max() <= 16
    assert os.path.exists(f"{tmp_path}/s_decoded.png")
    r = _cli("eval", f"--workdir={prior_dir}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "test bits/dim" in r.stdout and "image bound" in r.stdout
    r = _cli("sample", f"--workdir={two_stage_runs['vq_dir']}")
    assert r.returncode != 0 and "jaxar encode" in r.stderr


def test_resume_of_a_vqvae_run_is_exact(tmp_path, monkeypatch):
    c = vqvae_config(num_samples=0, ema_decay=0.9)
    c.model.ema_decay, c.model.restart_threshold, c.model.usage_decay = 0.9, 0.5, 0.5
    straight = tmp_path / "straight"
    train.train_and_evaluate(c, str(straight))
    real = loop.train_batches

    def dying(*args, **kwargs):
        for k, batch in enumerate(real(*args, **kwargs)):
            if kwargs["start_step"] == 0 and k == 8:
                raise KeyboardInterrupt("killed")
            yield batch

    monkeypatch.setattr(loop, "train_batches", dying)
    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        train.train_and_evaluate(c, str(resumed))
    train.train_and_evaluate(c, str(resumed))
    a = train.restore_run(str(straight), "latest")[2]
    b = train.restore_run(str(resumed), "latest")[2]
    assert int(a.step) == int(b.step) == 12
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7), a, b)
    # The EMA codebook statistics moved, and are part of what resumed exactly.
    init = train.build_model(c, train.load_data(c)[2]).init_state(jax.random.key(c.seed))
    assert not np.allclose(
        a.model_state["quantizer"]["cluster_size"], init["quantizer"]["cluster_size"]
    )


def test_bad_input_is_named(tmp_path, two_stage_runs):
    with pytest.raises(FileNotFoundError, match="jaxar encode"):
        load(f"codes:{tmp_path}", "train")
    with pytest.raises(ValueError, match="expected a run of an autoencoder"):
        two_stage.encode_run(two_stage_runs["prior_dir"])
    with pytest.raises(ValueError, match="divisible by 2\\^num_downsamples"):
        train.build_model(vqvae_config(**{"model.num_downsamples": 4}), load("digits", "test").info)


def test_vqvae_with_gradient_accumulation(tmp_path):
    # The state passes through the micro-batches; the metrics are their mean.
    c = vqvae_config(num_steps=2, log_every=1, eval_every=2, checkpoint_every=2, num_samples=0)
    c.grad_accum_steps = 2
    metrics = train.train_and_evaluate(c, str(tmp_path))
    assert np.isfinite(metrics["test/recon_bits_per_dim"])
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert all(np.isfinite(r["train/perplexity"]) for r in records if "train/perplexity" in r)


def test_checkpoints_written_before_model_state_still_restore(tmp_path):
    c = jaxar_config.default()
    c.model.features, c.model.num_blocks, c.model.output_features = 8, 1, 8
    c.model.first_kernel = 3
    c.batch_size, c.eval_batch_size, c.num_steps = 32, 100, 2
    c.log_every = c.eval_every = c.checkpoint_every = 2
    c.num_samples = 0
    train.train_and_evaluate(c, str(tmp_path / "new"))
    state = train.restore_run(str(tmp_path / "new"), "latest")[2]
    # An autoregressive run's checkpoint as the runner wrote it before TrainState.model_state.
    (tmp_path / "old").mkdir()
    shutil.copy(tmp_path / "new" / "config.json", tmp_path / "old")
    ckpt = Checkpointer(str(tmp_path / "old"))
    fields = ("step", "params", "opt_state", "ema_params", "nonfinite_step")
    ckpt.save(2, {f: getattr(state, f) for f in fields})
    ckpt.wait()
    ckpt.close()
    restored = train.restore_run(str(tmp_path / "old"), "latest")[2]
    assert restored.model_state is None and int(restored.step) == 2
    jax.tree.map(np.testing.assert_array_equal, restored.params, state.params)


# ------------------------------------------------------------------------------ direct checks
def test_ema_codebook_update_by_hand_with_an_asymmetric_decay():
    # d != 1 - d: swapping the two weights changes every figure below; an epsilon this large
    # makes the Laplace smoothing visible.
    d, eps = 0.8, 0.1
    vq, variables, z = _vq(ema_decay=d, epsilon=eps, usage_decay=0.7)
    state = jax.tree.map(np.asarray, variables["vq"])
    # A non-trivial starting point: statistics unlike the init (counts not all one).
    size0 = np.linspace(0.5, 3.0, K).astype(np.float32)
    sums0 = np.asarray(jax.random.normal(jax.random.key(5), (K, D)))
    state = {**state, "cluster_size": size0, "embed_sum": sums0, "codebook": sums0 / size0[:, None]}
    out, upd = vq.apply({**variables, "vq": state}, z, train=True, mutable=["vq"])
    flat = np.asarray(z, np.float64).reshape(-1, D)
    idx = np.asarray(out["indices"]).ravel()
    codebook0 = sums0 / size0[:, None]
    dist = ((flat[:, None, :] - codebook0[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(idx, dist.argmin(1))  # assigned by the pre-update codebook
    counts = np.bincount(idx, minlength=K).astype(np.float64)
    one_hot = np.eye(K)[idx]
    size = d * size0 + (1 - d) * counts
    sums = d * sums0 + (1 - d) * one_hot.T @ flat
    n = size.sum()
    smoothed = (size + eps) / (n + K * eps) * n
    usage = 0.7 * (1.0 / K) + 0.3 * counts / len(flat)
    new = upd["vq"]
    np.testing.assert_allclose(new["cluster_size"], size, rtol=1e-5)
    np.testing.assert_allclose(new["embed_sum"], sums, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new["codebook"], sums / smoothed[:, None], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new["usage"], usage, rtol=1e-5)
    assert len(np.unique(idx)) >= 3  # several codes take part, so per-code mix-ups show


def test_image_bound_is_the_sum_of_both_terms_per_image_dimension():
    meta = {"image_shape": [4, 6, 3], "test_recon_nll_nats": 123.25}
    got = two_stage.image_bound(45.5, meta)
    assert got["test/image_bound_nats"] == pytest.approx(168.75)
    assert got["test/recon_nll_nats"] == pytest.approx(123.25)
    assert got["test/image_bound_bits_per_dim"] == pytest.approx(168.75 / (72 * math.log(2)))


def test_vqvae_test_metrics_are_the_means_they_claim():
    model = models.create_tiny("vqvae", "grey", num_levels=4)
    rng = jax.random.key(0)
    params, state = model.init(rng), model.init_state(rng)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree.unflatten(
        tree, [p + 0.3 * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys)]
    )
    rs = np.random.default_rng(0)
    x = rs.integers(0, 4, (10, 4, 4, 1)).astype(np.uint8)
    src = ArraySource(x, None, DataInfo("random", (4, 4, 1), 4))
    # Batches of 4: the last holds 2 examples and 2 rows of zero padding.
    got = train.evaluate(model, params, src, batch_size=4, model_state=state)
    xi = jnp.asarray(x, jnp.int32)
    logits, _ = model.net.apply({"params": params, "vq": state}, xi)
    logp = np.asarray(jax.nn.log_softmax(logits, axis=-1), np.float64)
    nll = -np.take_along_axis(logp, np.asarray(x, np.int64)[..., None], -1)[..., 0]
    nll = nll.reshape(10, -1).sum(1)
    mean_image = np.exp(logp) @ (np.arange(4) / 3.0)
    mse = ((mean_image - x / 3.0) ** 2).reshape(10, -1).mean(1)
    codes = np.asarray(model.encode({"params": params, "vq": state}, xi)).ravel()
    p = np.bincount(codes, minlength=model.num_codes) / len(codes)
    assert (p > 0).sum() >= 2  # more than one code used: perplexity is not 1 by construction
    perplexity_ = np.exp(-np.sum(p[p > 0] * np.log(p[p > 0])))
    np.testing.assert_allclose(got["test/recon_nll_nats"], nll.mean(), rtol=1e-5)
    np.testing.assert_allclose(
        got["test/recon_bits_per_dim"], nll.mean() / (16 * math.log(2)), rtol=1e-5
    )
    np.testing.assert_allclose(got["test/mse"], mse.mean(), rtol=1e-5)
    np.testing.assert_allclose(got["test/perplexity"], perplexity_, rtol=1e-5)
    np.testing.assert_allclose(got["test/usage"], (p > 0).mean(), rtol=1e-6)


def test_the_autoencoder_contract_and_the_encoders_widths():
    """A fork's autoencoder must define every method the runner and two-stage code call; the
    encoder's downsampling convolutions are ``features // 2`` wide but the last (the module
    docstring). Shapes only: nothing is compiled."""
    from jaxar.models.autoencoder import Autoencoder

    assert Autoencoder.__abstractmethods__ == {
        "init", "init_state", "loss", "eval_sums", "summarize", "variables", "encode",
        "decode_mean", "nll",
    }  # fmt: skip
    for downsamples, widths in [(1, [16]), (2, [8, 16]), (3, [8, 8, 16])]:
        model = models.create("vqvae", image_shape=(8, 8, 1), num_levels=4, features=16,
                              res_features=8, num_downsamples=downsamples)  # fmt: skip
        encoder = jax.eval_shape(model.init, jax.random.key(0))["encoder"]
        got = [encoder[f"Conv_{i}"]["kernel"].shape for i in range(downsamples)]
        assert got == [(4, 4, w_in, w) for w_in, w in zip([1, *widths], widths)]


@pytest.mark.parametrize(
    "kernel,strides,padding,dilation,convolutions",
    [
        ((1, 1), (1, 1), "SAME", (1, 1), 0),  # a matrix product, no convolution left
        ((3, 3), (1, 1), "SAME", (1, 1), None),
        ((4, 4), (2, 2), "SAME", (1, 1), None),
        ((2, 3), (1, 2), "VALID", (1, 1), None),
        ((3, 3), (1, 1), "SAME", (2, 2), None),  # dilated: lax's own convolution
    ],
)
def test_the_vqvae_convolution_is_flax_conv_with_the_same_parameters_values_and_gradients(
    kernel, strides, padding, dilation, convolutions
):
    """The VQ-VAE's convolutions are flax's nn.Conv with jaxar.nn.conv.conv_general_dilated
    in place of lax's: same parameter tree, values and gradients; a 1x1 one compiles to a
    matrix product."""
    import re

    import flax.linen as nn

    from jaxar.models.vqvae import Conv

    kw = dict(strides=strides, padding=padding, kernel_dilation=dilation)
    ours, flax_conv = Conv(24, kernel, **kw), nn.Conv(24, kernel, **kw)
    x = jax.random.normal(jax.random.key(0), (2, 8, 7, 5))
    params = flax_conv.init(jax.random.key(1), x)
    assert jax.tree.structure(ours.init(jax.random.key(1), x)) == jax.tree.structure(params)
    np.testing.assert_allclose(ours.apply(params, x), flax_conv.apply(params, x), atol=2e-5)

    def grad(layer):
        return jax.grad(lambda p, x: jnp.sum(jnp.sin(layer.apply(p, x))), (0, 1))

    for g, w in zip(
        jax.tree.leaves(grad(ours)(params, x)),
        jax.tree.leaves(grad(flax_conv)(params, x)),
        strict=True,
    ):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)
    hlo = jax.jit(grad(ours)).lower(params, x).compile().as_text()
    if convolutions is not None:
        assert len(re.findall(r"\bconvolution\(", hlo)) == convolutions
