"""PixelCNN++ train-step time of jaxar checkouts and of public implementations, alternating.

    python benchmarks/pp_step.py --side new=. --side old=/tmp/jaxar-old \\
        [--peer CHECKOUT --peer-python PY] [--rounds 3] [--steps 40] [--out FILE.jsonl]
    python benchmarks/pp_step.py --side jaxar=. --flax-example DIR --image 32,32,3 \\
        --batch 8 --dropout 0.5 --ema 0.9995 --data random

Each ``--side NAME=PATH`` is a jaxar checkout (``PATH/jaxar`` is imported, through
``PYTHONPATH``, in a fresh process). Two public implementations can join as sides:

- ``--peer CHECKOUT``: pclucas14/pixel-cnn-pp in PyTorch (``benchmarks/peers/
  pixel_cnn_pp_torch.py`` runs it, one thread; grey images, no weight averaging);
- ``--flax-example DIR``: the PixelCNN++ example that Flax shipped until google/flax@866ce07
  removed it. ``DIR`` holds its ``pixelcnn.py`` (``git -C FLAX show
  866ce07b^:examples/pixelcnn/pixelcnn.py > DIR/pixelcnn.py``); this script imports its network
  and likelihood from there (never copied) and trains them with the same optax Adam, weight
  average and timing loop as the jaxar sides. The example is written for RGB images, and its
  residual block without a skip input omits one concat_elu of the paper's (fewer weights: the
  table reports each side's count and XLA's FLOPs).

Every round runs each side once, in the order given, each a fresh process timing ``--steps``
train steps on the same batches (``--batch`` images of ``--image`` from ``--data``; ``random``:
uniform 8-bit images from a fixed seed, for shapes no local dataset has). The network: weight
norm, ``--resnets`` per stage, ``--filters``, ``--mixtures`` logistics, dropout ``--dropout``,
Adam at a constant 1e-3, and with ``--ema`` an average of the weights updated after each step
(the Flax example's Polyak averaging; the runner's ``ema_decay``). The defaults are the
equal-budget size of ``benchmarks/equal_budget.py`` (28x28x1 Fashion-MNIST, batch 16, 1 resnet
per stage, 32 filters, 5 logistics, no dropout). A side's figure is the median (and min) of its
steps after the first five (compilation excluded). Pin the command to one core (``taskset -c
0``) so the sides compare. Prints one JSON line per side and round (and appends them to
``--out``), then a table of the median over rounds of each side's per-round medians and minima,
its parameter count and the XLA FLOPs of its loss gradient.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile

import host
import numpy as np

__all__ = ["main"]

HERE = os.path.dirname(os.path.abspath(__file__))
FLAX_EXAMPLE = "the Flax example (google/flax@866ce07b^)"


def _time_steps(loss_fn, params, data_dir: str, settings: dict) -> dict:
    """Adam (and the weight average) on the saved batches, each step timed whole
    (``equal_budget.adam_steps``), with the parameter count and XLA's FLOPs of the gradient."""
    sys.path.insert(0, HERE)
    import equal_budget
    import jax

    train = np.load(os.path.join(data_dir, "train.npy"))
    order = np.load(os.path.join(data_dir, "order_0.npy"))
    key = jax.random.key(0)
    first = jax.numpy.asarray(train[order[0]], "int32")
    grad = jax.jit(jax.grad(loss_fn)).lower(params, first, key).compile()
    flops = (grad.cost_analysis() or {}).get("flops", float("nan"))
    count = sum(int(np.size(w)) for w in jax.tree.leaves(params))
    batches = (train[b] for b in order)
    _, losses, times, _ = equal_budget.adam_steps(
        loss_fn, params, batches, 1e-3, key, settings["ema"]
    )
    return {"step_s": times, "params": count, "flops": flops, "first_loss": losses[0]}


def _worker(data_dir: str) -> None:
    """One jaxar side: time the steps and print one JSON line (run in a fresh process)."""
    import jax

    import jaxar
    from jaxar import models

    with open(os.path.join(data_dir, "settings.json")) as f:
        s = json.load(f)
    model = models.create(
        "pixelcnn_pp", image_shape=tuple(s["image"]), num_resnets=s["resnets"],
        features=s["filters"], num_mixtures=s["mixtures"], dropout=s["dropout"],
        weight_norm=True, weight_init="fan_in",
    )  # fmt: skip

    def loss_fn(p, x, rng):  # the runner's loss: mean nats per dimension
        return -jax.numpy.mean(model.log_prob(p, x, train=True, rng=rng)) / model.num_dims

    res = _time_steps(loss_fn, model.init(jax.random.key(0)), data_dir, s)
    print(json.dumps(dict(res, source=os.path.dirname(jaxar.__file__))))


def _flax_worker(data_dir: str, example: str) -> None:
    """The Flax example's side, in a fresh process: its network and likelihood, imported."""
    sys.path.insert(0, example)
    import jax
    import jax.numpy as jnp
    import pixelcnn

    with open(os.path.join(data_dir, "settings.json")) as f:
        s = json.load(f)
    net = pixelcnn.PixelCNNPP(
        depth=s["resnets"], features=s["filters"], logistic_components=s["mixtures"],
        dropout_p=s["dropout"],
    )  # fmt: skip

    def loss_fn(p, x, rng):  # the example's loss: mean bits per dimension
        x = x.astype(jnp.float32) / 127.5 - 1.0
        out = net.apply({"params": p}, x, train=True, rngs={"dropout": rng})
        means, inv_scales, logits = pixelcnn.conditional_params_from_outputs(out, x)
        ll = pixelcnn.logprob_from_conditional_params(x, means, inv_scales, logits)
        return -jnp.mean(ll) / (jnp.log(2.0) * np.prod(x.shape[-3:]))

    # The example's data-dependent initialisation, on the first batch (not timed).
    first = np.load(os.path.join(data_dir, "train.npy"))[np.load(f"{data_dir}/order_0.npy")[0]]
    keys = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    params = net.init(keys, jnp.asarray(first, jnp.float32) / 127.5 - 1.0, train=False)["params"]
    res = _time_steps(loss_fn, params, data_dir, s)
    print(json.dumps(dict(res, source=os.path.abspath(pixelcnn.__file__))))


def _run(cmd: list[str], env: dict, name: str) -> dict:
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"side {name} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _time_side(name: str, path: str, data_dir: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(path))
    res = _run([sys.executable, os.path.abspath(__file__), "--worker", data_dir], env, name)
    want = os.path.realpath(os.path.join(path, "jaxar"))
    if os.path.realpath(res["source"]) != want:
        raise SystemExit(f"side {name}: expected jaxar from {want}, imported {res['source']}")
    return res


def _time_flax(example: str, data_dir: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", data_dir, "--flax-example",
           os.path.abspath(example)]  # fmt: skip
    return _run(cmd, dict(os.environ), FLAX_EXAMPLE)


def _time_peer(args, data_dir: str) -> dict:
    npz = os.path.join(data_dir, "peer_0.npz")
    cmd = [
        args.peer_python, os.path.join(HERE, "peers", "pixel_cnn_pp_torch.py"), "--peer",
        args.peer, "--data", data_dir, "--seed", "0", "--out", npz, "--resnets",
        str(args.resnets), "--filters", str(args.filters), "--mixtures", str(args.mixtures),
        "--dropout", str(args.dropout),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    return {"step_s": [float(t) for t in np.load(npz)["step_seconds"]]}


def _parse_image(text: str) -> tuple[int, int, int]:
    try:
        h, w, c = (int(v) for v in text.split(","))
    except ValueError:
        raise SystemExit(f"--image takes H,W,C (three integers), got {text!r}") from None
    if min(h, w, c) < 1 or h % 4 or w % 4:
        raise SystemExit(f"--image needs H and W divisible by 4 (two halvings), got {text!r}")
    return h, w, c


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", action="append", default=[], help="NAME=PATH of a jaxar checkout")
    ap.add_argument("--peer", default="", help="a checkout of pclucas14/pixel-cnn-pp")
    ap.add_argument("--peer-python", default="python", help="a Python that has torch")
    ap.add_argument("--flax-example", default="", help="a folder holding the example's pixelcnn.py")
    ap.add_argument("--data", default="idx:/usr/share/datasets/fashion-mnist",
                    help="a dataset spec, or 'random'")  # fmt: skip
    ap.add_argument("--image", default="28,28,1", help="H,W,C of the images")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--resnets", type=int, default=1)
    ap.add_argument("--filters", type=int, default=32)
    ap.add_argument("--mixtures", type=int, default=5)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--ema", type=float, default=0.0, help="weight-average decay; 0: none")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--out", default="", help="append one JSON line per side and round")
    ap.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        if args.flax_example:
            return _flax_worker(args.worker, args.flax_example)
        return _worker(args.worker)
    image = _parse_image(args.image)
    sides = []
    for s in args.side:
        name, sep, path = s.partition("=")
        if not (sep and name and os.path.isdir(os.path.join(path, "jaxar"))):
            raise SystemExit(f"--side takes NAME=PATH of a jaxar checkout, got {s!r}")
        sides.append((name, path))
    if args.peer and not os.path.isfile(os.path.join(args.peer, "model.py")):
        raise SystemExit(f"--peer must be a checkout of pclucas14/pixel-cnn-pp, got {args.peer!r}")
    if args.peer and (image[2] != 1 or args.ema):
        raise SystemExit(
            f"--peer runs grey images without a weight average (--image H,W,1, --ema 0), got "
            f"--image {args.image} --ema {args.ema}"
        )
    if args.flax_example and not os.path.isfile(os.path.join(args.flax_example, "pixelcnn.py")):
        raise SystemExit(
            f"--flax-example must be a folder holding the example's pixelcnn.py, got "
            f"{args.flax_example!r}"
        )
    if args.flax_example and image[2] != 3:
        raise SystemExit(f"--flax-example is written for RGB (--image H,W,3), got {args.image}")
    if not (sides or args.peer or args.flax_example):
        raise SystemExit("give at least one --side NAME=PATH, --peer or --flax-example, got none")
    if args.steps < 10:
        raise SystemExit(f"--steps must be at least 10 (5 are not timed), got {args.steps}")
    if args.batch < 1 or not 0.0 <= args.dropout < 1.0 or not 0.0 <= args.ema < 1.0:
        raise SystemExit(
            f"--batch must be >= 1 and --dropout, --ema in [0, 1), got {args.batch}, "
            f"{args.dropout}, {args.ema}"
        )

    if args.data == "random":
        train = np.random.default_rng(0).integers(0, 256, (800, *image), dtype=np.uint8)
    else:
        from jaxar.data import sources

        train = np.asarray(sources.load(args.data, "train").x[:800], np.uint8)
        if train.shape[1:] != image:
            raise SystemExit(
                f"--data {args.data} has images of {train.shape[1:]}, --image says {image}"
            )
    print(
        f"# {host.processor()}, {len(os.sched_getaffinity(0))} CPUs "
        f"usable; `{shlex.join([sys.executable, *sys.argv])}`",
        flush=True,
    )
    settings = dict(
        image=image, batch=args.batch, resnets=args.resnets, filters=args.filters,
        mixtures=args.mixtures, dropout=args.dropout, ema=args.ema,
    )  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as data_dir:
        with open(os.path.join(data_dir, "settings.json"), "w") as f:
            json.dump(settings, f)
        np.save(os.path.join(data_dir, "train.npy"), train)
        np.save(os.path.join(data_dir, "test.npy"), train[:100])
        rng = np.random.default_rng(0)
        order = np.stack([rng.permutation(len(train))[: args.batch] for _ in range(args.steps)])
        np.save(os.path.join(data_dir, "order_0.npy"), order)
        for r in range(args.rounds):
            runs = [(n, lambda p=p, n=n: _time_side(n, p, data_dir)) for n, p in sides]
            if args.flax_example:
                runs.append((FLAX_EXAMPLE, lambda: _time_flax(args.flax_example, data_dir)))
            if args.peer:
                runs.append(("pclucas14/pixel-cnn-pp", lambda: _time_peer(args, data_dir)))
            for name, run in runs:
                res = run()
                warm = res["step_s"][5:]
                row = dict(side=name, round=r, median=statistics.median(warm), min=min(warm))
                row.update({k: res[k] for k in ("params", "flops", "first_loss") if k in res})
                print(json.dumps(row), flush=True)
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(json.dumps(row) + "\n")
                rows.append(row)
    print(
        "| side | s/step, median of rounds (per-round medians) | min | parameters | GFLOP |\n"
        "|---|---|---|---:|---:|"
    )
    for name in dict.fromkeys(r["side"] for r in rows):
        rs = [r for r in rows if r["side"] == name]
        meds = ", ".join(f"{r['median']:.3f}" for r in rs)
        med = statistics.median(r["median"] for r in rs)
        count = f"{rs[0]['params']:,}" if "params" in rs[0] else "-"
        gflop = f"{rs[0]['flops'] / 1e9:.2f}" if "flops" in rs[0] else "-"
        print(
            f"| {name} | {med:.3f} ({meds}) | {min(r['min'] for r in rs):.3f} | {count} | {gflop} |"
        )
    return rows


if __name__ == "__main__":
    main()
