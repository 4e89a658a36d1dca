"""A small CPU variant of ``gated_pixelcnn_cifar10.py``: the same data and model family, a few
layers of 24 features and a few steps, to check the whole pipeline end to end on a laptop.

Run:
    jaxar train --config experiments/configs/gated_pixelcnn_cifar10_runlocal.py \
        --workdir runs/gated_pixelcnn_cifar10_runlocal

Result: not yet measured.
"""

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.load("gated_pixelcnn_cifar10.py", __file__)
    c.model.features = 24
    c.model.num_layers = 4
    c.model.first_kernel = 5
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
