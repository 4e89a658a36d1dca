"""Accelerator readiness: the compilation cache, device prefetch, the kernel counter and the
benchmark suite's --tiny mode (which must keep running on CPU so the suite cannot rot)."""

import os
import re
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxar import compilation, models, parallel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import kernels  # noqa: E402

# ------------------------------------------------------------------ compilation cache


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv(compilation.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compilation.cache_dir() == str(tmp_path / "jaxar" / "xla")
    monkeypatch.setenv(compilation.ENV_VAR, str(tmp_path / "env"))
    assert compilation.cache_dir() == str(tmp_path / "env")
    assert compilation.cache_dir(str(tmp_path / "arg")) == str(tmp_path / "arg")
    for off in ("off", "OFF", "0", "false"):
        monkeypatch.setenv(compilation.ENV_VAR, off)
        assert compilation.cache_dir() is None
    assert compilation.cache_dir("off") is None
    with pytest.raises(TypeError, match="directory path or 'off', got int"):
        compilation.cache_dir(3)


def test_cache_path_that_is_a_file_is_one_clear_error(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(ValueError, match="must be a directory, got the file"):
        compilation.enable_compilation_cache(str(f))


_CHILD = textwrap.dedent(
    """
    import jax, jax.numpy as jnp
    from jax import monitoring
    from jaxar.compilation import enable_compilation_cache
    hits = []
    monitoring.register_event_listener(
        lambda e, **kw: hits.append(e) if e == "/jax/compilation_cache/cache_hits" else None)
    print("DIR", enable_compilation_cache())
    jax.jit(lambda x: jnp.sin(x) * 3.0 + x)(jnp.arange(5.0)).block_until_ready()
    print("HITS", len(hits))
    """
)


def _child(env_value):
    env = {**os.environ, compilation.ENV_VAR: env_value, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


def test_second_process_reads_the_compile_from_the_cache(tmp_path):
    first = _child(str(tmp_path / "xla"))
    assert first == {"DIR": str(tmp_path / "xla"), "HITS": "0"}
    assert os.listdir(tmp_path / "xla"), "the first process wrote no cache entry"
    assert _child(str(tmp_path / "xla"))["HITS"] != "0"


def test_cache_off_changes_nothing():
    before = jax.config.jax_compilation_cache_dir
    assert compilation.enable_compilation_cache("off") is None
    assert jax.config.jax_compilation_cache_dir == before


# ------------------------------------------------------------------ device prefetch


class _Source:
    """Local batches 0, 1, 2, ... that count how many were taken."""

    def __init__(self, n):
        self.n, self.taken = n, 0

    def __iter__(self):
        for i in range(self.n):
            self.taken += 1
            yield {"x": np.full((8, 3), i, np.int32)}


@pytest.mark.parametrize("size", [0, 1, 2])
def test_prefetch_yields_every_batch_in_order_sharded(size):
    mesh = parallel.make_mesh()
    got = list(parallel.prefetch_to_device(_Source(5), size, mesh))
    assert [int(b["x"][0, 0]) for b in got] == [0, 1, 2, 3, 4]
    for b in got:
        assert b["x"].sharding == parallel.batch_sharding(mesh)
        assert len(b["x"].addressable_shards) == len(jax.devices())


def test_prefetch_runs_size_batches_ahead():
    src = _Source(10)
    it = parallel.prefetch_to_device(src, 2, parallel.make_mesh())
    first = next(it)
    assert int(first["x"][0, 0]) == 0
    assert src.taken == 3  # the batch in use and the 2 in flight
    next(it)
    assert src.taken == 4
    lazy = _Source(10)
    next(parallel.prefetch_to_device(lazy, 0, parallel.make_mesh()))
    assert lazy.taken == 1


@pytest.mark.parametrize("size", [-1, 1.5, True, "2"])
def test_prefetch_bad_size_is_one_clear_error(size):
    with pytest.raises(ValueError, match="prefetch size must be an int >= 0, got"):
        next(parallel.prefetch_to_device(_Source(2), size, parallel.make_mesh()))


# ------------------------------------------------------------------ kernel counter

_HLO = """HloModule m, is_scheduled=true

%fused_computation (p0: f32[4]) -> f32[4] {
  %p0 = f32[4]{0} parameter(0)
  %s = f32[4]{0} sine(%p0)
  ROOT %c = f32[4]{0} cosine(%s)
}

%cond (t: (s32[], f32[4])) -> pred[] {
  %t = (s32[], f32[4]{0}) parameter(0)
  %i = s32[] get-tuple-element(%t), index=0
  %n = s32[] constant(7)
  ROOT %lt = pred[] compare(%i, %n), direction=LT
}

%body (t.1: (s32[], f32[4])) -> (s32[], f32[4]) {
  %t.1 = (s32[], f32[4]{0}) parameter(0)
  %i.1 = s32[] get-tuple-element(%t.1), index=0
  %x.1 = f32[4]{0} get-tuple-element(%t.1), index=1
  %f = f32[4]{0} fusion(%x.1), kind=kLoop, calls=%fused_computation
  %d = f32[4]{0} copy(%f)
  ROOT %r = (s32[], f32[4]{0}) tuple(%i.1, %d)
}

ENTRY %main (x: f32[4]) -> f32[4] {
  %x = f32[4]{0} parameter(0)
  %z = s32[] constant(0)
  %b = f32[2,2]{1,0} bitcast(%x)
  %t0 = (s32[], f32[4]{0}) tuple(%z, %x)
  %w = (s32[], f32[4]{0}) while(%t0), condition=%cond, body=%body, backend_config={TRIP}
  %y = f32[4]{0} get-tuple-element(%w), index=1
  ROOT %e = f32[4]{0} custom-call(%y), custom_call_target="k"
}
""".replace("{TRIP}", '{"known_trip_count":{"n":"7"}}')


def test_count_kernels_exact_on_known_hlo():
    c = kernels.count_kernels(_HLO)
    # entry: custom-call; loop condition: compare; loop body: fusion + copy (the fused
    # sine/cosine are inside the fusion and not counted); parameters, constants, tuples,
    # get-tuple-elements and bitcasts move nothing.
    assert c.by_opcode == {"compare": 1, "copy": 1, "custom-call": 1, "fusion": 1}
    assert c.kernels == 4
    assert c.launches == 1 + 7 * 3  # the loop's three kernels run 7 times


def test_loop_body_kernels_counts_one_iteration_of_the_loop_of_that_trip_count():
    c = kernels.loop_body_kernels(_HLO, 7)
    # the loop's condition (compare) and body (fusion, copy), once; not the entry's kernel
    assert c.by_opcode == {"compare": 1, "copy": 1, "fusion": 1}
    assert (c.kernels, c.launches) == (3, 3)
    for trips in (6, 8):
        with pytest.raises(ValueError, match=f"one while loop of {trips} trips .* found 0"):
            kernels.loop_body_kernels(_HLO, trips)
    # A compiled scan: its body's work is found, one matrix product and one tanh per layer.
    x = jnp.ones((8, 8), jnp.float32)

    def scan(depth):
        def body(c, _):
            for _ in range(depth):
                c = jnp.tanh(c @ x)
            return c, None

        text = jax.jit(lambda c: jax.lax.scan(body, c, length=11)[0]).lower(x).compile()
        return kernels.loop_body_kernels(text.as_text(), 11).kernels

    assert scan(3) - scan(2) == scan(2) - scan(1) == 2

    # A conditional's branches run at some steps only: counted, and counted as conditional.
    def body(c, i):
        return jax.lax.cond(i % 4 == 0, lambda c: jnp.tanh(c @ x) @ x, lambda c: c, c), None

    text = jax.jit(lambda c: jax.lax.scan(body, c, jnp.arange(11))[0]).lower(x).compile()
    c = kernels.loop_body_kernels(text.as_text(), 11)
    assert 2 <= c.conditional < c.launches, c
    assert kernels.launches_cell(c) == f"{c.launches} ({c.conditional} conditional)"
    plain = kernels.loop_body_kernels(_HLO, 7)
    assert (plain.conditional, kernels.launches_cell(plain)) == (0, "3")


def test_trip_count_read_from_the_loop_condition_when_xla_states_none():
    """libtpu's compiled loops carry no ``known_trip_count``: the count comes from the loop's
    ``counter < N`` condition; a condition of another shape leaves it unknown (one trip)."""
    untold = _HLO.replace(', backend_config={"known_trip_count":{"n":"7"}}', "")
    assert "known_trip_count" not in untold
    assert kernels.count_kernels(untold) == kernels.count_kernels(_HLO)
    assert kernels.loop_body_kernels(untold, 7) == kernels.loop_body_kernels(_HLO, 7)
    assert kernels.loop_invariant_kernels(untold, 7) == kernels.loop_invariant_kernels(_HLO, 7)
    assert kernels.count_kernels(_HLO).conditional == 0
    other = untold.replace("direction=LT", "direction=NE")
    assert kernels.count_kernels(other).launches == 1 + 3
    # A loop of unknown trip count may not run its body: its fusion and copy are conditional,
    # its condition's compare is not.
    assert kernels.count_kernels(other).conditional == 2
    with pytest.raises(ValueError, match="one while loop of 7 trips .* found 0"):
        kernels.loop_body_kernels(other, 7)


def test_loop_invariant_kernels_finds_work_xla_left_in_a_loop():
    """A weight sliced for a product with the loop's carry stays in the loop (a copy at every
    trip); sliced, then scaled, it leaves the loop with the product."""
    x, w = jnp.ones((4, 8)), jnp.ones((3, 8, 8))

    def left(f):
        run = lambda c, w: jax.lax.scan(lambda c, _: (f(c, w), None), c, length=11)[0]
        text = jax.jit(run).lower(x, w).compile().as_text()
        return kernels.float_invariants(kernels.loop_invariant_kernels(text, 11))

    assert left(lambda c, w: jnp.tanh(c @ w[1])) == [("fusion", "f32[8,8]{1,0}")]
    assert left(lambda c, w: jnp.tanh(c @ (w[1] * 2.0))) == []
    assert left(lambda c, w: jnp.tanh(c @ c.T @ c)) == []
    # x is a constant here: XLA materialises its ones (a broadcast) at every trip
    assert left(lambda c, w: jnp.tanh(c @ c.T @ x)) == [("fusion", "f32[4,8]{1,0}")]


@pytest.mark.parametrize(
    "name",
    [n for n in models.names() if isinstance(models.create_tiny(n), models.AutoregressiveModel)],
)
def test_no_sampler_loop_recomputes_work_on_its_weights(name):
    """Compiled, no model's sampler repeats at every step a computation on its weights alone
    (3942bba's WaveNet: 31 weight copies a step; PixelCNN's masked kernels: one per layer;
    the Diagonal BiLSTM's all-ones 1x1 mask, materialised at every step), nor branches
    through a conditional (be8a7d9's Gated PixelCNN and Diagonal BiLSTM). Not "pallas": on
    CPU its kernel runs in interpret mode, whose HLO simulates the kernel's grid and loops."""
    model = models.create_tiny(name, num_levels=16)
    params = jax.eval_shape(model.init, jax.random.key(0))
    for method in [m for m in model.sample_methods if m not in ("naive", "pallas")]:
        text, steps = kernels.sampler_program(model, params, 2, method)
        assert kernels.float_invariants(kernels.loop_invariant_kernels(text, steps)) == [], method
        # Work done at some steps only is a loop of zero or one trip (jaxar.sampling.when),
        # not a conditional, whose do-nothing branch copies the caches when compiled for a GPU.
        assert " conditional(" not in text, method


def test_count_kernels_on_compiled_code_grows_with_unfusable_work():
    x = jnp.ones((8, 8), jnp.float32)

    def count(f):
        return kernels.count_kernels(jax.jit(f).lower(x).compile().as_text())

    one = count(lambda x: jnp.tanh(x @ x))
    two = count(lambda x: jnp.tanh(jnp.tanh(x @ x) @ x))
    assert one.kernels >= 1 and two.kernels > one.kernels
    with pytest.raises(ValueError, match="ENTRY computation, got none"):
        kernels.count_kernels("HloModule empty")


# ------------------------------------------------------------------ the suite, --tiny


def test_suite_tiny_runs_every_part_and_reports_figures(tmp_path):
    import suite

    out = tmp_path / "bench.md"
    text = suite.main(["--tiny", "--compilation-cache", "off", "--out", str(out)])
    assert out.read_text() == "\n" + text
    assert f"jax {jax.__version__}" in text and "commit " in text and "cpu" in text
    assert "Command: `python benchmarks/suite.py --tiny --compilation-cache off --out" in text
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and "---" not in ln]
    data = [r for r in rows if not r.startswith(("| model ", "| method "))]
    assert len(data) == 5, data  # train, sampling, wavenet cached + pallas, kernels
    assert not any("FAILED" in r or "skipped" in r for r in data), data
    wavenet = [r.split(" | ") for r in data if r.startswith(("| cached ", "| pallas "))]
    for cells in wavenet:
        assert float(cells[2].replace(",", "")) > 0 and cells[5].endswith("x")  # samples/s, RTF
    assert suite.peak_tflops("NVIDIA H200", "bfloat16") == 989.0
    assert suite.peak_tflops("cpu", "float32") is None
    with pytest.raises(SystemExit, match="--only takes"):
        suite.main(["--tiny", "--only", "bogus"])


def test_suite_commit_without_git_history(monkeypatch):
    """A lent machine gets the tree without its git history, perhaps without git: the commit
    comes from JAXAR_COMMIT, else is "unknown", never a crash."""
    import suite

    assert re.fullmatch(r"[0-9a-f]{7,}(\+uncommitted)?", suite._commit())
    monkeypatch.setenv("JAXAR_COMMIT", "abc1234")
    assert suite._commit() == "abc1234"
    monkeypatch.delenv("JAXAR_COMMIT")

    def no_git(*a, **k):
        raise FileNotFoundError("git")

    monkeypatch.setattr(suite.subprocess, "run", no_git)
    assert suite._commit() == "unknown"


def test_step_ab_alternates_two_checkouts_and_reports_each(capfd):
    # Two sides on this checkout: both compile the quickstart's step, take turns, agree on the
    # first loss and FLOPs, and the table has one row per side; bad sides are refused first.
    # (capfd, not capsys: a worker's one-line refusal goes to the process's own stderr.)
    import step_ab

    config = os.path.join(ROOT, "experiments", "configs", "quickstart.py")
    args = ["--config", config, "--image", "8,8,1", "--steps", "3", "--warmup", "1", "--batch", "4"]
    step_ab.main(["--side", f"a={ROOT}", "--side", f"b={ROOT}", *args])
    out = capfd.readouterr().out
    rows = [r.split(" | ") for r in out.splitlines() if r.startswith(("| a ", "| b "))]
    assert [r[0] for r in rows] == ["| a", "| b"], out
    assert f"# side a: jaxar imported from {os.path.join(ROOT, 'jaxar')}" in out, out
    assert rows[0][1:3] == rows[1][1:3] and float(rows[0][1]) > 0, rows  # GFLOP, first loss
    assert rows[0][5] == "1.000" and all(float(r[3]) > 0 for r in rows), rows
    # --sample: the sides time the same jitted sampler and draw the same samples.
    step_ab.main(["--side", f"a={ROOT}", "--side", f"b={ROOT}", *args, "--sample", "cached"])
    out = capfd.readouterr().out
    rows = [r.split(" | ") for r in out.splitlines() if r.startswith(("| a ", "| b "))]
    assert "| sample checksum |" in out and len(rows) == 2, out
    assert rows[0][2] == rows[1][2] and int(rows[0][2]) > 0, rows  # the samples' checksum
    with pytest.raises(SystemExit, match="side a .* exited before compiling"):
        step_ab.main(["--side", f"a={ROOT}", "--side", f"b={ROOT}", *args, "--sample", "nope"])
    assert "--sample expects one of ['cached', 'naive'" in capfd.readouterr().err
    for bad, message in [
        ([f"--side=a={ROOT}"], "at least two --side, got 1"),
        ([f"--side=a={ROOT}", "--side=b"], "NAME=PATH of a jaxar checkout, got 'b'"),
        ([f"--side=a={ROOT}", f"--side=b={ROOT}", "--warmup", "3"], "--steps must exceed"),
        ([f"--side=a={ROOT}", f"--side=b={ROOT}", "--config", "nope.py"], "got 'nope.py' (no such"),
    ]:
        with pytest.raises(SystemExit):
            step_ab.main([*args, *bad])
        assert message in capfd.readouterr().err


def test_pp_step_times_a_jaxar_side_and_refuses_mismatched_peers(tmp_path, capfd):
    # One round of a tiny jaxar side on random RGB images: its row reports the step time, the
    # model's own parameter count and XLA's FLOPs. A peer that cannot run the asked images is
    # refused in one line before any work.
    import pp_step

    from jaxar import models

    args = ["--image", "8,8,3", "--batch", "2", "--filters", "4", "--mixtures", "2"]
    args += ["--data", "random", "--rounds", "1", "--steps", "10", "--dropout", "0.5"]
    rows = pp_step.main(["--side", f"here={ROOT}", *args, "--ema", "0.999"])
    model = models.create(
        "pixelcnn_pp", image_shape=(8, 8, 3), num_resnets=1, features=4, num_mixtures=2,
        weight_norm=True, weight_init="fan_in",
    )  # fmt: skip
    count = sum(int(np.size(w)) for w in jax.tree.leaves(model.init(jax.random.key(0))))
    assert [r["side"] for r in rows] == ["here"] and rows[0]["params"] == count, rows
    assert rows[0]["flops"] > 0 and 0 < rows[0]["min"] <= rows[0]["median"], rows
    assert f"| here | {rows[0]['median']:.3f} " in capfd.readouterr().out
    flax_dir = tmp_path / "flax"
    flax_dir.mkdir()
    (flax_dir / "pixelcnn.py").write_text("")
    (tmp_path / "model.py").write_text("")  # what --peer looks for in a pclucas14 checkout
    for bad, message in [
        (["--image", "8,8"], "--image takes H,W,C (three integers), got '8,8'"),
        (["--image", "6,8,3"], "H and W divisible by 4"),
        (["--flax-example", str(flax_dir)], "written for RGB (--image H,W,3), got 28,28,1"),
        (["--flax-example", str(tmp_path)], "holding the example's pixelcnn.py, got"),
        (["--peer", ROOT], "must be a checkout of pclucas14"),
        (["--peer", str(tmp_path), "--image", "8,8,3"], "grey images without a weight average"),
        (["--side", f"a={ROOT}", "--ema", "1.0"], "--ema in [0, 1), got 16, 0.0, 1.0"),
        ([], "give at least one --side NAME=PATH, --peer or --flax-example, got none"),
    ]:
        with pytest.raises(SystemExit, match=re.escape(message)):
            pp_step.main(bad)


def test_processor_names_family_model_and_avx512(tmp_path):
    # Benchmark headers tell apart two processors of one model name (BENCHMARKS.md: the same
    # "AMD EPYC" name on machines whose XLA kernel gradients ran 3x apart).
    import host

    block = "processor\t: {}\nmodel name\t: AMD EPYC\ncpu family\t: 25\nmodel\t\t: 17\n"
    block += "flags\t\t: {}\n"
    info = tmp_path / "cpuinfo"
    info.write_text(block.format(0, "fpu avx2 avx512f") + "\n" + block.format(1, "fpu"))
    assert host.processor(str(info)) == "AMD EPYC (family 25, model 17, AVX-512)"
    info.write_text(block.format(0, "fpu avx2 avx512fp16x") + "\n")
    assert host.processor(str(info)) == "AMD EPYC (family 25, model 17, no AVX-512)"
    info.write_text("processor\t: 0\nmodel name\t: Neoverse\n")  # no family: the name alone
    assert host.processor(str(info)) == "Neoverse"
    assert host.processor(str(tmp_path / "missing"))  # no file: platform's answer, not empty


def test_aot_says_what_it_needs_in_one_line():
    """benchmarks/aot.py compiles for a GPU with JAX's CUDA plugin and for a TPU with libtpu (no
    accelerator needed); without them, or for a target it has no figures for, it stops in one
    line before any work."""
    script = os.path.join(ROOT, "benchmarks", "aot.py")

    def run(*args):
        p = subprocess.run(
            [sys.executable, script, *args], capture_output=True, text=True, timeout=300
        )
        return p.returncode, p.stderr.strip().splitlines()[-1], p.stdout

    rc, err, out = run("--target", "v100")
    assert rc == 1 and not out, (rc, out)
    assert err == (
        "aot.py: expected --target in ['h100', 'h200', 'v5e', 'v6e'] and --only a comma list "
        "of ['train', 'sampling', 'sampler', 'samplers', 'parallel'], got --target 'v100' "
        "--only 'train,sampling,sampler,samplers,parallel'"
    )
    rc, err, out = run("--models", "wavenet,bogus")
    assert rc == 1 and not out, (rc, out)
    assert err == (
        "aot.py: expected --models a comma list of ['wavenet', 'pixelcnn', 'gated_pixelcnn', "
        "'pixelcnn_pp', 'transformer', 'row_lstm', 'diagonal_bilstm'], got 'wavenet,bogus'"
    )
    rc, err, out = run("--hparams", "[1]")
    assert rc == 1 and not out, (rc, out)
    assert err == (
        """aot.py: expected --hparams a JSON object such as '{"num_classes": 10}', got '[1]'"""
    )
    rc, err, out = run("--only", "samplers", "--models", "pixelcnn", "--hparams", '{"bogus": 1}')
    assert rc == 1 and not out, (rc, out)
    assert err.startswith("aot.py: expected --hparams that pixelcnn takes, got unknown "), err
    v = jax.__version__
    needs = {
        "jax_cuda12_plugin": (
            "h200",
            f"JAX's CUDA plugin (pip install jax-cuda12-plugin=={v} jax-cuda12-pjrt=={v})",
        ),
        "libtpu": ("v5e", f"libtpu (pip install 'jax[tpu]=={v}')"),
    }
    for module, (target, need) in needs.items():
        try:
            __import__(module)
        except ImportError:
            rc, err, out = run("--target", target, "--only", "sampling")
            assert rc == 1 and not out, (rc, out)
            assert err.startswith(f"aot.py: expected {need} for --target {target}, got: "), err


def test_aot_says_where_the_tpu_kernel_operands_live(monkeypatch):
    """The sampler table's placement column reads each Mosaic call's operands in the compiled
    HLO: memory space 1 (``S(1)``) is VMEM, none is HBM, named by shape."""
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")  # what aot.py sets on import; restored after
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "localhost")
    import aot

    hlo = "\n".join(
        [
            "  %w.1 = f32[30,64,64]{2,1,0:T(8,128)S(1)} get-tuple-element(%t), index=1",
            "  %rows = s32[30]{0:T(128)S(1)} fusion(%a), kind=kLoop",
            "  %lines.2 = f32[3069,2,64,64]{3,2,1,0:T(8,128)} get-tuple-element(%t), index=2",
            "  %k = (f32[64,256]{1,0}, f32[3069,2,64,64]{3,2,1,0:T(8,128)}) custom-call(%w.1, "
            '%rows, /*index=2*/%lines.2), custom_call_target="tpu_custom_call"',
            '  %c = f32[8]{0} custom-call(%w.1), custom_call_target="Sharding"',
        ]
    )
    assert aot._placement_cells(hlo) == ["2 in VMEM, 1 in HBM (f32[3069,2,64,64])"]
    assert aot._placement_cells(hlo.replace("T(8,128)}", "T(8,128)S(1)}")) == [
        "3 in VMEM, 0 in HBM"
    ]
    assert aot._placement_cells(hlo.replace("tpu_custom_call", "other")) == ["-"]


def test_aot_counts_collectives_of_a_tuple_too(monkeypatch):
    """The parallel table's collectives: GPU-style async pairs, and the TPU backend's one
    all-reduce of a tuple (its shape has spaces), with the arrays it carries."""
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "localhost")
    import aot

    gpu = "\n".join(
        [
            "  %s.1 = f32[64]{0} all-reduce-start(%g.1), channel_id=1, to_apply=%add",
            "  %d.1 = f32[64]{0} all-reduce-done(%s.1)",
            "  %s.2 = f32[8]{0} all-reduce-start(%g.2), channel_id=2, to_apply=%add",
            "  %d.2 = f32[8]{0} all-reduce-done(%s.2)",
        ]
    )
    assert aot._collective_cells(gpu) == ["all-reduce-start 2, all-reduce-done 2"]
    tpu = (
        "  %all-reduce.4 = (f32[64,64]{1,0:T(8,128)S(1)}, f32[]{:T(128)}, f32[]{:T(128)}) "
        "all-reduce(%fusion, %fusion.2, %convolution_reduce_fusion), channel_id=1"
    )
    assert aot._collective_cells(tpu) == ["all-reduce 1 (3 arrays)"]
    assert aot._collective_cells("  %f = f32[8]{0} fusion(%a), kind=kLoop") == ["none"]
