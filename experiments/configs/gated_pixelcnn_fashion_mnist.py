"""Gated PixelCNN on Fashion-MNIST (28x28 grey, 256 levels) from the IDX files of Debian's
``dataset-fashion-mnist`` package: 10 gated layers of 64 features, a 256-way softmax per pixel.

Run:
    jaxar train --config experiments/configs/gated_pixelcnn_fashion_mnist.py \
        --workdir runs/gated_pixelcnn_fashion_mnist

Result: not yet measured. What is needed: an accelerator for its budget of 20,000 steps of 64
(the data is on the development machine, Debian's dataset-fashion-mnist); the short CPU budget
of the same family is measured in the README's table.
"""

import ml_collections

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.default()
    c.data.name = "idx:/usr/share/datasets/fashion-mnist"
    c.model_name = "gated_pixelcnn"
    c.model = ml_collections.ConfigDict(
        dict(features=64, num_layers=10, first_kernel=7, kernel=3, output_features=256)
    )
    c.batch_size = 64
    c.num_steps = 20_000
    c.optim.learning_rate = 1e-3
    c.optim.warmup_steps = 500
    c.log_every = 100
    c.eval_every = 5000
    c.checkpoint_every = 2000
    c.num_samples = 16
    return c
