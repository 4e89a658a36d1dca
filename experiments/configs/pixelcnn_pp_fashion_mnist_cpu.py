"""PixelCNN++ on Fashion-MNIST under the short CPU budget of the README's results table.

Overrides pixelcnn_pp_fashion_mnist.py: 2 gated resnet blocks per stage of 32 features, 5
mixture components, and ``jaxar.config.short_cpu_budget`` (1,000 steps of 32 images). Dropout
and the weight EMA are off: half an epoch does not overfit, and an EMA of decay 0.999 over
1,000 steps would still weigh the initial weights by about a third.

Run:
    jaxar train --config experiments/configs/pixelcnn_pp_fashion_mnist_cpu.py \
        --workdir runs/pixelcnn_pp_fashion_mnist_cpu

Result: not yet measured.
"""

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.load("pixelcnn_pp_fashion_mnist.py", __file__)
    c.model.num_resnets = 2
    c.model.features = 32
    c.model.num_mixtures = 5
    c.model.dropout = 0.0
    c.ema_decay = 0.0
    return jaxar_config.short_cpu_budget(c)
