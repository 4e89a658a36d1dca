"""The model registry: ``create(name, **hparams)`` builds any registered model by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from jaxar.models.base import AutoregressiveModel

__all__ = ["create", "names", "register"]

_FACTORIES: dict[str, Callable[..., AutoregressiveModel]] = {}


def register(name: str):
    """Decorator: register a factory ``f(**hparams) -> AutoregressiveModel`` under ``name``.

    Every hyperparameter of the factory must be a keyword argument with a default; ``create``
    records them all in ``model.hparams``.
    """

    def wrap(factory):
        if name in _FACTORIES:
            raise ValueError(f"model {name!r} is already registered")
        _FACTORIES[name] = factory
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


def create(name: str, **hparams) -> AutoregressiveModel:
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
