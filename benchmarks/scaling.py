"""Data-parallel scaling: train steps/s of one config on 1, 2, 4, ... devices.

    python benchmarks/scaling.py --devices 1,2,4,8 [--config experiments/configs/quickstart.py]
    python benchmarks/scaling.py --fake-cpu --devices 1,2,4,8 --write   # XLA's fake CPU devices

Each device count runs in its own process (the device count is fixed when JAX starts; with
``--fake-cpu`` it is set through ``--xla_force_host_platform_device_count``). The global batch
is fixed, so the per-device batch shrinks as devices are added (strong scaling). Steps are the
runner's jitted data-parallel train step; compile time is excluded. ``--write`` appends the
table to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

WORKER = r"""
import json, sys, time
import jax, numpy as np
from jaxar import config as jc, parallel, train
from jaxar.data.pipeline import train_batches
cfg = jc.load(sys.argv[1])
cfg.batch_size = int(sys.argv[2])
steps = int(sys.argv[3])
mesh = parallel.make_mesh()
train_src, _, info = train.load_data(cfg)
model = train.build_model(cfg, info)
tx, _ = train.make_optimizer(cfg)
repl = parallel.replicated(mesh)
state = jax.device_put(train.create_train_state(model, tx, jax.random.key(0), False), repl)
step = jax.jit(train.make_train_step(model, tx), in_shardings=(repl, parallel.batch_sharding(mesh)),
               out_shardings=(repl, repl), donate_argnums=0)
it = train_batches(train_src, batch_size=cfg.batch_size, seed=0)
batches = [parallel.global_batch(next(it), mesh) for _ in range(4)]
t0 = time.perf_counter(); state, m = step(state, batches[0]); jax.block_until_ready(m)
compile_s = time.perf_counter() - t0
t0 = time.perf_counter()
for k in range(steps):
    state, m = step(state, batches[k % 4])
jax.block_until_ready(m)
dt = time.perf_counter() - t0
print(json.dumps(dict(devices=mesh.size, kind=jax.devices()[0].device_kind,
                      steps_per_s=steps / dt, compile_s=compile_s)))
"""


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="experiments/configs/quickstart.py")
    p.add_argument("--devices", default="1,2,4,8")
    p.add_argument("--batch", type=int, default=64, help="global batch")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--fake-cpu", action="store_true", help="fake CPU devices")
    p.add_argument("--write", action="store_true")
    args = p.parse_args()
    rows = []
    for n in (int(v) for v in args.devices.split(",")):
        env = dict(os.environ)
        if args.fake_cpu:
            env["JAX_PLATFORMS"] = "cpu"
            env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n}"
        else:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, range(n)))
        out = subprocess.run(
            [sys.executable, "-c", WORKER, args.config, str(args.batch), str(args.steps)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    base = rows[0]["steps_per_s"]
    lines = [
        f"### Data-parallel scaling, {time.strftime('%Y-%m-%d')}: {rows[0]['kind']}"
        + (" (fake CPU devices)" if args.fake_cpu else ""),
        "",
        f"Command: `python benchmarks/scaling.py --config {args.config} --devices "
        f"{args.devices} --batch {args.batch} --steps {args.steps}"
        + (" --fake-cpu" if args.fake_cpu else "")
        + f"`; {os.cpu_count()} CPU cores. "
        "Global batch fixed (strong scaling), compile excluded.",
        "",
        "| devices | per-device batch | steps/s | images/s | speed-up | compile s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['devices']} | {args.batch // r['devices']} | {r['steps_per_s']:.2f} | "
            f"{r['steps_per_s'] * args.batch:.0f} | {r['steps_per_s'] / base:.2f}x | "
            f"{r['compile_s']:.1f} |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    if args.write:
        with open(os.path.join(os.path.dirname(__file__), "..", "BENCHMARKS.md"), "a") as f:
            f.write("\n" + table)


if __name__ == "__main__":
    main()
