"""Diagonal BiLSTM on binarized MNIST, the setting of van den Oord et al. 2016 ("Pixel Recurrent
Neural Networks"): 7 Diagonal BiLSTM layers of 16 hidden units per direction, a 7x7 type-A
first layer, two 1x1 output layers and a 2-way softmax per pixel. The paper reports a test
negative log-likelihood of 79.20 nats per image. The 32 output features, the batch size and the
optimiser schedule are ours.

Data: ``tfds:binarized_mnist`` (the fixed binarization of Larochelle & Murray; prepare it with
``tfds build binarized_mnist``); the runner fills ``num_levels = 2`` from it and reports test
nats per example next to bits/dim.

Run:
    jaxar train --config experiments/configs/diagonal_bilstm_binarized_mnist.py \
        --workdir runs/diagonal_bilstm_binarized_mnist

Result: not yet measured.
What is needed: binarized_mnist prepared as array_record (``tfds build binarized_mnist
--file_format=array_record`` needs internet and TensorFlow, neither on the development machine)
and an accelerator for 100,000 steps.
"""

import ml_collections

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.default()
    c.data.name = "tfds:binarized_mnist"
    c.model_name = "diagonal_bilstm"
    c.model = ml_collections.ConfigDict(
        dict(hidden=16, num_layers=7, output_features=32, first_kernel=7)
    )
    c.batch_size = 64
    c.num_steps = 100_000
    c.optim.learning_rate = 1e-3
    c.optim.warmup_steps = 1000
    c.log_every = 200
    c.eval_every = 10_000
    c.eval_batch_size = 1000
    c.checkpoint_every = 5000
    c.num_samples = 64
    return c
