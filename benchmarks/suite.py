"""The one-call benchmark suite: train steps, sampling, WaveNet generation and kernel counts.

    python benchmarks/suite.py --write          # on whatever accelerator JAX finds; < 8 min
    python benchmarks/suite.py --tiny           # tiny models on CPU in seconds (a test runs it)

Measured, each on the default device (``jax.devices()[0]``; one device, no data parallelism):

* **train**: the runner's jitted train step (:func:`jaxar.train.make_train_step`: value_and_grad,
  optax update, EMA), state donated, on a fixed device-resident random batch, for PixelCNN++ at
  the paper's CIFAR-10 size (``experiments/configs/pixelcnn_pp_cifar10.py``: 5 resnets per
  stage, 160 filters, 10 logistics, dropout 0.5), Gated PixelCNN (``gated_pixelcnn_cifar10.py``)
  and the Transformer (``transformer_fashion_mnist.py``, 28x28x1), batch 64, float32 and
  bfloat16 compute. Each of ``--steps`` steps is timed alone (``block_until_ready``) after the
  compile and one untimed step: median and min ms per step, images/s at the median, the FLOPs
  XLA counts for the compiled step (``compiled.cost_analysis()["flops"]``), the TFLOP/s they
  make at the median, and that as a fraction of the device's dense peak (:data:`PEAK_TFLOPS`;
  float32 against the TF32 tensor-core peak on NVIDIA GPUs, since JAX's default matmul
  precision uses TF32 there; "n/a" for a device not in the table, e.g. a CPU).
* **sampling**: the cached sampler (one ``lax.scan``, jitted), wall time per call (median and
  min of ``--repeats`` calls after the compiling one): 256 PixelCNN++ CIFAR images at the paper
  size, and the other image models at 32x32x3 (sizes :data:`IMAGE_SIZES`) at batch 1, 16, 256.
* **wavenet**: the paper-sized WaveNet (30 layers, 64/128/64, kernel 3, mu-law 256) generating
  ``--wavenet-length`` samples per stream with the XLA step ("cached") and the one-kernel
  Pallas step ("pallas"), batch 1, 16, 64: samples/s (all streams) and the real-time factor of
  one stream at 16 kHz (steps/s / 16,000; > 1 is faster than real time), and for "pallas" the
  fraction of its samples equal to the XLA step's from the same key (1 on CPU; on an
  accelerator the two steps round differently: both multiply float32 at the platform's
  default precision, TF32 on recent NVIDIA GPUs, but not in the same order or fusions).
* **kernels**: kernels per cached sampling step counted in the compiled HLO
  (``benchmarks/kernels.py`` says exactly what is counted).

Compile times are the first call's wall time (trace + compile + one run); the persistent
compilation cache (:mod:`jaxar.compilation`) is on unless ``--compilation-cache off``, so a
second run of the suite reports cache-hit compile times (the header says which directory).
Every item stops the suite from starting new work after ``--budget`` seconds (default 450):
the rows not run are listed as skipped, never silently dropped. An item that fails is a row
with its error. The header records the device, jax version, commit, date, host CPU, the CPU
cores in this process's affinity and the command.

``--tiny`` runs one item of each part (the Transformer's train step, PixelCNN sampling, WaveNet
with both methods, WaveNet's kernel count) with every model at its tiny test size
(``jaxar.models.create_tiny``'s widths), batch 2, short sequences and 2 timed repeats: it
checks that the suite runs, not speed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import shlex
import statistics
import subprocess
import sys
import time
from typing import ClassVar

import host
import jax
import jax.numpy as jnp
import numpy as np

import jaxar
from jaxar import compilation, models, train
from jaxar import config as jaxar_config
from jaxar.data.sources import DataInfo
from jaxar.models import registry

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kernels

__all__ = ["IMAGE_SIZES", "PEAK_TFLOPS", "Suite", "main", "peak_tflops"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "experiments", "configs")
TRAIN_CONFIGS = {
    "pixelcnn_pp": ("pixelcnn_pp_cifar10.py", (32, 32, 3)),
    "gated_pixelcnn": ("gated_pixelcnn_cifar10.py", (32, 32, 3)),
    "transformer": ("transformer_fashion_mnist.py", (28, 28, 1)),
}
PIXELCNN_PP_PAPER = dict(num_resnets=5, features=160, num_mixtures=10, dropout=0.5)
IMAGE_SIZES = {
    "pixelcnn": dict(features=96, num_blocks=7, output_features=192),
    "gated_pixelcnn": dict(features=48, num_layers=7, output_features=96),
    "row_lstm": dict(hidden=48, num_layers=3, output_features=96),
    "diagonal_bilstm": dict(hidden=48, num_layers=3, output_features=96),
    "transformer": dict(num_layers=4, num_heads=4, embed_dim=64),
}
#: Dense peak TFLOP/s per chip (float32 as XLA runs it, bfloat16), vendor data sheets; matched
#: by substring of ``device_kind``. NVIDIA float32: TF32 tensor cores (JAX's default precision).
PEAK_TFLOPS = {
    "H200": (494.0, 989.0),
    "H100": (494.0, 989.0),
    "A100": (156.0, 312.0),
    "TPU v4": (275.0, 275.0),
    "TPU v5 lite": (197.0, 197.0),
    "TPU v5p": (459.0, 459.0),
    "TPU v6": (918.0, 918.0),
}
WAVENET_RATE = 16000


def peak_tflops(device_kind: str, dtype: str) -> float | None:
    """The dense peak of :data:`PEAK_TFLOPS` for ``device_kind`` and ``dtype``; None if unknown."""
    for key, (f32, bf16) in PEAK_TFLOPS.items():
        if key.lower() in device_kind.lower():
            return bf16 if dtype == "bfloat16" else f32
    return None


def _commit() -> str:
    """The checkout's commit (``+uncommitted`` with changes to tracked files); ``JAXAR_COMMIT``
    when set, for a copy of the tree without its git history (a lent machine's)."""
    if os.environ.get("JAXAR_COMMIT"):
        return os.environ["JAXAR_COMMIT"]

    def git(*a):
        try:
            return subprocess.run(
                ["git", *a], cwd=ROOT, capture_output=True, text=True, check=False
            ).stdout.strip()
        except OSError:  # no git on the machine
            return ""

    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    return sha + ("+uncommitted" if git("status", "--porcelain", "--untracked-files=no") else "")


def _wall(fn, repeats: int) -> tuple[float, list[float]]:
    """(first call's seconds, seconds of each of ``repeats`` later calls)."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        runs.append(time.perf_counter() - t0)
    return first, runs


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float((cost or {}).get("flops", float("nan")))


@dataclasses.dataclass
class Suite:
    tiny: bool = False
    steps: int = 10
    repeats: int = 3
    budget_s: float = 450.0
    wavenet_length: int = 2000
    only: tuple[str, ...] = ("train", "sampling", "wavenet", "kernels")

    def __post_init__(self):
        self.t0 = time.perf_counter()
        self.device = jax.devices()[0]
        self.sections: dict[str, list[str]] = {}

    # ------------------------------------------------------------------ plumbing
    def _over_budget(self) -> bool:
        return time.perf_counter() - self.t0 > self.budget_s

    def _row(self, section: str, cells, what: str, fn):
        """Run ``fn`` -> cells; a skipped or failed item still gets its row (with ``-``)."""
        ncol = self.HEADS[section][1].count("|") - 1
        note = ""
        if self._over_budget():
            note = f"skipped: the {self.budget_s:.0f} s budget was spent"
        else:
            try:
                cells = [*cells, *fn()]
            except Exception as e:  # one failing item must not lose the others' figures
                note = "FAILED: " + f"{type(e).__name__}: {e}".splitlines()[0][:160]
        row = [*cells, *["-"] * (ncol - 1 - len(cells)), note.replace("|", "/")]
        line = "| " + " | ".join(str(c) for c in row) + " |"
        self.sections.setdefault(section, []).append(line)
        print(f"[{time.perf_counter() - self.t0:6.1f} s] {what}: {line}", flush=True)

    def _image_model(self, name: str, shape, hparams: dict):
        if self.tiny:
            return models.create_tiny(name, "rgb", num_levels=256)
        return jaxar.create(name, image_shape=tuple(shape), num_levels=256, **hparams)

    # ------------------------------------------------------------------ train
    def _train_config(self, name: str):
        path, shape = TRAIN_CONFIGS[name]
        config = jaxar_config.load(os.path.join(CONFIGS, path))
        if self.tiny:
            shape = registry.tiny_shape(name, "rgb")
            config.model = type(config.model)(registry.tiny_spec(name).hparams_for(shape))
            config.batch_size = 2
        else:
            config.batch_size = 64
        return config, shape

    def _train(self, name: str, dtype: str):
        config, shape = self._train_config(name)
        config.compute_dtype = dtype
        num_classes = 10 if config.data.conditional else 0
        model = train.build_model(
            config, DataInfo(config.data.name, tuple(shape), 256, num_classes)
        )
        tx, _ = train.make_optimizer(config)
        state = train.create_train_state(model, tx, jax.random.key(0), config.ema_decay > 0)
        b = int(config.batch_size)
        kx, kc = jax.random.split(jax.random.key(1))
        batch = {
            "x": jax.random.randint(kx, (b, *shape), 0, 256, jnp.int32),
            "label": jax.random.randint(kc, (b,), 0, max(num_classes, 1), jnp.int32),
        }
        step = jax.jit(
            train.make_train_step(model, tx, ema_decay=config.ema_decay), donate_argnums=0
        )
        t0 = time.perf_counter()
        compiled = step.lower(state, batch).compile()
        state, _ = compiled(state, batch)
        jax.block_until_ready(state)
        compile_s = time.perf_counter() - t0
        flops = _flops(compiled)
        times = []
        for _ in range(self.steps):
            t0 = time.perf_counter()
            state, _ = compiled(state, batch)
            jax.block_until_ready(state)
            times.append(time.perf_counter() - t0)
        med, low = statistics.median(times), min(times)
        tflops = flops / med / 1e12
        peak = peak_tflops(self.device.device_kind, dtype)
        frac = f"{100 * tflops / peak:.1f}%" if peak and np.isfinite(tflops) else "n/a"
        params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
        return [
            f"{params / 1e6:.2f}M", f"{1e3 * med:.1f}", f"{1e3 * low:.1f}", f"{b / med:,.0f}",
            f"{flops / 1e9:.2f}", f"{tflops:.2f}", frac, f"{compile_s:.1f}",
        ]  # fmt: skip

    def run_train(self):
        for name in ("transformer",) if self.tiny else TRAIN_CONFIGS:
            for dtype in ("float32",) if self.tiny else ("float32", "bfloat16"):
                config, shape = self._train_config(name)
                cells = [name, "x".join(map(str, shape)), config.batch_size, dtype]
                self._row("train", cells, f"train {name} {dtype}", lambda: self._train(name, dtype))

    # ------------------------------------------------------------------ sampling
    def _sample(self, model, batch: int, method: str = "cached", with_samples: bool = False):
        params = model.init(jax.random.key(0))
        cond = model.dummy_cond(batch)
        key = jax.random.key(1)
        out = []

        def draw():
            out[:] = [model.sample(params, key, batch, cond, method)]
            return out[0]

        first, runs = _wall(draw, self.repeats)
        return (first, runs, np.asarray(out[0])) if with_samples else (first, runs)

    def run_sampling(self):
        def pp():
            first, runs = self._sample(
                self._image_model("pixelcnn_pp", shape, PIXELCNN_PP_PAPER), b
            )
            med = statistics.median(runs)
            return [f"{med:.3f}", f"{min(runs):.3f}", f"{b / med:,.1f}", f"{first:.1f}"]

        shape, b = (32, 32, 3), 256
        if not self.tiny:
            self._row("sampling", ["pixelcnn_pp (paper)", b], "sample pixelcnn_pp", pp)
        for name, hp in IMAGE_SIZES.items() if not self.tiny else [("pixelcnn", {})]:
            for b in (2,) if self.tiny else (1, 16, 256):

                def other(name=name, hp=hp, b=b):
                    first, runs = self._sample(self._image_model(name, shape, hp), b)
                    med = statistics.median(runs)
                    return [f"{med:.3f}", f"{min(runs):.3f}", f"{b / med:,.1f}", f"{first:.1f}"]

                self._row("sampling", [name, b], f"sample {name} {b}", other)

    # ------------------------------------------------------------------ wavenet
    def _wavenet(self):
        if self.tiny:
            return models.create_tiny("wavenet", "grey", num_levels=256, length=16)
        return kernels.build("wavenet", hparams={"length": self.wavenet_length})

    def run_wavenet(self):
        model = self._wavenet()
        steps = model.event_shape[0]
        cached = {}  # batch -> the cached sampler's samples, which the other methods should draw
        for method in ("cached", "pallas"):
            for b in (2,) if self.tiny else (1, 16, 64):

                def gen(method=method, b=b):
                    first, runs, x = self._sample(model, b, method, with_samples=True)
                    same = "-"
                    if method == "cached":
                        cached[b] = x
                    elif b in cached:
                        same = f"{np.mean(x == cached[b]):.4f}"
                    med = statistics.median(runs)
                    rate, best = b * steps / med, b * steps / min(runs)
                    return [
                        f"{rate:,.0f}", f"{best:,.0f}", f"{1e6 * med / steps:,.1f}",
                        f"{steps / med / WAVENET_RATE:.2f}x", same, f"{first:.1f}",
                    ]  # fmt: skip

                self._row("wavenet", [method, b], f"wavenet {method} {b}", gen)

    # ------------------------------------------------------------------ kernels
    def run_kernels(self):
        todo = [("wavenet", "cached"), ("wavenet", "pallas")]
        todo += [(n, "cached") for n in ("pixelcnn", "gated_pixelcnn", "pixelcnn_pp")]
        todo = todo[:1] if self.tiny else todo
        for name, method in todo:

            def count(name=name, method=method):
                if name == "wavenet":
                    model = self._wavenet()
                else:
                    hp = PIXELCNN_PP_PAPER if name == "pixelcnn_pp" else IMAGE_SIZES[name]
                    model = self._image_model(name, (32, 32, 3), hp)
                c = kernels.sampler_kernels(model, model.init(jax.random.key(0)), 1, method)
                top = sorted(c.by_opcode.items(), key=lambda kv: -kv[1])
                return [c.kernels, kernels.launches_cell(c), ", ".join(f"{k} {v}" for k, v in top)]

            self._row("kernels", [name, method, 1], f"kernels {name} {method}", count)

    # ------------------------------------------------------------------ report
    HEADS: ClassVar[dict[str, tuple[str, str]]] = {
        "train": (
            "Train step (runner's step, state donated, fixed random batch)",
            "| model | input | batch | dtype | params | ms/step (median) | ms/step (min) "
            "| images/s | GFLOP/step (XLA) | TFLOP/s | of peak | compile s | note |",
        ),
        "sampling": (
            "Cached sampling, 32x32x3, 256 levels (seconds per call for the whole batch)",
            "| model | batch | s (median) | s (min) | images/s | compile+1st s | note |",
        ),
        "wavenet": (
            f"WaveNet generation, paper size (real-time factor of one stream at "
            f"{WAVENET_RATE // 1000} kHz)",
            "| method | batch | samples/s (median) | samples/s (best) | us/step | real-time "
            "| same samples as cached | compile+1st s | note |",
        ),
        "kernels": (
            "Kernels per cached sampling step (compiled HLO, benchmarks/kernels.py)",
            "| model | method | batch | kernels | launches per step | by opcode | note |",
        ),
    }

    def report(self, command: str = "", cache: str | None = None) -> str:
        d = self.device
        when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        mode = " (--tiny: tiny models, not a speed figure)" if self.tiny else ""
        lines = [
            f"### Benchmark suite{mode}: {d.device_kind} ({d.platform}), {when}",
            "",
            f"Device: {d.device_kind} ({d.platform}, {jax.device_count()} device(s), one used); "
            f"jax {jax.__version__}; commit {_commit()}; host {host.processor()}, "
            f"{len(os.sched_getaffinity(0))} of {os.cpu_count()} CPU cores in this process's "
            f"affinity; compilation cache: {cache or 'off'}; {self.steps} timed train steps, "
            f"{self.repeats} timed sampling calls (median and min); suite wall time "
            f"{time.perf_counter() - self.t0:.0f} s. Command: `{command}`",
        ]
        for part in self.only:
            title, head = self.HEADS[part]
            ncol = head.count("|") - 1
            lines += ["", f"{title}:", "", head, "|" + "---|" * ncol]
            lines += self.sections.get(part, [])
        return "\n".join(lines) + "\n"


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny models: a CPU smoke run")
    ap.add_argument("--only", default="train,sampling,wavenet,kernels")
    ap.add_argument("--steps", type=int, default=0, help="timed train steps (10; tiny 2)")
    ap.add_argument("--repeats", type=int, default=0, help="timed calls per item (3; tiny 2)")
    ap.add_argument("--budget", type=float, default=450.0, help="seconds before skipping")
    ap.add_argument("--wavenet-length", type=int, default=2000)
    ap.add_argument("--compilation-cache", default="", help="a directory, or off")
    ap.add_argument("--write", action="store_true", help="append the tables to BENCHMARKS.md")
    ap.add_argument("--out", default="", help="also write the tables to this file")
    args = ap.parse_args(argv)
    parts = tuple(p for p in args.only.split(",") if p)
    unknown = sorted(set(parts) - set(Suite.HEADS))
    if unknown:
        raise SystemExit(f"--only takes {sorted(Suite.HEADS)}, got {unknown}")
    cache = compilation.enable_compilation_cache(args.compilation_cache or None)
    suite = Suite(
        tiny=args.tiny,
        steps=args.steps or (2 if args.tiny else 10),
        repeats=args.repeats or (2 if args.tiny else 3),
        budget_s=args.budget,
        wavenet_length=args.wavenet_length,
        only=parts,
    )
    for part in parts:
        getattr(suite, f"run_{part}")()
    argv = sys.argv[1:] if argv is None else argv
    text = suite.report("python benchmarks/suite.py " + shlex.join(argv), cache)
    print("\n" + text)
    for path in [args.out] + ([os.path.join(ROOT, "BENCHMARKS.md")] if args.write else []):
        if path:
            with open(path, "a") as f:
                f.write("\n" + text)
    return text


if __name__ == "__main__":
    main()
