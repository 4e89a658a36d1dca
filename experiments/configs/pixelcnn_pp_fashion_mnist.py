"""PixelCNN++ on Fashion-MNIST (28x28 grey, 256 levels; the U-net runs 28 -> 14 -> 7 -> 14 ->
28). With one channel the mixture has no channel coefficients: 3 parameters per component.

The paper's architecture at a smaller width (ours): 3 gated resnet blocks per stage of 64
features, 5 mixture components, dropout 0.3; Adam (0.95, 0.9995) at 1e-3 decaying by 0.99999
per step, and weight EMA 0.999 for evaluation.

Needs Debian's dataset-fashion-mnist (or point data.name at another idx:DIR or
tfds:fashion_mnist).

Run:
    jaxar train --config experiments/configs/pixelcnn_pp_fashion_mnist.py \
        --workdir runs/pixelcnn_pp_fashion_mnist

Result: not yet measured.
What is needed: an accelerator for its budget of 50,000 steps of 64 (the data, Debian's
dataset-fashion-mnist, is on the development machine); the short CPU budget of the same family
is measured in the README's table.
"""

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.load("pixelcnn_pp_cifar10.py", __file__)
    c.data.name = "idx:/usr/share/datasets/fashion-mnist"
    c.model.num_resnets = 3
    c.model.features = 64
    c.model.num_mixtures = 5
    c.model.dropout = 0.3
    c.num_steps = 50_000
    c.optim.decay_rate = 0.99999
    c.ema_decay = 0.999
    c.eval_every = 5000
    return c
