"""The runner's public names in one place (``from jaxar import train``); the code lives in
:mod:`jaxar.runner`, one job per module."""

from jaxar.runner import (
    TrainState,
    build_model,
    create_train_state,
    data_options,
    evaluate,
    load_data,
    load_run,
    make_eval_step,
    make_optimizer,
    make_schedule,
    make_train_step,
    restore_run,
    train_and_evaluate,
)

__all__ = [
    "TrainState",
    "build_model",
    "create_train_state",
    "data_options",
    "evaluate",
    "load_data",
    "load_run",
    "make_eval_step",
    "make_optimizer",
    "make_schedule",
    "make_train_step",
    "restore_run",
    "train_and_evaluate",
]
