"""The model registry: ``create(name, **hparams)`` builds any registered model by name.

Each factory registers once, with the tiny sizes the contract tests (``tests/test_contract.py``)
and the ``--tiny`` benchmarks build it at, so a newly registered model is checked with no new
test code. A model defined outside the package registers the same way; naming its module in
a config's ``imports`` makes ``jaxar train|eval|sample`` import it.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["TinySpec", "create", "create_tiny", "hparam_names", "names", "register", "tiny_spec"]

_FACTORIES: dict[str, Callable[..., Any]] = {}
_TINY: dict[str, TinySpec] = {}

# Event shapes of the tiny instances: "grey" and "rgb" for the causality checks, "small" for the
# exhaustive normalisation check (num_levels ** D events must be few).
IMAGE_SHAPES = {"grey": (3, 3, 1), "rgb": (2, 3, 3), "small": (2, 2, 1)}
AUDIO_SHAPES = {"grey": (12,), "small": (6,)}


@dataclasses.dataclass(frozen=True)
class TinySpec:
    """How to build a tiny instance of a registered model.

    ``hparams``: the small widths (a dict, or a function of the number of colour channels for
    image models whose widths must split into colour groups). ``shapes``: event shape by role
    (``"grey"``, ``"rgb"``, ``"small"``); a role a model does not support is absent (audio
    models have no ``"rgb"``).
    """

    hparams: dict | Callable[[int], dict]
    shapes: dict

    def hparams_for(self, shape) -> dict:
        if callable(self.hparams):
            return dict(self.hparams(int(shape[-1]) if len(shape) == 3 else 1))
        return dict(self.hparams)


def _same_factory(a, b) -> bool:
    """The same function, possibly from a second execution of its module (a config file that
    defines a model runs once to check the command line and once to build the config)."""
    if a is b:
        return True
    code_a, code_b = getattr(a, "__code__", None), getattr(b, "__code__", None)
    return (
        getattr(a, "__module__", None) == getattr(b, "__module__", None)
        and getattr(a, "__qualname__", None) == getattr(b, "__qualname__", None)
        and code_a is not None
        and code_b is not None
        and code_a.co_code == code_b.co_code
    )


def register(name: str, *, tiny: dict | Callable[[int], dict] | None = None, shapes=None):
    """Decorator: register a factory ``f(**hparams) -> model`` under ``name``.

    Every hyperparameter of the factory must be a keyword argument with a default; ``create``
    records them all in ``model.hparams``. ``tiny`` gives small widths for tests (see
    :class:`TinySpec`); ``shapes`` overrides the tiny event shapes (default: images
    ``(3, 3, 1)``, ``(2, 3, 3)`` and ``(2, 2, 1)``; audio ``(12,)`` and ``(6,)``). Registering
    the same factory again (its module imported twice) replaces it; a different factory under
    a taken name is an error.
    """

    def wrap(factory):
        if name in _FACTORIES and not _same_factory(_FACTORIES[name], factory):
            raise ValueError(
                f"model {name!r} is already registered by "
                f"{_FACTORIES[name].__module__}.{_FACTORIES[name].__qualname__}; "
                f"choose another name for {factory.__module__}.{factory.__qualname__}"
            )
        _FACTORIES[name] = factory
        params = inspect.signature(factory).parameters
        default = IMAGE_SHAPES if "image_shape" in params else AUDIO_SHAPES
        _TINY[name] = TinySpec(tiny or {}, dict(shapes or default))
        return factory

    return wrap


def names() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_FACTORIES)


def hparam_names(name: str) -> list[str]:
    """The hyperparameters that model ``name`` accepts."""
    return list(inspect.signature(_get(name)).parameters)


def _get(name: str):
    if name not in _FACTORIES:
        raise ValueError(f"unknown model {name!r}; registered models: {names()}")
    return _FACTORIES[name]


def create(name: str, **hparams):
    """Build the model registered as ``name`` with the given hyperparameters.

    Raises ValueError for an unknown name (listing the registered ones) or an unknown
    hyperparameter (listing the accepted ones).
    """
    factory = _get(name)
    accepted = inspect.signature(factory).parameters
    unknown = sorted(set(hparams) - set(accepted))
    if unknown:
        raise ValueError(
            f"unknown hyperparameter(s) {unknown} for model {name!r}; accepted: {list(accepted)}"
        )
    model = factory(**hparams)
    model.name = name
    # Record every hyperparameter, defaults included (the values the factory normalised win).
    bound = inspect.signature(factory).bind(**hparams)
    bound.apply_defaults()
    model.hparams = {**bound.arguments, **model.hparams}
    return model


def tiny_spec(name: str) -> TinySpec:
    """The tiny sizes model ``name`` registered."""
    _get(name)
    return _TINY[name]


def tiny_shape(name: str, role: str = "grey") -> tuple[int, ...] | None:
    """The tiny event shape of ``name`` for ``role`` (None where the model has no such role)."""
    shape = tiny_spec(name).shapes.get(role)
    return None if shape is None else tuple(shape)


def create_tiny(
    name: str, role: str = "grey", *, num_levels: int = 4, num_classes: int = 0, **hparams
):
    """A tiny instance of model ``name`` for tests and ``--tiny`` benchmarks: its registered
    small widths at the event shape of ``role`` (see :func:`register`), then ``hparams``."""
    shape = tiny_shape(name, role)
    if shape is None:
        raise ValueError(
            f"model {name!r} has no tiny {role!r} shape; it has {tiny_spec(name).shapes}"
        )
    accepted = hparam_names(name)
    hp = tiny_spec(name).hparams_for(shape)
    hp["image_shape" if "image_shape" in accepted else "length"] = (
        shape if len(shape) == 3 else shape[0]
    )
    hp["num_levels"] = num_levels
    if num_classes:
        hp["num_classes"] = num_classes
    hp.update(hparams)
    return create(name, **hp)
