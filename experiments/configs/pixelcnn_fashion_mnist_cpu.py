"""PixelCNN on Fashion-MNIST under the short CPU budget of the README's results table.

Overrides pixelcnn_fashion_mnist.py: narrower (32 features, 4 blocks), no EMA, and
``jaxar.config.short_cpu_budget`` (1,000 steps of 32 images).

Run:
    jaxar train --config experiments/configs/pixelcnn_fashion_mnist_cpu.py --workdir runs/pcnn_fm_cpu

Result: not yet measured.
"""

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.load("pixelcnn_fashion_mnist.py", __file__)
    c.model.features = 32
    c.model.num_blocks = 4
    c.model.output_features = 64
    c.ema_decay = 0.0
    return jaxar_config.short_cpu_budget(c)
