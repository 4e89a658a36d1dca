"""WaveNet generation speed: fast (cached, Paine et al. 2016) against naive recomputation.

The paper-sized model: 30 layers (3 cycles of dilations 1, 2, ..., 512), kernel 3, 64 residual,
128 gate (two halves of 64) and 64 skip channels, 256 mu-law classes; random weights (speed
does not depend on them). For each batch size it reports samples per second (batch x time
steps / wall time), the compile time separately, warm-up excluded; the time is the best of
``--repeats`` runs, since other work on a shared machine only ever slows a run down.

Naive generation re-runs the whole network over the whole sequence at every step, so its cost
per step is the same at every position; it is timed over ``--naive-steps`` steps and
extrapolated to the full length (labelled so in the table).

    python benchmarks/wavenet_generate.py                # prints a markdown table
    python benchmarks/wavenet_generate.py --write        # and appends it to BENCHMARKS.md

Same-run comparison with r9y9/wavenet_vocoder (PyTorch): ``--peer PATH`` (a checkout of that
repository, never part of this one) and ``--peer-python`` (a Python with torch) time the
peer's incremental generation (``WaveNet.incremental_forward``, the same model: 30 layers,
64/128/64, kernel 3, 256 one-hot classes, no conditioning; batch B through a one-step
``test_inputs`` of B one-hot start samples) in a subprocess, ALTERNATING with jaxar's cached
sampler, batch by batch, for ``--rounds`` rounds; each side generates ``--length`` samples per
stream after a warm-up, one thread each (``torch.set_num_threads(1)``; run the whole command
under ``taskset -c 1`` so XLA gets one core too). The table gives each side's median and best
samples/s over the rounds and the ratio of the medians; the peer's command is printed with it.
The table header says how many CPUs the process could use.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import statistics
import subprocess
import sys
import time

import host
import jax
import jax.numpy as jnp
from jax import lax

import jaxar
from jaxar import sampling

__all__ = ["main"]

PAPER = dict(
    num_levels=256, residual_channels=64, gate_channels=128, skip_channels=64, kernel_size=3,
    num_cycles=3, layers_per_cycle=10,
)  # fmt: skip


def _timed(fn, *args, repeats: int) -> tuple[float, float]:
    """(compile seconds, best run seconds) of a jitted ``fn``; one warm-up run excluded."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(*args))  # warm-up
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        runs.append(time.perf_counter() - t0)
    return compile_s, min(runs), statistics.median(runs)


def _naive_prefix(model, params, key, batch: int, steps: int):
    """The first ``steps`` steps of naive sampling, exactly as ``sample(method="naive")``."""
    forward = lambda x: model.apply(params, x)
    step_fn = sampling.naive_step_fn(forward, model.distribution, model.event_shape)

    def body(x, step):
        logits, _ = step_fn((), x, step)
        values = model.distribution.sample_step(jax.random.fold_in(key, step), logits)
        return lax.dynamic_update_slice(x, values, (0, step)), None

    x0 = jnp.zeros((batch, model.num_dims), jnp.int32)
    return lax.scan(body, x0, jnp.arange(steps))[0]


def run(length: int, batches, naive_steps: int, repeats: int, skip_naive: bool) -> list[dict]:
    model = jaxar.create("wavenet", length=length, **PAPER)
    params = model.init(jax.random.key(0))
    key = jax.random.key(1)
    rows = []
    for b in batches:
        sample = lambda p, k, b=b: model._sample(
            p, k, None, num=b, method="cached", with_log_prob=False
        )
        c, best, med = _timed(sample, params, key, repeats=repeats)
        rows.append(dict(method="cached", batch=b, steps=length, compile=c, best=best, med=med))
        print(_row(rows[-1]), flush=True)
    if not skip_naive:
        for b in batches:
            f = lambda p, k, b=b: _naive_prefix(model, p, k, b, naive_steps)
            c, best, med = _timed(f, params, key, repeats=max(1, repeats // 2))
            rows.append(
                dict(method="naive", batch=b, steps=naive_steps, compile=c, best=best, med=med)
            )
            print(_row(rows[-1]), flush=True)
    return rows


def _row(r: dict) -> str:
    rate = r["batch"] * r["steps"] / r["best"]
    rate_med = r["batch"] * r["steps"] / r["med"]
    note = f"timed over {r['steps']} steps, extrapolated" if r["method"] == "naive" else "full run"
    return (
        f"| {r['method']} | {r['batch']} | {rate:,.0f} | {rate_med:,.0f} | "
        f"{1e6 * r['best'] / r['steps']:,.0f} | {r['compile']:.1f} | {note} |"
    )


def table(rows, length: int, repeats: int) -> str:
    dev = jax.devices()[0]
    head = [
        f"### WaveNet generation, paper-sized model (30 layers, 64/128/64 channels, 256 classes),"
        f" {length} samples",
        "",
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; JAX "
        f"{jax.__version__} on {dev.platform} ({dev.device_kind}); {host.processor()}, "
        f"{len(os.sched_getaffinity(0))} of its {os.cpu_count()} CPUs in this process's affinity. "
        f"Samples/s = batch x steps / wall time, best and median "
        f"of {repeats} runs after a warm-up; compile time separate.",
        "",
        "| method | batch | samples/s (best) | samples/s (median) | us per step | compile s "
        "| note |",
        "|---|---|---|---|---|---|---|",
    ]
    return "\n".join(head + [_row(r) for r in rows]) + "\n"


# The peer's side of the same-run comparison: run with the peer's Python, its checkout first on
# sys.path. Prints one line "PEER <seconds>" for ``length`` samples of ``batch`` streams.
PEER_DRIVER = """
import sys, time, torch
sys.path.insert(0, sys.argv[1])
from wavenet_vocoder import WaveNet
batch, length = int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(1)
torch.manual_seed(0)
m = WaveNet(out_channels=256, layers=30, stacks=3, residual_channels=64, gate_channels=128,
            skip_out_channels=64, kernel_size=3, dropout=0.0, cin_channels=-1, gin_channels=-1,
            scalar_input=False)
m.eval()
m.make_generation_fast_()
start = torch.zeros(batch, 256, 1)
start[:, 127] = 1
with torch.no_grad():
    m.incremental_forward(test_inputs=start, T=20, softmax=True, quantize=True)
    t0 = time.perf_counter()
    m.incremental_forward(test_inputs=start, T=length, softmax=True, quantize=True)
    print("PEER", time.perf_counter() - t0)
"""


def _peer_seconds(python: str, path: str, batch: int, length: int) -> float:
    out = subprocess.run(
        [python, "-c", PEER_DRIVER, path, str(batch), str(length)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return float(next(ln for ln in out.splitlines() if ln.startswith("PEER")).split()[1])


def compare(peer: str, python: str, length: int, batches, rounds: int) -> str:
    """Alternate jaxar's cached sampler and the peer's incremental generation; a markdown table."""
    if not os.path.isfile(os.path.join(peer, "wavenet_vocoder", "wavenet.py")):
        raise SystemExit(f"--peer must be a checkout of r9y9/wavenet_vocoder, got {peer!r}")
    model = jaxar.create("wavenet", length=length, **PAPER)
    params = model.init(jax.random.key(0))
    compiled = {}
    for b in batches:
        f = lambda p, k, b=b: model._sample(p, k, None, num=b, method="cached", with_log_prob=False)
        compiled[b] = jax.jit(f).lower(params, jax.random.key(1)).compile()
        jax.block_until_ready(compiled[b](params, jax.random.key(1)))  # warm-up
    times = {(side, b): [] for side in ("jaxar", "peer") for b in batches}
    for r in range(rounds):
        for b in batches:
            t0 = time.perf_counter()
            jax.block_until_ready(compiled[b](params, jax.random.key(2 + r)))
            times["jaxar", b].append(time.perf_counter() - t0)
            times["peer", b].append(_peer_seconds(python, peer, b, length))
            print(
                f"round {r + 1} batch {b}: jaxar {b * length / times['jaxar', b][-1]:,.0f}, "
                f"peer {b * length / times['peer', b][-1]:,.0f} samples/s",
                flush=True,
            )
    peer_cmd = f"{shlex.quote(python)} -c PEER_DRIVER {shlex.quote(peer)} BATCH {length}"
    lines = [
        "| batch | jaxar samples/s (median) | jaxar (best) | r9y9 samples/s (median) "
        "| r9y9 (best) | ratio of medians |",
        "|---|---|---|---|---|---|",
    ]
    for b in batches:
        rj = [b * length / t for t in times["jaxar", b]]
        rp = [b * length / t for t in times["peer", b]]
        lines.append(
            f"| {b} | {statistics.median(rj):,.0f} | {max(rj):,.0f} | "
            f"{statistics.median(rp):,.0f} | {max(rp):,.0f} | "
            f"{statistics.median(rj) / statistics.median(rp):.1f}x |"
        )
    return (
        f"Same run, alternating, {rounds} rounds of {length} samples per stream; "
        f"{host.processor()}, {len(os.sched_getaffinity(0))} CPU(s) in this process's "
        f"affinity, JAX {jax.__version__}. jaxar: `{shlex.join([sys.executable, *sys.argv])}`; "
        f"peer, per round and batch: `{peer_cmd}` (PEER_DRIVER in "
        f"benchmarks/wavenet_generate.py).\n\n" + "\n".join(lines) + "\n"
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=2000, help="samples generated per example")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--naive-steps", type=int, default=4, help="naive steps timed")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--write", action="store_true", help="append the table to BENCHMARKS.md")
    ap.add_argument("--peer", default="", help="a checkout of r9y9/wavenet_vocoder: compare")
    ap.add_argument("--peer-python", default="python", help="a Python that has torch")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (--peer)")
    args = ap.parse_args(argv)
    if args.peer:
        print(compare(args.peer, args.peer_python, args.length, args.batches, args.rounds))
        return
    rows = run(args.length, args.batches, args.naive_steps, args.repeats, args.skip_naive)
    out = table(rows, args.length, args.repeats)
    print()
    print(out)
    if args.write:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "BENCHMARKS.md")
        with open(path, "a") as f:
            f.write("\n" + out)
        print(f"appended to {os.path.normpath(path)}")


if __name__ == "__main__":
    main()
