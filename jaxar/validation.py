"""The whole config checked before any work, and a resumed run's config against the saved one.

``validate_config(config)`` raises :class:`ConfigError` (one line naming every bad key, what
was expected and what was given) for any value out of range or of the wrong type; it reads no
data and touches no file, so the runner calls it before it creates anything in the workdir.

``compare_configs(saved, new)`` sorts the keys that differ between a run's saved
``config.json`` and the config it is resumed with:

* refused: ``model_name``, every ``model.*`` and ``data.*`` key (they change the parameters'
  shapes or the data the run has trained on), and switching ``ema_decay`` or
  ``optim.grad_clip`` on or off (either adds or removes part of the saved state);
* changed (resumed with a warning): everything else, e.g. ``num_steps``, learning rate,
  intervals, ``batch_size``, ``compute_dtype`` (bf16 compute keeps float32 parameters), ``seed``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import ml_collections

from jaxar import models

__all__ = [
    "COMPUTE_DTYPES",
    "ConfigError",
    "compare_configs",
    "flatten",
    "validate_config",
]

COMPUTE_DTYPES = ("float32", "bfloat16", "float16")


class ConfigError(ValueError):
    """A config value that cannot work (the message is one line)."""


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _int(lo: int):
    return lambda v: _is_int(v) and v >= lo, f"an integer >= {lo}"


def _number(lo: float, hi: float | None = None, lo_open=False, hi_open=True):
    def ok(v):
        if not _is_number(v):
            return False
        if v < lo or (lo_open and v == lo):
            return False
        return hi is None or v < hi or (not hi_open and v == hi)

    left = "(" if lo_open else "["
    if hi is None:
        return ok, f"a finite number {'>' if lo_open else '>='} {lo:g}"
    return ok, f"a number in {left}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def _one_of(*choices):
    return lambda v: v in choices, "one of " + ", ".join(repr(c) for c in choices)


def _bool():
    return lambda v: isinstance(v, bool), "True or False"


def _str():
    return lambda v: isinstance(v, str), "a string"


# Every key of jaxar.config.default() with its rule.
RULES = {
    "seed": _int(0),
    "data.name": (lambda v: isinstance(v, str) and v != "", "a dataset name (digits, idx:DIR…)"),
    "data.data_dir": _str(),
    "data.binarize": _one_of("", "dynamic", "static"),
    "data.conditional": _bool(),
    "data.length": _int(0),
    "data.sample_rate": _int(0),
    "data.features": _one_of("", "log_mel"),
    "data.num_mels": _int(1),
    "data.feature_hop": _int(0),
    "data.fft_size": _int(0),
    "model_name": _str(),
    "compute_dtype": _one_of(*COMPUTE_DTYPES),
    "batch_size": _int(1),
    "eval_batch_size": _int(1),
    "num_steps": _int(1),
    "grad_accum_steps": _int(1),
    "optim.learning_rate": _number(0.0, lo_open=True),
    "optim.schedule": _one_of("constant", "cosine", "exponential"),
    "optim.warmup_steps": _int(0),
    "optim.decay_rate": _number(0.0, 1.0, lo_open=True, hi_open=False),
    "optim.b1": _number(0.0, 1.0),
    "optim.b2": _number(0.0, 1.0),
    "optim.weight_decay": _number(0.0),
    "optim.grad_clip": _number(0.0),
    "ema_decay": _number(0.0, 1.0),
    "log_every": _int(1),
    "eval_every": _int(1),
    "checkpoint_every": _int(1),
    "keep_checkpoints": _int(1),
    "num_samples": _int(0),
    "sample_method": _str(),
    "distributed": _bool(),
}

# Model hyperparameters: integers that may be 0 (off / none / filled in by the runner), and
# numbers with their own ranges; every other integer hyperparameter (a width, a depth, a
# kernel size, a count) must be >= 1.
MODEL_INT_ZERO_OK = {
    "num_classes",
    "cond_dim",
    "cond_map_channels",
    "local_features",
    "local_hop",
    "local_channels",
    "input_embedding",  # gated_pixelcnn: 0 = one-hot input
    "head_channels",  # wavenet: 0 = skip_channels
}
MODEL_RULES = {
    "num_levels": _int(2),
    "dropout": _number(0.0, 1.0),
    "ema_decay": _number(0.0, 1.0),
    "usage_decay": _number(0.0, 1.0),
    "mlp_ratio": _number(0.0, lo_open=True),
    "beta": _number(0.0),
    "restart_threshold": _number(0.0),
    "dtype": _one_of(*COMPUTE_DTYPES),
}


def _get(config, key: str):
    node = config
    for part in key.split("."):
        if not isinstance(node, (ml_collections.ConfigDict, dict)) or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def _model_problems(config) -> list[str]:
    name = config.get("model_name")
    if not isinstance(name, str) or name not in models.names():
        return [f"model_name must be one of {models.names()}, got {name!r}"]
    hparams = config.get("model") or {}
    accepted = models.hparam_names(name)
    unknown = sorted(set(hparams) - set(accepted))
    if unknown:
        return [f"model.{unknown[0]} is not a hyperparameter of {name}; accepted: {accepted}"]
    problems = []
    for key, value in sorted(hparams.items()):
        if key in MODEL_RULES:
            ok, expected = MODEL_RULES[key]
        elif _is_int(value) or (isinstance(value, float) and key not in MODEL_RULES):
            lo = 0 if key in MODEL_INT_ZERO_OK else 1
            ok, expected = _int(lo) if _is_int(value) else _number(0.0)
        else:
            continue  # strings, booleans, tuples: the model checks them itself
        if not ok(value):
            problems.append(f"model.{key} must be {expected}, got {value!r}")
    return problems


def validate_config(config) -> None:
    """Raise :class:`ConfigError` naming every key whose value cannot work."""
    problems = []
    for key, (ok, expected) in RULES.items():
        value = _get(config, key)
        if value is _MISSING:
            problems.append(f"config.{key} is missing (expected {expected})")
        elif not ok(value) and expected.startswith("one of"):
            problems.append(f"unknown {key} {value!r}; expected {expected} (config.{key})")
        elif not ok(value):
            problems.append(f"config.{key} must be {expected}, got {value!r}")
    if not problems:
        problems += _model_problems(config)
        k, b = config.grad_accum_steps, config.batch_size
        if b % k:
            problems.append(
                f"config.batch_size must be a multiple of grad_accum_steps={k}, got {b}"
            )
    if problems:
        raise ConfigError("; ".join(problems))


def flatten(config) -> dict[str, Any]:
    """``{"a.b": value}`` of a config (or a dict), its values as JSON gives them back (tuples
    become lists), so a config compares equal to its saved ``config.json``."""
    if isinstance(config, ml_collections.ConfigDict):
        config = json.loads(config.to_json_best_effort())
    else:
        config = json.loads(json.dumps(config, default=str))
    flat = {}

    def walk(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict) and value:
                walk(value, f"{prefix}{key}.")
            else:
                flat[f"{prefix}{key}"] = value

    walk(config, "")
    return flat


def _refused(key: str, old, new) -> bool:
    if key == "model_name" or key.startswith(("model.", "data.")):
        return True
    if key in ("ema_decay", "optim.grad_clip"):  # on/off changes the saved state's tree
        return bool(old) != bool(new)
    return False


def compare_configs(saved, new, defaults=None) -> tuple[list[str], list[str]]:
    """``(refused, changed)``: the sorted keys that differ between a run's ``saved`` config and
    the ``new`` one, split as in the module docstring. A key missing on one side counts as its
    value in ``defaults`` (a config or dict; e.g. a key added to the defaults since the run was
    saved), or as absent where there is no default."""
    a, b = flatten(saved), flatten(new)
    d = flatten(defaults) if defaults is not None else {}
    refused, changed = [], []
    for key in sorted(set(a) | set(b)):
        old, cur = a.get(key, d.get(key, _MISSING)), b.get(key, d.get(key, _MISSING))
        if old == cur:
            continue
        (refused if _refused(key, old, cur) else changed).append(key)
    return refused, changed
