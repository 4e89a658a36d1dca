"""Quickstart: a PixelCNN on scikit-learn's bundled 8x8 digits (17 grey levels), on a CPU.

Run:
    jaxar train --config experiments/configs/quickstart.py --workdir runs/quickstart

Result (2026-11-30, 2-core x86-64 CPU shared with other jobs, load 5-10, fresh clone and venv):
test 1.822 bits/dim at step 1,000 (best checkpoint), 1.830 bits/dim (81.2 nats per image) at
step 1,500; training took 2 min 07 s, install plus training 3 min 58 s.
"""

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.default()
    c.data.name = "digits"
    c.model.features = 64
    c.model.num_blocks = 4
    c.model.output_features = 64
    c.model.first_kernel = 5
    c.batch_size = 64
    c.num_steps = 1500
    c.eval_every = 500
    c.checkpoint_every = 500
    c.log_every = 50
    c.optim.learning_rate = 2e-3
    c.num_samples = 64
    return c
