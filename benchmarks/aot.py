"""Compile jaxar's accelerator programs for a GPU or TPU this machine does not have.

No accelerator is needed, only JAX's compilers for it, at jax's own version, next to jax (not
in jaxar's requirements): for GPUs the CUDA plugin, for TPUs libtpu::

    V=$(python -c 'import jax; print(jax.__version__)')
    pip install "jax-cuda12-plugin==$V" "jax-cuda12-pjrt==$V"   # --target h200 | h100
    pip install "jax[tpu]==$V"                                   # --target v5e | v6e
    python benchmarks/aot.py --target h200 [--only train,sampling,sampler,samplers,parallel]
        [--models wavenet,pixelcnn,gated_pixelcnn,pixelcnn_pp,transformer,...] [--out F]
        [--hparams '{"num_classes": 10}']

XLA compiles each program for compile-only devices: a GPU described by :data:`GPU_TARGETS`
(public data-sheet figures: SMs, memory, shared memory, clock), or a TPU topology libtpu knows
by name (:data:`TPU_TARGETS`). It runs the target's whole compiler (for a GPU: fusion, Triton
for the Pallas kernels and XLA's GEMM fusions, PTX, the cubin; for a TPU, libtpu's), buffer
assignment included. There is no device to time on, so nothing is autotuned and nothing runs:
the table says whether each program compiles for the target, how long that took on this CPU,
the device memory it needs (XLA's memory analysis: arguments + outputs + temporaries; donated
buffers counted once) against the target's, for train steps XLA's FLOP count (of the same
program lowered for the CPU: a compile-only executable has no cost analysis), and for
sampling steps on a GPU the kernels one step launches (the count of ``benchmarks/kernels.py``
on the compiled HLO; a TPU runs its program whole, without launches to count). It is the
check to run before a session on the accelerator (a program that fails here fails there) and
says nothing about speed.

* **train**: the suite's train steps (``benchmarks/suite.py``: PixelCNN++ at the paper's
  CIFAR-10 size, Gated PixelCNN, the Transformer) at batch 64, float32 and bfloat16 compute.
* **sampling**: one cached sampling step (``kernels.sampling_step``, its state donated): the
  paper WaveNet with the XLA step ("cached") and the one-kernel Pallas step ("pallas": Triton
  on a GPU, Mosaic on a TPU) at batch 1, 16, 64; the image models of the suite at 32x32x3, batch
  1 and 16.
* **sampler**: the whole jitted sampler (``model.sample``, one ``lax.scan``) of the paper
  WaveNet, both methods, float32 and bfloat16 compute, batch 1 and 64: the scan, its in-place
  buffer and the kernel inside its loop compile together. On a GPU, the kernels one step
  runs inside the loop (``kernels.loop_body_kernels``: with the weights as arguments, as a
  user runs it; the **sampling** step has them as constants, which XLA may fold).
* **samplers**: the whole cached sampler of every image model (:data:`IMAGE_SAMPLERS`, sizes of
  ``kernels.IMAGE_SIZES``, PixelCNN++ at the paper's CIFAR-10 size), float32 and bfloat16,
  batch 1 and 16, with ``--hparams`` (a JSON object, e.g. a conditioning: ``{"num_classes":
  10}``) on top: on a GPU the kernels a step runs in the loop and how many of them compute
  from the weights (and the conditioning) alone.
* **parallel**: the runner's data-parallel train step (``jaxar.parallel``'s mesh, the state
  replicated, the batch split) of PixelCNN++ at the paper size, 64 examples per device, over 8
  compile-only devices as one host and as two hosts of four: its collectives and its memory
  per device.

The plugins are found and started with ``JAX_PLATFORMS=cpu`` (this script sets it when unset),
so JAX's default device stays the CPU.
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # the CUDA plugin must not look for a driver
os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")  # libtpu: no TPU VM to ask

import argparse
import dataclasses
import datetime
import json
import re
import shlex
import sys
import time
from collections import Counter
from functools import partial

import host
import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import kernels
import suite

from jaxar import parallel, train
from jaxar.data.sources import DataInfo

__all__ = [
    "GPU_TARGETS",
    "TARGETS",
    "TPU_TARGETS",
    "GpuTarget",
    "TpuTarget",
    "compile_only_device",
    "compile_only_devices",
    "gpu_target_config",
    "main",
]

GiB = 1024**3


@dataclasses.dataclass(frozen=True)
class GpuTarget:
    """The figures XLA's GPU compiler reads from a device (``GpuTargetConfigProto``)."""

    name: str
    sm_major: int
    sm_minor: int
    sms: int
    memory_bytes: int
    bandwidth_bytes_s: float
    l2_bytes: int
    clock_ghz: float
    smem_per_sm: int
    smem_per_block_optin: int
    #: 8 devices: one host of eight, two hosts of four (the plugin's SLICESxHOSTSxDEVICES)
    eight: tuple = (("1 host x 8", "1x1x8"), ("2 hosts x 4", "1x2x4"))


@dataclasses.dataclass(frozen=True)
class TpuTarget:
    """A TPU generation libtpu compiles for by topology name ("v5e:1x1")."""

    generation: str
    memory_bytes: int  # HBM per chip
    #: 8 chips: one host of eight, two hosts of four (chips per host)
    eight: tuple = (("1 host x 8", (2, 4, 1)), ("2 hosts x 4", (2, 2, 1)))


#: Compile-only GPUs, from NVIDIA's data sheets (H200 SXM 141 GB; H100 SXM 80 GB).
GPU_TARGETS = {
    "h200": GpuTarget("NVIDIA H200", 9, 0, 132, 141 * 10**9, 4.8e12, 50 * 2**20, 1.98,
                      233472, 232448),
    "h100": GpuTarget("NVIDIA H100 80GB HBM3", 9, 0, 132, 80 * 10**9, 3.35e12, 50 * 2**20,
                      1.98, 233472, 232448),
}  # fmt: skip
#: Compile-only TPUs (one TensorCore per chip), HBM from Google's data sheets.
TPU_TARGETS = {
    "v5e": TpuTarget("v5e", 16 * 10**9),
    "v6e": TpuTarget("v6e", 32 * 10**9),
}
TARGETS = {**GPU_TARGETS, **TPU_TARGETS}


def gpu_target_config(t: GpuTarget) -> str:
    """``t`` as the text ``GpuTargetConfigProto`` the CUDA plugin's compile-only topology takes."""
    return f"""
gpu_device_info {{
  threads_per_block_limit: 1024
  threads_per_warp: 32
  shared_memory_per_block: 49152
  shared_memory_per_block_optin: {t.smem_per_block_optin}
  shared_memory_per_core: {t.smem_per_sm}
  threads_per_core_limit: 2048
  core_count: {t.sms}
  fpus_per_core: 128
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
  memory_bandwidth: {int(t.bandwidth_bytes_s)}
  l2_cache_size: {t.l2_bytes}
  clock_rate_ghz: {t.clock_ghz}
  device_memory_size: {t.memory_bytes}
  registers_per_core_limit: 65536
  registers_per_block_limit: 65536
  cuda_compute_capability {{ major: {t.sm_major} minor: {t.sm_minor} }}
}}
platform_name: "CUDA"
dnn_version_info {{ major: 9 minor: 10 }}
device_description_str: "{t.name}"
"""


def compile_only_devices(target: str, layout=None) -> list:
    """Compile-only devices of ``target`` (a key of :data:`TARGETS`): one, or the 8-device
    ``layout`` of its ``eight``. One clear error when the target's compiler is missing."""
    from jax.experimental import topologies

    t = TARGETS[target]
    if isinstance(t, GpuTarget):
        need = f"JAX's CUDA plugin (pip install jax-cuda12-plugin=={jax.__version__} "
        need += f"jax-cuda12-pjrt=={jax.__version__})"
        kw = dict(platform="cuda", topology=layout or "1x1x1", target_config=gpu_target_config(t))
        name = ""
    else:
        need = f"libtpu (pip install 'jax[tpu]=={jax.__version__}')"
        kw = dict(platform="tpu", chips_per_host_bounds=layout or (1, 1, 1))
        name = f"{t.generation}:{'2x4' if layout else '1x1'}"
    try:
        topo = topologies.get_topology_desc(name, **kw)
    except (NotImplementedError, RuntimeError, ValueError) as e:
        raise SystemExit(
            f"aot.py: expected {need} for --target {target}, got: " + str(e).splitlines()[0][:200]
        ) from None
    return list(topo.devices)


def compile_only_device(target: str):
    """One compile-only device of ``target`` (:func:`compile_only_devices`)."""
    return compile_only_devices(target)[0]


def _abstract(tree, sharding):
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), tree)


@dataclasses.dataclass
class Report:
    device: object
    memory: int  # the target's device memory, bytes
    rows: dict = dataclasses.field(default_factory=dict)

    def compile(self, section, cells, fn, args, donate=(), extra=None, flops=False, shardings=None):
        """Compile ``fn(*args)`` (abstract ``args``) for the device, or with ``shardings``
        (one per argument, and the outputs') over several; append its row."""
        sh = jax.sharding.SingleDeviceSharding(self.device)
        ins, outs = shardings or ((sh,) * len(args), sh)
        note, figures = "", []
        try:
            jitted = jax.jit(fn, in_shardings=ins, out_shardings=outs, donate_argnums=donate)
            t0 = time.perf_counter()
            placed = [_abstract(a, s) for a, s in zip(args, ins, strict=True)]
            lowered = jitted.trace(*placed).lower()
            compiled = lowered.compile()
            seconds = time.perf_counter() - t0
            mem = compiled.memory_analysis()
            need = (
                mem.argument_size_in_bytes
                + mem.output_size_in_bytes
                - mem.alias_size_in_bytes
                + mem.temp_size_in_bytes
            )
            figures = [f"{seconds:.1f}", f"{need / GiB:.2f} ({100 * need / self.memory:.1f}%)"]
            if flops:
                # A GPU executable compiled without a device has no cost analysis: XLA's count
                # of the same program lowered for the CPU. It counts a loop's body once and
                # every branch of a conditional, so only loop-free programs get this column.
                cpu = jax.jit(fn, donate_argnums=donate).trace(*_abstract(args, None)).lower()
                count = float((cpu.cost_analysis() or {}).get("flops", float("nan")))
                figures.append(f"{count / 1e9:,.1f}")
            figures += extra(compiled.as_text()) if extra else []
        except Exception as e:  # one failing program must not hide the others
            note = "FAILED: " + f"{type(e).__name__}: {e}".splitlines()[0][:200]
        ncol = HEADS[section][1].count("|") - 1
        row = [*cells, *figures]
        row += ["-"] * (ncol - 1 - len(row)) + [note.replace("|", "/")]
        line = "| " + " | ".join(str(c) for c in row) + " |"
        self.rows.setdefault(section, []).append(line)
        print(line, flush=True)


HEADS = {
    "train": (
        "Train steps (the suite's, batch 64)",
        "| model | dtype | compile s | device memory GiB (of target) | GFLOP/step | note |",
    ),
    "sampling": (
        "One cached sampling step (state donated)",
        "| model | method | batch | compile s | device memory GiB (of target) "
        "| kernels per step | by opcode | custom-call targets | note |",
    ),
    "sampler": (
        "Whole samplers (one lax.scan), paper WaveNet, 2,000 samples per stream",
        "| method | dtype | batch | compile s | device memory GiB (of target) "
        "| kernels per step in the loop (GPU) | of them loop-invariant, on floats "
        "| Pallas kernel's operands, by memory (TPU) "
        "| note |",
    ),
    "samplers": (
        "Whole samplers of the image models (one lax.scan over every sub-pixel; kernels.py's "
        "32x32x3 sizes, PixelCNN++ at the paper size)",
        "| model | dtype | batch | compile s | device memory GiB (of target) "
        "| kernels per step in the loop (GPU) | of them loop-invariant, on floats "
        "| note |",
    ),
    "parallel": (
        "The runner's data-parallel train step (jaxar.parallel mesh, batch 64 per device, "
        "PixelCNN++ paper size) over 8 devices",
        "| devices | dtype | compile s | device memory GiB per "
        "device (of target) | collectives | note |",
    ),
}


#: Every model some part compiles (``--models`` picks a subset).
MODELS = (
    "wavenet", "pixelcnn", "gated_pixelcnn", "pixelcnn_pp", "transformer", "row_lstm",
    "diagonal_bilstm",
)  # fmt: skip


def _kernel_cells(hlo: str) -> list:
    c = kernels.count_kernels(hlo)
    top = sorted(c.by_opcode.items(), key=lambda kv: -kv[1])
    calls = Counter(re.findall(r'custom_call_target="([^"]+)"', hlo))
    return [
        kernels.launches_cell(c),
        ", ".join(f"{k} {v}" for k, v in top),
        ", ".join(f"{k} {v}" for k, v in calls.most_common()) or "-",
    ]


def _placement_cells(hlo: str) -> list:
    """Where XLA placed the operands of each Mosaic (Pallas TPU) call of ``hlo``: memory space
    1 (``S(1)`` in a layout) is VMEM, no space HBM; the HBM operands are named by shape. On
    a TPU, an operand XLA keeps in VMEM across a loop's iterations is not copied in per call."""
    shapes = dict(re.findall(r"^\s*(?:ROOT )?(%[\w.\-]+) = (\S+)", hlo, re.M))
    cells = []
    for operands in re.findall(r"custom-call\(([^)]*)\)[^\n]*tpu_custom_call", hlo):
        names = re.sub(r"/\*index=\d+\*/", "", operands).split(",")
        placed = [shapes.get(n.strip(), "?") for n in names if n.strip()]
        hbm = [a.split("{")[0] for a in placed if "S(1)" not in a]
        cell = f"{len(placed) - len(hbm)} in VMEM, {len(hbm)} in HBM"
        cells.append(cell + (f" ({', '.join(hbm)})" if hbm else ""))
    return ["; ".join(sorted(set(cells))) or "-"]


def run_train(rep: Report, models):
    for name in [n for n in suite.TRAIN_CONFIGS if n in models]:
        for dtype in ("float32", "bfloat16"):
            step, state, data = _train_program(name, dtype, 64)
            rep.compile("train", [name, dtype], step, (state, data), donate=(0,), flops=True)


_COLLECTIVE = re.compile(
    r"\s((?:all-reduce|all-gather|all-to-all|reduce-scatter|collective-permute)"
    r"(?:-start|-done)?)\(([^)]*)\)"
)


def _collective_cells(hlo: str) -> list:
    """The collectives of ``hlo`` by opcode, with the arrays they carry where one carries
    several (XLA's TPU backend combines a step's all-reduces into one of a tuple)."""
    ops, arrays = Counter(), Counter()
    for op, operands in _COLLECTIVE.findall(hlo):
        ops[op] += 1
        arrays[op] += operands.count("%")
    cells = [
        f"{k} {v}" + (f" ({arrays[k]} arrays)" if arrays[k] > v else "") for k, v in ops.items()
    ]
    return [", ".join(cells) or "none"]


def _train_program(name: str, dtype: str, batch: int):
    """The suite's train step of ``name`` as the runner builds it: ``(step, state, batch)``,
    state and batch abstract."""
    config, shape = suite.Suite()._train_config(name)
    config.compute_dtype = dtype
    num_classes = 10 if config.data.conditional else 0
    model = train.build_model(config, DataInfo(config.data.name, tuple(shape), 256, num_classes))
    tx, _ = train.make_optimizer(config)
    ema = config.ema_decay > 0
    state = jax.eval_shape(lambda: train.create_train_state(model, tx, jax.random.key(0), ema))
    data = {
        "x": jax.ShapeDtypeStruct((batch, *shape), jnp.int32),
        "label": jax.ShapeDtypeStruct((batch,), jnp.int32),
    }
    return train.make_train_step(model, tx, ema_decay=config.ema_decay), state, data


def run_parallel(rep: Report, target: str, models):
    if "pixelcnn_pp" not in models:
        return
    for label, layout in TARGETS[target].eight:
        mesh = parallel.make_mesh(compile_only_devices(target, layout))
        repl, split = parallel.replicated(mesh), parallel.batch_sharding(mesh)
        for dtype in ("float32", "bfloat16"):
            step, state, data = _train_program("pixelcnn_pp", dtype, 64 * mesh.size)
            rep.compile(
                "parallel", [label, dtype], step, (state, data), donate=(0,),
                extra=_collective_cells, shardings=((repl, split), (repl, repl)),
            )  # fmt: skip


def run_sampling(rep: Report, target: str, models):
    gpu = target in GPU_TARGETS
    methods = ("cached", "pallas")
    # A TPU runs a compiled program whole, with no launch per fusion: nothing to count there.
    count = _kernel_cells if gpu else (lambda hlo: ["n/a (TPU)", "-", "-"])
    todo = [("wavenet", m, b) for m in methods for b in (1, 16, 64)]
    todo += [(n, "cached", b) for n in ("pixelcnn", "gated_pixelcnn") for b in (1, 16)]
    todo += [("pixelcnn_pp", "cached", b) for b in (1, 16)]
    todo += [("transformer", "cached", b) for b in (1, 16)]
    built = {}
    for name, method, b in [t for t in todo if t[0] in models]:
        if name not in built:
            hp = suite.PIXELCNN_PP_PAPER if name == "pixelcnn_pp" else None
            model = kernels.build(name, hparams=hp)
            built[name] = (model, model.init(jax.random.key(0)))
        model, params = built[name]
        step, args = kernels.sampling_step(model, params, b, method)
        rep.compile("sampling", [name, method, b], step, args, donate=(0, 1), extra=count)


def _loop_cells(hlo: str, steps: int = kernels.WAVENET_PAPER["length"], gpu: bool = True) -> list:
    """The kernels one step of a compiled ``steps``-step sampler (the paper WaveNet's 2,000
    by default) runs in its loop (a GPU's launches; "n/a (TPU)" else), and how many of its
    operations compute floats from the weights alone (the same at every step)."""
    fixed = kernels.float_invariants(kernels.loop_invariant_kernels(hlo, steps))
    if gpu:
        return [kernels.launches_cell(kernels.loop_body_kernels(hlo, steps)), len(fixed)]
    # libtpu stages weights into on-chip memory with asynchronous copies (and slices).
    staged = sum(op in _ASYNC_MOVES for op, _ in fixed)
    return ["n/a (TPU)", f"{len(fixed)} ({staged} async copies)" if staged else len(fixed)]


_ASYNC_MOVES = frozenset({"copy-start", "copy-done", "slice-start", "slice-done"})


def run_sampler(rep: Report, target: str):
    gpu = target in GPU_TARGETS
    loop = partial(_loop_cells, gpu=gpu)
    key = jax.eval_shape(lambda: jax.random.key(0))
    for dtype in ("float32", "bfloat16"):
        model = kernels.build("wavenet", hparams={"dtype": dtype})
        params = jax.eval_shape(model.init, jax.random.key(0))
        for method in ("cached", "pallas"):
            for b in (1, 64):

                def sample(params, key, model=model, method=method, b=b):
                    return model.sample(params, key, b, None, method)

                rep.compile(
                    "sampler",
                    [method, dtype, b],
                    sample,
                    (params, key),
                    extra=lambda hlo: loop(hlo) + _placement_cells(hlo),
                )


#: The image models whose whole cached samplers "samplers" compiles.
IMAGE_SAMPLERS = (
    "pixelcnn", "gated_pixelcnn", "row_lstm", "diagonal_bilstm", "transformer", "pixelcnn_pp",
)  # fmt: skip


def run_samplers(rep: Report, target: str, models, hparams: dict):
    gpu = target in GPU_TARGETS
    key = jax.eval_shape(lambda: jax.random.key(0))
    for name in [n for n in IMAGE_SAMPLERS if n in models]:
        for dtype in ("float32", "bfloat16"):
            hp = suite.PIXELCNN_PP_PAPER if name == "pixelcnn_pp" else {}
            model = kernels.build(name, hparams={**hp, **hparams, "dtype": dtype})
            params = jax.eval_shape(model.init, jax.random.key(0))
            steps = model.num_dims // model.distribution.dims_per_step
            loop = partial(_loop_cells, steps=steps, gpu=gpu)
            for b in (1, 16):

                def sample(params, key, model=model, b=b):
                    return model.sample(params, key, b, model.dummy_cond(b), "cached")

                rep.compile("samplers", [name, dtype, b], sample, (params, key), extra=loop)


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="h200", help=f"one of {sorted(TARGETS)}")
    ap.add_argument("--only", default=",".join(HEADS))
    ap.add_argument("--models", default=",".join(MODELS), help="a subset of the models")
    ap.add_argument("--out", help="append the table to this markdown file")
    ap.add_argument("--hparams", default="{}", help="samplers: a JSON object of hyperparameters")
    args = ap.parse_args(argv)
    parts = [p for p in args.only.split(",") if p]
    models = [m for m in args.models.split(",") if m]
    if args.target not in TARGETS or not parts or set(parts) - set(HEADS):
        raise SystemExit(
            f"aot.py: expected --target in {sorted(TARGETS)} and --only a comma list of "
            f"{list(HEADS)}, got --target {args.target!r} --only {args.only!r}"
        )
    if not models or set(models) - set(MODELS):
        raise SystemExit(
            f"aot.py: expected --models a comma list of {list(MODELS)}, got {args.models!r}"
        )
    try:
        hparams = json.loads(args.hparams)
    except json.JSONDecodeError:
        hparams = None
    if not isinstance(hparams, dict):
        raise SystemExit(
            f"aot.py: expected --hparams a JSON object such as '{{\"num_classes\": 10}}', "
            f"got {args.hparams!r}"
        )
    for name in [n for n in IMAGE_SAMPLERS if n in models and "samplers" in parts]:
        try:
            kernels.build(name, hparams=hparams)
        except (TypeError, ValueError) as e:
            raise SystemExit(f"aot.py: expected --hparams that {name} takes, got {e}") from None
    device = compile_only_device(args.target)
    rep = Report(device, TARGETS[args.target].memory_bytes)
    runners = {
        "train": lambda rep: run_train(rep, models),
        "sampling": lambda rep: run_sampling(rep, args.target, models),
        "sampler": lambda rep: run_sampler(rep, args.target) if "wavenet" in models else None,
        "samplers": lambda rep: run_samplers(rep, args.target, models, hparams),
        "parallel": lambda rep: run_parallel(rep, args.target, models),
    }
    for part in parts:
        title, head = HEADS[part]
        print(f"\n{title}:\n\n{head}", flush=True)
        runners[part](rep)
    command = "python benchmarks/aot.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    lines = [
        f"### Compiled for {device.device_kind} on this CPU, not run "
        f"({datetime.date.today().isoformat()})",
        "",
        f"Commit {suite._commit()}, jax {jax.__version__}, host {host.processor()}. "
        f"Command: `{command.strip()}`.",
    ]
    for part in parts:
        title, head = HEADS[part]
        ncol = head.count("|") - 1
        lines += ["", f"{title}:", "", head, "|" + "---|" * ncol, *rep.rows.get(part, [])]
    text = "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n" + text)
    return text


if __name__ == "__main__":
    print(main())
