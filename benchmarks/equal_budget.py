"""Equal-budget training against a public implementation, on the same data, same machine.

    python benchmarks/equal_budget.py --peer CHECKOUT --peer-python PY \\
        [--seeds 0,1,2] [--inits unit,data,fan_in] [--steps 600] [--out FILE.jsonl]

PixelCNN++ against pclucas14/pixel-cnn-pp (PyTorch; ``--peer`` is a checkout of it, never
part of this repository; ``--peer-python`` a Python with torch). Both sides train the same
architecture (``--resnets`` blocks per stage, ``--filters``, ``--mixtures`` logistics, weight
norm, dropout ``--dropout``; the parameter counts are printed) on the same ``--train`` first
Fashion-MNIST training images, in the same batch order (a permutation per epoch drawn from
the seed), batch ``--batch``, Adam at a constant ``--lr``, for ``--steps`` steps; each seed
also seeds the initial weights. The test figure of both sides is jaxar's exact discretized
logistic mixture (:class:`jaxar.distributions.DiscretizedLogisticMixture`) over the first
``--test`` test images, in bits/dim: the peer's network outputs are scored by the same
function (its own loss is printed beside, as a check). jaxar's side is the library's model,
``log_prob`` and the runner's loss (mean nats per dimension) with optax; one run per seed and
per ``--inits`` entry (``weight_init``: ``unit``, ``data``, ``fan_in``; see
:mod:`jaxar.nn.shifted`). The entry ``peer`` starts jaxar from the peer's own initial weights
of that seed (the driver writes them; :func:`params_from_peer` maps them, and the run stops
unless jaxar's loss on the first batch equals the peer's to 1e-5): it separates the
initialisation from the training step, since both sides then start from the same function.

The peer runs in a subprocess (``benchmarks/peers/pixel_cnn_pp_torch.py``, one thread) after
jaxar's runs of the same seed. Pin the whole command to one core (``taskset -c 1``) for
per-step times that compare (medians over the steps after the first five; compilation
excluded on both sides). Each run appends one JSON line to ``--out``; the summary table (mean,
spread and per-seed figures of each side) is printed at the end.

``--no-weight-norm`` compares jaxar's own initialisations without weight norm, as the
shipped PixelCNN++ configs train (``unit`` against ``fan_in``; no peer, which has weight norm).
``--schedule cosine`` decays jaxar's rate to 0 at the last step (the peer's stays constant), and
``--ema D`` also scores jaxar's moving average of the weights (decay ``D``) on the test images,
for the evaluation-noise study of issue 18.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

import host
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxar import models
from jaxar.data import sources
from jaxar.distributions import DiscretizedLogisticMixture
from jaxar.nn.shifted import WEIGHT_INITS

__all__ = ["main"]

DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers", "pixel_cnn_pp_torch.py")


def _orders(num_train: int, batch: int, steps: int, seed: int) -> np.ndarray:
    """``(steps, batch)`` indices: a fresh permutation per epoch, drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    per_epoch = num_train // batch
    epochs = -(-steps // per_epoch)
    perms = [rng.permutation(num_train)[: per_epoch * batch] for _ in range(epochs)]
    return np.concatenate(perms).reshape(-1, batch)[:steps]


def _warm(times):
    """The step times after the first five (compilation, warm-up), or all of a short run."""
    return list(times[5:]) or list(times)


def _test_bits(dist, outputs: np.ndarray, x: np.ndarray, chunk: int = 200) -> float:
    lp = jax.jit(lambda o, xx: jnp.sum(dist.log_prob(o, xx)))
    nats = sum(float(lp(outputs[i : i + chunk], x[i : i + chunk])) for i in range(0, len(x), chunk))
    return -nats / x.size / math.log(2.0)


def params_from_peer(template: dict, state, num_resnets: int) -> dict:
    """jaxar ``pixelcnn_pp`` parameters (weight norm) equal, as a function, to the peer's.

    ``template``: jaxar's parameter tree (for the shapes); ``state``: the peer's
    ``state_dict`` as numpy arrays. Convolutions ``(out, in, kh, kw)`` become HWIO kernels
    and 1x1 layers ``(out, in)`` become ``(in, out)``, with their gains (per output) as they
    are. The peer's transposed convolutions ``(in, out, kh, kw)`` normalise per *input*
    channel (torch's weight norm with ``dim=0``) and jaxar per output, so their effective
    kernel, flipped (jaxar's is an input-dilated convolution), becomes ``v`` with the gain
    ``||v||`` per output. The block order is the peer's: its up pass (jaxar's first pass),
    then its down pass, ``u`` before ``ul``.
    """

    def layer(prefix, transposed=False):
        v, g, b = (np.asarray(state[f"{prefix}.{k}"]) for k in ("weight_v", "weight_g", "bias"))
        if transposed:
            w = g * v / np.sqrt(np.sum(v**2, axis=(1, 2, 3), keepdims=True))
            kernel = w[:, :, ::-1, ::-1].transpose(2, 3, 0, 1)
            return {
                "kernel": kernel,
                "scale": np.sqrt(np.sum(kernel**2, axis=(0, 1, 2))),
                "bias": b,
            }
        if v.ndim == 2:
            return {"kernel": v.T, "scale": g[:, 0], "bias": b}
        return {"kernel": v.transpose(2, 3, 1, 0), "scale": g.reshape(-1), "bias": b}

    new = {
        "u_in": layer("u_init.conv"),
        "ul_in_up": layer("ul_init.0.conv"),
        "ul_in_left": layer("ul_init.1.conv"),
        "out": layer("nin_out.lin_a"),
    }
    blocks = []
    for s in range(3):
        for r in range(num_resnets):
            blocks += [
                (f"up_layers.{s}.u_stream.{r}", False),
                (f"up_layers.{s}.ul_stream.{r}", True),
            ]
    for s in range(3):
        for r in range(num_resnets + (s > 0)):
            blocks += [
                (f"down_layers.{s}.u_stream.{r}", True),
                (f"down_layers.{s}.ul_stream.{r}", True),
            ]
    for k, (prefix, skip) in enumerate(blocks):
        block = {
            "conv_in": layer(f"{prefix}.conv_input.conv"),
            "conv_out": layer(f"{prefix}.conv_out.conv"),
        }
        if skip:
            block["aux"] = layer(f"{prefix}.nin_skip.lin_a")
        new[f"GatedResnet_{k}"] = block
    for i in range(2):
        new[f"DownShiftedConv2D_{i}"] = layer(f"downsize_u_stream.{i}.conv")
        new[f"DownRightShiftedConv2D_{i}"] = layer(f"downsize_ul_stream.{i}.conv")
        new[f"DownShiftedConvTranspose2D_{i}"] = layer(f"upsize_u_stream.{i}.deconv", True)
        new[f"DownRightShiftedConvTranspose2D_{i}"] = layer(f"upsize_ul_stream.{i}.deconv", True)

    def put(t, src, path):
        if set(t) != set(src):
            raise ValueError(
                f"{path or 'params'}: jaxar has {sorted(t)}, the mapping {sorted(src)}"
            )
        out = {}
        for key, val in t.items():
            if isinstance(val, dict):
                out[key] = put(val, src[key], f"{path}/{key}")
                continue
            a = np.asarray(src[key], np.float32)
            if a.shape != val.shape:
                raise ValueError(f"{path}/{key}: jaxar's shape {val.shape}, the peer's {a.shape}")
            out[key] = jnp.asarray(a)
        return out

    return put(template, new, "")


def train_adam(model, params, batches, lr, key=None, ema: float = 0.0):
    """Adam at ``lr`` (a float: constant; or an optax schedule of the step) over ``batches``
    (integer arrays, one per step) with the runner's loss, mean nats per dimension; in
    training mode (dropout) with a key per step folded from ``key`` when one is given; with
    ``ema`` > 0 an exponential moving average of the weights beside them (as the runner's
    ``ema_decay``: ``a <- ema a + (1 - ema) params`` after each step, from the initial
    weights). Returns ``(params, losses, step_seconds, averaged)`` (``averaged`` is None
    without ``ema``), each step timed whole (it blocks on its loss)."""
    training = key is not None

    def loss_fn(p, x, rng):
        return -jnp.mean(model.log_prob(p, x, train=training, rng=rng)) / model.num_dims

    return adam_steps(loss_fn, params, batches, lr, key, ema)


def adam_steps(loss_fn, params, batches, lr, key=None, ema: float = 0.0):
    """:func:`train_adam` with any ``loss_fn(params, x, rng)`` (``x`` the batch as int32,
    ``rng`` the step's key folded from ``key``, ``jax.random.key(0)`` when None): the same
    Adam, weight average and timing for a peer's network (``benchmarks/pp_step.py``)."""
    tx = optax.adam(lr)
    key = jax.random.key(0) if key is None else key

    @jax.jit
    def step(p, s, a, x, rng):
        loss, g = jax.value_and_grad(loss_fn)(p, x, rng)
        updates, s = tx.update(g, s, p)
        p = optax.apply_updates(p, updates)
        if ema:
            a = jax.tree.map(lambda m, w: ema * m + (1.0 - ema) * w, a, p)
        return p, s, a, loss

    opt_state = tx.init(params)
    averaged = params if ema else None
    losses, times = [], []
    for i, batch in enumerate(batches):
        t0 = time.perf_counter()
        x = jnp.asarray(batch, jnp.int32)
        params, opt_state, averaged, loss = step(
            params, opt_state, averaged, x, jax.random.fold_in(key, i)
        )
        losses.append(float(loss))
        times.append(time.perf_counter() - t0)
    return params, losses, times, averaged


def emit(row: dict, out: str, rows: list) -> None:
    """Print ``row``, append it to ``out`` (JSON lines; none if empty) and to ``rows``."""
    print(json.dumps(row), flush=True)
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")
    rows.append(row)


def run_jaxar(args, seed: int, init: str, train, test, order, peer_init=None) -> dict:
    model = models.create(
        "pixelcnn_pp",
        image_shape=train.shape[1:],
        num_resnets=args.resnets,
        features=args.filters,
        num_mixtures=args.mixtures,
        dropout=args.dropout,
        weight_norm=not args.no_weight_norm,
        weight_init="fan_in" if init == "peer" else init,
    )
    key = jax.random.key(seed)
    first = jnp.asarray(train[order[0]], jnp.int32)
    params = model.init(key, first) if model.init_needs_data else model.init(key)
    if init == "peer":
        params = params_from_peer(params, peer_init, args.resnets)
        ours = float(-jnp.mean(model.log_prob(params, first)) / model.num_dims)
        theirs = float(peer_init["first_batch_nats"])
        if abs(ours - theirs) > 1e-5 * abs(theirs):
            raise SystemExit(
                f"the peer's initial weights do not map: first-batch loss {ours} vs {theirs}"
            )
    lr = args.lr
    if args.schedule == "cosine":  # to 0 at the last step, as the runner's (no warm-up here)
        lr = lambda t: args.lr * 0.5 * (1.0 + jnp.cos(jnp.pi * t / args.steps))
    batches = (train[i] for i in order)
    params, losses, times, averaged = train_adam(model, params, batches, lr, key, args.ema)
    lp = jax.jit(lambda p, x: jnp.sum(model.log_prob(p, x)))
    chunks = [jnp.asarray(test[i : i + 200], jnp.int32) for i in range(0, len(test), 200)]
    bits = lambda p: -sum(float(lp(p, x)) for x in chunks) / test.size / math.log(2.0)
    extra = {"ema": args.ema, "test_bits_per_dim_ema": bits(averaged)} if args.ema else {}
    return {
        "side": "jaxar",
        "init": init,
        "weight_norm": not args.no_weight_norm,
        "schedule": args.schedule,
        **extra,
        "seed": seed,
        "test_bits_per_dim": bits(params),
        "train_bits_last_50": float(np.mean(losses[-50:]) / math.log(2.0)),
        "step_s_median": statistics.median(_warm(times)),
        "step_s_min": min(_warm(times)),
        "num_params": int(sum(v.size for v in jax.tree.leaves(params))),
    }


def _driver(args, seed: int, data_dir: str, *out: str) -> list[str]:
    return [
        args.peer_python, DRIVER, "--peer", args.peer, "--data", data_dir, "--seed", str(seed),
        *out, "--resnets", str(args.resnets), "--filters", str(args.filters),
        "--mixtures", str(args.mixtures), "--dropout", str(args.dropout), "--lr", str(args.lr),
    ]  # fmt: skip


def peer_initial_weights(args, seed: int, data_dir: str) -> dict:
    """The peer's initial ``state_dict`` of ``seed`` and its loss on the first batch."""
    out = os.path.join(data_dir, f"peer_init_{seed}.npz")
    subprocess.run(_driver(args, seed, data_dir, "--init-out", out), check=True)
    return dict(np.load(out))


def run_peer(args, seed: int, data_dir: str, test) -> dict:
    out = os.path.join(data_dir, f"peer_{seed}.npz")
    cmd = _driver(args, seed, data_dir, "--out", out)
    subprocess.run(cmd, check=True)
    r = np.load(out)
    dist = DiscretizedLogisticMixture(args.mixtures, 256, 1)
    times = r["step_seconds"]
    return {
        "side": "peer",
        "init": "peer",
        "seed": seed,
        "test_bits_per_dim": _test_bits(dist, r["outputs"], test),
        "peer_own_test_bits_per_dim": float(r["peer_test_nats"]) / test.size / math.log(2.0),
        "train_bits_last_50": float(np.mean(r["train_loss"][-50:]) / math.log(2.0)),
        "step_s_median": float(np.median(_warm(times))),
        "step_s_min": float(np.min(_warm(times))),
        "num_params": int(r["num_params"]),
        "command": shlex.join(cmd),
    }


def summary(rows: list[dict]) -> str:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        name = r["side"] if r["side"] != "jaxar" else f"jaxar {r['init']}"
        name += "" if r.get("weight_norm", True) else " (no weight norm)"
        name += f", {r['schedule']} rate" if r.get("schedule", "constant") != "constant" else ""
        groups.setdefault(name.replace("jaxar peer", "jaxar from the peer's init"), []).append(r)
    lines = [
        "| side | test bits/dim, mean (spread) | per seed | step s, median | parameters |",
        "|---|---|---|---|---|",
    ]
    for name, rs in groups.items():
        bits = [r["test_bits_per_dim"] for r in rs]
        spread = f"{min(bits):.3f}-{max(bits):.3f}"
        per_seed = ", ".join(f"{r['seed']}: {r['test_bits_per_dim']:.3f}" for r in rs)
        step = statistics.median(r["step_s_median"] for r in rs)
        lines.append(
            f"| {name} | {statistics.mean(bits):.3f} ({spread}) | {per_seed} | {step:.3f} "
            f"| {rs[0]['num_params']:,} |"
        )
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer", default="", help="a checkout of pclucas14/pixel-cnn-pp")
    ap.add_argument("--peer-python", default="python", help="a Python that has torch")
    ap.add_argument("--data", default="idx:/usr/share/datasets/fashion-mnist")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--inits", default="unit,data,fan_in")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--train", type=int, default=800)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--resnets", type=int, default=1)
    ap.add_argument("--filters", type=int, default=32)
    ap.add_argument("--mixtures", type=int, default=5)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument(
        "--no-weight-norm",
        action="store_true",
        help="jaxar's runs without weight norm (the shipped configs'); no peer, no 'data' init",
    )
    ap.add_argument(
        "--schedule", default="constant", choices=("constant", "cosine"),
        help="jaxar's learning rate: constant, or a cosine decay to 0 at --steps",
    )  # fmt: skip
    ap.add_argument(
        "--ema", type=float, default=0.0,
        help="also score jaxar's moving average of the weights with this decay (0: off)",
    )  # fmt: skip
    ap.add_argument("--out", default="", help="append one JSON line per run")
    ap.add_argument(
        "--no-peer-training",
        action="store_true",
        help="skip the peer's own runs (e.g. its rows of these seeds are in --out already)",
    )
    args = ap.parse_args(argv)
    if args.peer and not os.path.isfile(os.path.join(args.peer, "model.py")):
        raise SystemExit(f"--peer must be a checkout of pclucas14/pixel-cnn-pp, got {args.peer!r}")
    seeds = [int(s) for s in args.seeds.split(",")]
    inits = [s for s in args.inits.split(",") if s]
    bad = [i for i in inits if i not in (*WEIGHT_INITS, "peer")]
    if bad or ("peer" in inits and not args.peer):
        raise SystemExit(
            f"--inits takes {', '.join(WEIGHT_INITS)} or peer (which needs --peer), "
            f"got {args.inits!r}"
        )
    if not 0.0 <= args.ema < 1.0:
        raise SystemExit(f"--ema must be in [0, 1), got {args.ema}")
    if args.no_weight_norm and (args.peer or "data" in inits):
        raise SystemExit(
            "--no-weight-norm compares jaxar's own initialisations (unit, fan_in): the peer and "
            f"weight_init='data' need weight norm; got --peer {args.peer!r}, --inits {args.inits!r}"
        )
    train = np.asarray(sources.load(args.data, "train").x[: args.train], np.uint8)
    test = np.asarray(sources.load(args.data, "test").x[: args.test], np.uint8)
    if train.shape[-1] != 1:
        raise SystemExit(f"expected grey images (H, W, 1), got {train.shape[1:]} from {args.data}")
    print(
        f"# {host.processor()}, {len(os.sched_getaffinity(0))} CPUs "
        f"usable; jax {jax.__version__}; `{shlex.join([sys.executable, *sys.argv])}`",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory() as data_dir:
        np.save(os.path.join(data_dir, "train.npy"), train)
        np.save(os.path.join(data_dir, "test.npy"), test)
        for seed in seeds:
            order = _orders(len(train), args.batch, args.steps, seed)
            np.save(os.path.join(data_dir, f"order_{seed}.npy"), order)
            peer_init = peer_initial_weights(args, seed, data_dir) if "peer" in inits else None
            runs = [
                lambda i=i: run_jaxar(args, seed, i, train, test, order, peer_init) for i in inits
            ]
            if args.peer and not args.no_peer_training:
                runs.append(lambda: run_peer(args, seed, data_dir, test))
            for run in runs:
                emit(run(), args.out, rows)
    print(summary(rows))
    return rows


if __name__ == "__main__":
    main()
