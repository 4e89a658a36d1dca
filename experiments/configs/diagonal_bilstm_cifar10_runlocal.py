"""A small CPU variant of ``diagonal_bilstm_cifar10.py``: the same data and model family, 2
layers of 12 hidden units per direction and a few steps, to check the pipeline end to end.

Run:
    jaxar train --config experiments/configs/diagonal_bilstm_cifar10_runlocal.py \
        --workdir runs/diagonal_bilstm_cifar10_runlocal

Result: not yet measured.
"""

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.load("diagonal_bilstm_cifar10.py", __file__)
    c.model.hidden = 12
    c.model.num_layers = 2
    c.model.output_features = 48
    c.batch_size = 16
    c.eval_batch_size = 100
    c.num_steps = 200
    c.optim.warmup_steps = 20
    c.ema_decay = 0.0
    c.log_every = 20
    c.eval_every = 200
    c.checkpoint_every = 200
    c.num_samples = 4
    return c
