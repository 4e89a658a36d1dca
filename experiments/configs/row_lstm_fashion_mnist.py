"""Row LSTM PixelRNN on Fashion-MNIST (28x28 grey, 256 levels), sized for one accelerator.

7 Row LSTM layers of 64 hidden units (a residual stream of 128 features), input-to-state and
state-to-state kernels of width 3, a 7x7 type-A first layer, two 1x1 output layers (256
features, then the 256-way softmax). Data: the IDX files of Debian's ``dataset-fashion-mnist``
(or point ``data.name`` at another ``idx:DIR`` or ``tfds:fashion_mnist``).

Run:
    jaxar train --config experiments/configs/row_lstm_fashion_mnist.py \
        --workdir runs/row_lstm_fashion_mnist

Result: not yet measured.
What is needed: an accelerator for its budget of 20,000 steps of 64 (the data, Debian's
dataset-fashion-mnist, is on the development machine); the short CPU budget of the same family
is measured in the README's table.
"""

import ml_collections

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.default()
    c.data.name = jaxar_config.FASHION_MNIST
    c.model_name = "row_lstm"
    c.model = ml_collections.ConfigDict(
        dict(hidden=64, num_layers=7, output_features=256, first_kernel=7, kernel=3)
    )
    c.batch_size = 64
    c.num_steps = 20_000
    c.optim.learning_rate = 1e-3
    c.optim.warmup_steps = 500
    c.log_every = 100
    c.eval_every = 5000
    c.eval_batch_size = 500
    c.checkpoint_every = 2000
    c.num_samples = 16
    return c
