"""PixelCNN on Fashion-MNIST (28x28 grey, 256 levels), sized for one GPU.

Needs Debian's dataset-fashion-mnist (or point data.name at another idx:DIR / tfds:fashion_mnist).

Run:
    jaxar train --config experiments/configs/pixelcnn_fashion_mnist.py --workdir runs/pcnn_fm

Result: not yet measured on a GPU (see pixelcnn_fashion_mnist_cpu.py for the CPU run).
What is needed: an accelerator for its budget of 50,000 steps of 128 (the data, Debian's
dataset-fashion-mnist, is on the development machine); the short CPU budget of the same family
is measured in the README's table.
"""

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.default()
    c.data.name = jaxar_config.FASHION_MNIST
    c.model.features = 128
    c.model.num_blocks = 12
    c.model.output_features = 256
    c.batch_size = 128
    c.num_steps = 50_000
    c.eval_every = 5_000
    c.checkpoint_every = 5_000
    c.eval_batch_size = 1000
    c.ema_decay = 0.999
    return c
