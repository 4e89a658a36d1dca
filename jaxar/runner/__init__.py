"""The experiment runner, one job per module:

* :mod:`~jaxar.runner.build`: config imports, data, the model (registry only);
* :mod:`~jaxar.runner.optim`: optimizer and learning-rate schedule;
* :mod:`~jaxar.runner.state`: the train state;
* :mod:`~jaxar.runner.steps`: the pure train step, evaluation sums, exact evaluation;
* :mod:`~jaxar.runner.loop`: ``train_and_evaluate``, the loop;
* :mod:`~jaxar.runner.restore`: checkpoints and rebuilding a run from its workdir.

What differs between kinds of model (the loss, evaluation, best metric, curves, end-of-run
artefacts) is the model's objective (:mod:`jaxar.objectives`), chosen once by
``model.objective()``.
"""

from jaxar.runner.build import DATA_HPARAMS, build_model, data_options, import_modules, load_data
from jaxar.runner.loop import train_and_evaluate
from jaxar.runner.optim import make_optimizer, make_schedule
from jaxar.runner.restore import (
    checkpointer,
    load_run,
    read_config,
    restore,
    restore_run,
    state_shapes,
)
from jaxar.runner.state import TrainState, create_train_state, new_state
from jaxar.runner.steps import evaluate, make_eval_step, make_train_step

__all__ = [
    "DATA_HPARAMS",
    "TrainState",
    "build_model",
    "checkpointer",
    "create_train_state",
    "data_options",
    "evaluate",
    "import_modules",
    "load_data",
    "load_run",
    "make_eval_step",
    "make_optimizer",
    "make_schedule",
    "make_train_step",
    "new_state",
    "read_config",
    "restore",
    "restore_run",
    "state_shapes",
    "train_and_evaluate",
]
