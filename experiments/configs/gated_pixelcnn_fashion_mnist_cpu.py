"""Gated PixelCNN on Fashion-MNIST under the short CPU budget of the README's results table.

Overrides gated_pixelcnn_fashion_mnist.py: 5 gated layers of 32 features, 64 output features,
and ``jaxar.config.short_cpu_budget`` (1,000 steps of 32 images).

Run:
    jaxar train --config experiments/configs/gated_pixelcnn_fashion_mnist_cpu.py \
        --workdir runs/gated_pixelcnn_fashion_mnist_cpu

Result: not yet measured.
"""

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.load("gated_pixelcnn_fashion_mnist.py", __file__)
    c.model.features = 32
    c.model.num_layers = 5
    c.model.output_features = 64
    return jaxar_config.short_cpu_budget(c)
