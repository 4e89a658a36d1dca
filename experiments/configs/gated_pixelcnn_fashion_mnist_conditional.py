"""Class-conditional Gated PixelCNN on Fashion-MNIST: ``gated_pixelcnn_fashion_mnist.py`` with
the label of each image fed to the model (a learned class embedding added to both gates of every
layer). Samples of one class:

Run:
    jaxar train --config experiments/configs/gated_pixelcnn_fashion_mnist_conditional.py \
        --workdir runs/gated_pixelcnn_fashion_mnist_conditional
    jaxar sample --workdir runs/gated_pixelcnn_fashion_mnist_conditional --class 3 --num 16

Result: not yet measured. What is needed: an accelerator for its budget of 20,000 steps of 64
(the data is on the development machine, Debian's dataset-fashion-mnist); the short CPU budget
of the same family is measured in the README's table.
"""

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.load("gated_pixelcnn_fashion_mnist.py", __file__)
    c.data.conditional = True
    return c
