"""The fork example's config: the model of ``examples/causal_conv1d.py`` on the 8x8 digits.

Run from the repository root (``imports`` are searched from the current directory)::

    jaxar train --config examples/causal_conv1d_config.py --workdir runs/causal_conv1d
    jaxar eval --workdir runs/causal_conv1d
    jaxar sample --workdir runs/causal_conv1d --num 16

What is needed to measure it: run the three commands (a few minutes on a 2-core CPU);
``tests/test_fork.py`` runs them at a few steps to check the plumbing, not the figure.
"""

import ml_collections

from jaxar import config


def get_config():
    c = config.load("../experiments/configs/quickstart.py", __file__)
    c.imports = ("examples.causal_conv1d",)  # registers "causal_conv1d"
    c.model_name = "causal_conv1d"
    c.model = ml_collections.ConfigDict(dict(features=32, num_layers=3, kernel=5))
    return c
