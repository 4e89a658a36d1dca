"""Diagonal BiLSTM PixelRNN on Fashion-MNIST (28x28 grey, 256 levels), sized for one
accelerator.

Overrides row_lstm_fashion_mnist.py (same data, optimiser and schedule) with the Diagonal
BiLSTM: 7 layers of 64 hidden units per direction, a 7x7 type-A first layer, two 1x1 output
layers (256 features, then the 256-way softmax).

Run:
    jaxar train --config experiments/configs/diagonal_bilstm_fashion_mnist.py \
        --workdir runs/diagonal_bilstm_fashion_mnist

Result: not yet measured. What is needed: an accelerator for its budget of 20,000 steps of 64
(the data is on the development machine, Debian's dataset-fashion-mnist); the short CPU budget
of the same family is measured in the README's table.
"""

import ml_collections

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.load("row_lstm_fashion_mnist.py", __file__)
    c.model_name = "diagonal_bilstm"
    c.model = ml_collections.ConfigDict(
        dict(hidden=64, num_layers=7, output_features=256, first_kernel=7)
    )
    return c
