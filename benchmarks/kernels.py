"""Kernels per cached sampling step, counted in the compiled HLO.

    python benchmarks/kernels.py                          # paper WaveNet + the PixelCNN family
    python benchmarks/kernels.py --models wavenet --batch 16 --methods cached,pallas

What is compiled: the whole sampler, ``model.sample`` under ``jax.jit`` with the weights as
arguments, as a user runs it (:func:`sampler_kernels`); what is counted is the body of its
``lax.scan`` (:func:`jaxar.sampling.scan_sample`'s: the model's decode step on its cache, the
draw from the step's distribution, the write of the drawn values and their log-probability),
i.e. one step as it runs inside the loop. (Until 2026-12-02 one step was compiled alone with
the weights as constants: XLA folded away the slices of the weights that, inside the loop, are
copies at every step; 31 of them in the paper WaveNet's step on CPU.)

What is counted (:func:`count_kernels`): the instructions that the backend runs as a unit of
its own (a kernel launch on a GPU, a thunk on the CPU), i.e. every instruction of the
*scheduled* computations, namely the entry computation and, recursively, the bodies and
conditions of its ``while`` loops, the branches of its ``conditional`` and the computations
its ``call`` instructions run, EXCEPT the instructions that move no data (``parameter``,
``constant``, ``get-tuple-element``, ``tuple``, ``bitcast``, ``after-all``) and the control
instructions themselves (``while``, ``conditional``, ``call``), whose bodies are counted
instead. The computations a ``fusion`` calls (its fused body) and the reducers a ``reduce``
applies are NOT entered: one ``fusion`` is one kernel however many operations it fuses.
``kernels`` counts each instruction once; ``launches`` multiplies the instructions of a
``while`` body by its trip count when known (XLA's ``known_trip_count``, or the bound of a
``counter < N`` condition; else counts them once), so
it is the number of kernels one sampling step runs when it runs everything it may: every branch
of a ``conditional`` and once every loop of unknown trip count. ``conditional`` says how many
of them run at some steps only (inside a branch, or in such a loop's body): the Diagonal
BiLSTM's row completion (a ``lax.cond`` at the first step of each row), PixelCNN++'s coarser
levels (loops of zero or one trip), so that an average step runs fewer. ``by_opcode`` splits
``kernels`` by opcode (``fusion``, ``dot``, ``custom-call``, ``copy``, ``concatenate``, ...). A
compiled Pallas kernel is one ``custom-call`` on a GPU (Triton; not yet measured there); in
interpret mode (CPU) it is lowered to ordinary HLO (its layer loop a ``while``) and counted as
such.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import re
from collections import Counter

import jax
import jax.numpy as jnp
from jax import lax

import jaxar

__all__ = [
    "FREE_OPCODES",
    "KernelCount",
    "count_kernels",
    "float_invariants",
    "launches_cell",
    "loop_body_kernels",
    "loop_invariant_kernels",
    "main",
    "sampler_kernels",
    "sampler_program",
    "sampling_step",
]

FREE_OPCODES = frozenset(
    {"parameter", "constant", "get-tuple-element", "tuple", "bitcast", "after-all"}
)
_CONTROL = frozenset({"while", "conditional", "call"})
_HEADER = re.compile(r"^(ENTRY\s+)?%(\S+)\s.*\{\s*$")
_INSTR = re.compile(r"^\s*(ROOT\s+)?%\S+\s+=\s+(.*)$")
_NAME = re.compile(r"^\s*(?:ROOT\s+)?(%\S+)\s+=")
_REFS = re.compile(r"\b(body|condition|to_apply|true_computation|false_computation)=%([\w.\-]+)")
_BRANCHES = re.compile(r"branch_computations=\{([^}]*)\}")
_TRIP = re.compile(r'"known_trip_count":\{"n":"(\d+)"')
_BOUND = re.compile(r"compare\((%\S+), (%\S+)\), direction=LT")


def _trip_count(line: str, comps: dict[str, list[str]]) -> int | None:
    """The trip count of the ``while`` instruction ``line``: XLA's ``known_trip_count`` (a
    GPU compile says it), else ``N`` when the loop's condition is ``counter < N`` for a
    constant ``N`` (libtpu's says none; a scan's counter starts at 0), else None."""
    trip = _TRIP.search(line)
    if trip:
        return int(trip.group(1))
    condition = dict(_REFS.findall(line)).get("condition")
    lines = comps.get(condition, [])
    root = next((x for x in lines if x.lstrip().startswith("ROOT")), "")
    bound = _BOUND.search(root)
    if not bound:
        return None
    constant = re.compile(rf"^\s*{re.escape(bound.group(2))} = s32\[\]\S* constant\((\d+)\)")
    return next((int(m.group(1)) for x in lines if (m := constant.match(x))), None)


@dataclasses.dataclass(frozen=True)
class KernelCount:
    """Kernels of one compiled program (see the module doc for what is counted)."""

    kernels: int
    launches: int
    by_opcode: dict[str, int]
    conditional: int = 0  # of ``launches``: those that run at some steps only (module doc)


def _opcode(rhs: str) -> str:
    """The opcode of an instruction's right-hand side ``TYPE opcode(operands), attrs``."""
    end = rhs.index(" ")
    if rhs.startswith("("):  # a tuple type: skip to its closing parenthesis
        depths = itertools.accumulate((ch == "(") - (ch == ")") for ch in rhs)
        end = next(i for i, d in enumerate(depths) if d == 0) + 1
    rest = rhs[end:].lstrip()
    return rest[: rest.index("(")]


def _computations(hlo_text: str) -> tuple[str, dict[str, list[str]]]:
    entry, comps, name = None, {}, None
    for line in hlo_text.splitlines():
        m = _HEADER.match(line)
        if m and not line.startswith(" "):
            name = m.group(2)
            comps[name] = []
            if m.group(1):
                entry = name
        elif line.startswith("}"):
            name = None
        elif name is not None and _INSTR.match(line):
            comps[name].append(line)
    if entry is None:
        raise ValueError("expected compiled HLO text with an ENTRY computation, got none")
    return entry, comps


def count_kernels(hlo_text: str) -> KernelCount:
    """Count the kernels of compiled HLO text (``jax.jit(f).lower(...).compile().as_text()``)."""
    entry, comps = _computations(hlo_text)
    return _count(comps, entry)


def loop_body_kernels(hlo_text: str, trip_count: int) -> KernelCount:
    """:func:`count_kernels` of one iteration of the entry computation's ``while`` loop that
    XLA says runs ``trip_count`` times (its condition and body, and the loops in the body
    weighted by their trip counts): one step of a compiled sampler whose scan runs
    ``trip_count`` steps."""
    comps, condition, body = _loop_body(hlo_text, trip_count)
    return _count(comps, condition, body)


def _loop_body(hlo_text: str, trip_count: int) -> tuple[dict[str, list[str]], str, str]:
    """``(computations, condition, body)`` of the entry's one loop of ``trip_count`` trips."""
    entry, comps = _computations(hlo_text)
    loops = []
    for line in comps[entry]:
        if _opcode(_INSTR.match(line).group(2)) == "while":
            if _trip_count(line, comps) == trip_count:
                refs = dict(_REFS.findall(line))
                loops.append((refs["condition"], refs["body"]))
    if len(loops) != 1:
        raise ValueError(
            f"expected one while loop of {trip_count} trips in the entry computation, "
            f"found {len(loops)}"
        )
    return comps, *loops[0]


def loop_invariant_kernels(hlo_text: str, trip_count: int) -> list[tuple[str, str]]:
    """``(opcode, result type)`` of every kernel of the body of the loop that
    :func:`loop_body_kernels` counts which computes only from constants and from values the
    loop passes on unchanged (the weights, the conditioning): work that gives the same result
    at every step, left in the loop by XLA (a weight sliced for a matrix product, say)."""
    comps, _, body = _loop_body(hlo_text, trip_count)
    names = [_NAME.match(line).group(1) for line in comps[body]]
    rhs = {n: _INSTR.match(line).group(2) for n, line in zip(names, comps[body])}
    root = _NAME.match(next(line for line in comps[body] if "ROOT" in line)).group(1)
    param = next(n for n in names if _opcode(rhs[n]) == "parameter")
    outputs = _operands(rhs[root])
    fixed, found = set(), []
    for n in names:  # instructions are listed after their operands
        op = _opcode(rhs[n])
        index = re.search(rf"get-tuple-element\({re.escape(param)}\), index=(\d+)", rhs[n])
        if index:
            if outputs[int(index.group(1))] == n:  # passed on unchanged
                fixed.add(n)
        elif op == "constant" or (
            op not in _CONTROL | {"parameter", "tuple"}
            and not op.startswith("rng")
            and all(o in fixed for o in _operands(rhs[n]))
        ):
            fixed.add(n)
            if op not in FREE_OPCODES:
                found.append((op, rhs[n].split(" ")[0]))
    return found


def _operands(rhs: str) -> list[str]:
    """The operand names of an instruction's right-hand side, in order."""
    op = _opcode(rhs)
    start = rhs.index(op + "(", rhs.index(" ")) + len(op) + 1
    depth = 1
    for i, ch in enumerate(rhs[start:]):
        depth += (ch == "(") - (ch == ")")
        if depth == 0:
            return re.findall(r"%[\w.\-]+", rhs[start : start + i])
    raise ValueError(f"unbalanced operands in {rhs[:80]!r}")


def _count(comps: dict[str, list[str]], *roots: str) -> KernelCount:
    by_opcode: Counter = Counter()
    launches = conditional = 0
    stack = [(root, 1, False) for root in roots]
    seen = set()
    while stack:
        name, weight, guarded = stack.pop()
        for line in comps[name]:
            rhs = _INSTR.match(line).group(2)
            op = _opcode(rhs)
            if op in _CONTROL:
                trip = _trip_count(line, comps) if op == "while" else None
                inner = weight * (trip or 1)
                # A conditional's branches, and the body of a loop of unknown trip count (it
                # may run zero times), run at some steps only.
                some = op == "conditional" or (op == "while" and trip is None)
                targets = [
                    (t, guarded or (some and kind != "condition"))
                    for kind, t in _REFS.findall(line)
                ]
                for b in _BRANCHES.findall(line):
                    targets += [(t.strip().lstrip("%"), True) for t in b.split(",") if t.strip()]
                for t, g in dict.fromkeys(targets):
                    if (t, weight, g) not in seen:
                        seen.add((t, weight, g))
                        stack.append((t, inner, g))
            elif op not in FREE_OPCODES:
                if (name, "counted") not in seen:
                    by_opcode[op] += 1
                launches += weight
                conditional += weight if guarded else 0
        seen.add((name, "counted"))
    return KernelCount(
        sum(by_opcode.values()), launches, dict(sorted(by_opcode.items())), conditional
    )


def sampling_step(model, params, batch: int, method: str = "cached", cond=None):
    """``(step, args)``: one step of ``model``'s sampler, the work of ``scan_sample``'s scan
    body (which writes a step's drawn values at the start of the next step; this step writes
    them at its end: the same one update).

    ``method`` is "cached", or any other sequential method the model lists (WaveNet's
    "pallas"): the state and step of ``model.cached_sampler(params, batch, cond, method)``.
    """
    if method == "naive" or method not in model.sample_methods:
        raise ValueError(
            f"{model.name}: expected a cached sampling method of {list(model.sample_methods)} "
            f"other than 'naive', got {method!r}"
        )
    cond = model.dummy_cond(batch) if cond is None else cond
    state, step_fn = model.cached_sampler(params, batch, cond, method)
    dist = model.distribution
    g = dist.dims_per_step

    def step(state, x, i, key):
        out, state = step_fn(state, x, i)
        values = dist.sample_step(jax.random.fold_in(key, i), out)
        x = lax.dynamic_update_slice(x, values.astype(x.dtype), (0, i * g))
        return x, state, dist.step_log_prob(out, values)

    x = jnp.zeros((batch, model.num_dims), jnp.int32)
    return step, (state, x, jnp.int32(1), jax.random.key(0))


def sampler_program(model, params, batch: int, method: str = "cached") -> tuple[str, int]:
    """``(text, steps)``: ``model.sample(params, key, batch, method=method)`` compiled for the
    default backend with ``params`` (arrays, or shapes from ``jax.eval_shape``) as arguments,
    and the trip count of its loop."""
    if method == "naive" or method not in model.sample_methods:
        raise ValueError(
            f"{model.name}: expected a cached sampling method of {list(model.sample_methods)} "
            f"other than 'naive', got {method!r}"
        )
    cond = model.dummy_cond(batch)
    sample = jax.jit(lambda p, key: model.sample(p, key, batch, cond, method=method))
    text = sample.lower(params, jax.random.key(0)).compile().as_text()
    return text, model.num_dims // model.distribution.dims_per_step


def sampler_kernels(model, params, batch: int, method: str = "cached") -> KernelCount:
    """:func:`loop_body_kernels` of :func:`sampler_program`: the kernels one step runs
    inside the sampler's loop."""
    return loop_body_kernels(*sampler_program(model, params, batch, method))


def float_invariants(found: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The kernels of :func:`loop_invariant_kernels` that compute floating-point arrays (the
    others are the PRNG's integer constants, a few scalars)."""
    return [k for k in found if re.match(r"\(?(f|bf)\d", k[1])]


WAVENET_PAPER = dict(
    length=2000, num_levels=256, residual_channels=64, gate_channels=128, skip_channels=64,
    kernel_size=3, num_cycles=3, layers_per_cycle=10,
)  # fmt: skip
IMAGE_SIZES = {
    "pixelcnn": dict(features=96, num_blocks=7, output_features=192),
    "gated_pixelcnn": dict(features=48, num_layers=7, output_features=96),
    "pixelcnn_pp": dict(num_resnets=5, features=160, num_mixtures=10),
    "transformer": dict(num_layers=4, num_heads=4, embed_dim=64),
}


def build(name: str, image=(32, 32, 3), hparams=None):
    """The model the table measures: WaveNet at the paper size, image models at IMAGE_SIZES."""
    if name == "wavenet":
        return jaxar.create("wavenet", **{**WAVENET_PAPER, **(hparams or {})})
    kw = {**IMAGE_SIZES.get(name, {}), **(hparams or {})}
    return jaxar.create(name, image_shape=tuple(image), num_levels=256, **kw)


def rows(names, batch: int, methods, image, hparams=None) -> list[dict]:
    out = []
    for name in names:
        model = build(name, image, (hparams or {}).get(name))
        params = jax.eval_shape(model.init, jax.random.key(0))
        for method in methods:
            if method not in model.sample_methods:
                continue
            text, steps = sampler_program(model, params, batch, method)
            c = loop_body_kernels(text, steps)
            fixed = len(float_invariants(loop_invariant_kernels(text, steps)))
            out.append(
                dict(
                    model=name, method=method, batch=batch, invariant=fixed, **dataclasses.asdict(c)
                )
            )
            print(_row(out[-1]), flush=True)
    return out


def launches_cell(c: KernelCount) -> str:
    """``launches``, and of them the conditional ones when there are any: ``"3514 (3208
    conditional)"``."""
    return f"{c.launches} ({c.conditional} conditional)" if c.conditional else str(c.launches)


def _row(r: dict) -> str:
    top = ", ".join(f"{k} {v}" for k, v in sorted(r["by_opcode"].items(), key=lambda kv: -kv[1]))
    launches = launches_cell(KernelCount(r["kernels"], r["launches"], {}, r["conditional"]))
    return (
        f"| {r['model']} | {r['method']} | {r['batch']} | {r['kernels']} | {launches} "
        f"| {r['invariant']} | {top} |"
    )


TABLE_HEAD = (
    "| model | method | batch | kernels | launches per step "
    "| loop-invariant kernels on floats | by opcode |\n"
    "|---|---|---:|---:|---:|---:|---|"
)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="wavenet,pixelcnn,gated_pixelcnn,pixelcnn_pp")
    ap.add_argument("--methods", default="cached,pallas")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--image", default="32,32,3")
    ap.add_argument("--hparams", default="{}", help="JSON {model: {hparam: value}}")
    args = ap.parse_args(argv)
    image = tuple(int(v) for v in args.image.split(","))
    print(f"{jax.devices()[0].device_kind}, jax {jax.__version__}")
    print(TABLE_HEAD)
    rows(
        args.models.split(","), args.batch, args.methods.split(","), image, json.loads(args.hparams)
    )


if __name__ == "__main__":
    main()
