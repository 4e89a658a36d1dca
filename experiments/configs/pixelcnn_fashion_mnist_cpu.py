"""PixelCNN on Fashion-MNIST under the short CPU budget of the README's results table.

Overrides pixelcnn_fashion_mnist.py: narrower (32 features, 4 blocks), no EMA, and
``jaxar.config.short_cpu_budget`` (1,000 steps of 32 images).

Run:
    jaxar train --config experiments/configs/pixelcnn_fashion_mnist_cpu.py \
        --workdir runs/pcnn_fm_cpu

Result (2026-11-30, 2-core CPU shared with other jobs, load 5-10): test 3.448 bits/dim
(1873.5 nats per image) over all 10,000 test images after 1,000 steps; 30 min wall clock
(on an otherwise idle machine it is several times faster).
"""

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.load("pixelcnn_fashion_mnist.py", __file__)
    c.model.features = 32
    c.model.num_blocks = 4
    c.model.output_features = 64
    c.ema_decay = 0.0
    return jaxar_config.short_cpu_budget(c)
