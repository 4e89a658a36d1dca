"""Row LSTM on CIFAR-10 (32x32 RGB, 256 levels), the 12-layer setting of van den Oord et al.
2016 ("Pixel Recurrent Neural Networks"): 12 Row LSTM layers, kernels of width 3, a 7x7
type-A first layer, two 1x1 output layers, a 256-way softmax per sub-pixel, every convolution
masked by colour group. The paper reports 3.07 bits/dim for the Row LSTM. Its CIFAR-10 models
have 128 hidden units and 1024 output features (as we read its table of architectures); here
126 and 1023, the nearest multiples of 3, so every layer splits evenly into R, G, B groups.
The batch size and optimiser schedule are ours.

Run (an accelerator; tfds must have cifar10 prepared, e.g. ``tfds build cifar10``):
    jaxar train --config experiments/configs/row_lstm_cifar10.py --workdir runs/row_lstm_cifar10

Compile time of the jitted train step (batch 64, float32) on a 2-core CPU shared with other
jobs (load average about 9), jax 0.10.2: trace and lower 6.7 s, XLA compile 38.9 s; measured
with the command in diagonal_bilstm_cifar10.py's docstring, given this file's path.

Result: not yet measured.
What is needed: cifar10 prepared as array_record (``tfds build cifar10
--file_format=array_record`` needs internet and TensorFlow, neither on the development machine)
and an accelerator for 300,000 steps.
"""

import ml_collections

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.default()
    c.data.name = "tfds:cifar10"
    c.model_name = "row_lstm"
    c.model = ml_collections.ConfigDict(
        dict(hidden=126, num_layers=12, output_features=1023, first_kernel=7, kernel=3)
    )
    c.batch_size = 64
    c.eval_batch_size = 256
    c.num_steps = 300_000
    c.optim.learning_rate = 1e-3
    c.optim.warmup_steps = 2000
    c.ema_decay = 0.9995
    c.log_every = 200
    c.eval_every = 10_000
    c.checkpoint_every = 5000
    c.num_samples = 16
    return c
