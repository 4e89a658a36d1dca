"""A small CPU variant of ``pixelcnn_pp_cifar10.py``: the same data, model family and optimiser,
one gated resnet block per stage of 16 features, 3 mixture components and a few steps, to check
the pipeline end to end on a laptop.

Run:
    jaxar train --config experiments/configs/pixelcnn_pp_cifar10_runlocal.py \
        --workdir runs/pixelcnn_pp_cifar10_runlocal

Result: not yet measured.
"""

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.load("pixelcnn_pp_cifar10.py", __file__)
    c.model.num_resnets = 1
    c.model.features = 16
    c.model.num_mixtures = 3
    c.model.dropout = 0.1
    c.batch_size = 16
    c.eval_batch_size = 100
    c.num_steps = 200
    c.ema_decay = 0.99
    c.log_every = 20
    c.eval_every = 200
    c.checkpoint_every = 200
    c.num_samples = 2
    return c
