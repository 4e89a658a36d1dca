"""Quickstart: a PixelCNN on scikit-learn's bundled 8x8 digits (17 grey levels), on a CPU.

Run:
    jaxar train --config experiments/configs/quickstart.py --workdir runs/quickstart

Sized from a longer probe (``--config.num_steps=800 --config.eval_every=100``, AMD EPYC 2-core
CPU, heavily loaded by other jobs): exact test bits/dim 2.102, 1.931, 1.873, 1.831 (step 500),
1.826 (600), 1.823 (700), 1.822 (800). The test figure falls fast to step 300 and then by less
than 0.005 per 100 steps, while the train figure keeps falling (1.74 at 800): 600 steps with an
evaluation every 100 show the useful part of the curve. (The earlier 1,500-step quickstart was
flat from step 500: 1.8256, 1.8253, 1.8269.)

Result (2026-11-30, AMD EPYC 2-core CPU with nothing else running, fresh clone at e15a2e7,
``jaxar train`` as above): exact test bits/dim over the 297 test digits 2.102, 1.922, 1.870,
1.847, 1.839 and 1.836 (81.4 nats per image) at steps 100 to 600, falling at every evaluation;
the whole command (start-up, compiles, training, evaluations, samples) took 51 s.
Again at 1dd36f2 (2026-12-02; the 1x1 layers are matrix products since 8b6c204, the same sums
in another order): 2.102, 1.931, 1.873, 1.848, 1.839, 1.836 on both cores; pinned to one core
2.101, 1.924, 1.868, 1.844, 1.837, 1.834.
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
    c.num_steps = 600
    c.eval_every = 100  # six test points: the curve shows the test figure falling
    c.checkpoint_every = 200
    c.log_every = 50
    c.optim.learning_rate = 2e-3
    c.num_samples = 64
    return c
