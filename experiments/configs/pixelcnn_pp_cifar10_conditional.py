"""Class-conditional PixelCNN++ on CIFAR-10: ``pixelcnn_pp_cifar10.py`` with the label of each
image fed to the model (a learned class embedding added to the gates of every gated resnet
block), as in the class-conditional samples of Salimans et al. 2017. Samples of one class:

Run:
    jaxar train --config experiments/configs/pixelcnn_pp_cifar10_conditional.py \
        --workdir runs/pixelcnn_pp_cifar10_conditional
    jaxar sample --workdir runs/pixelcnn_pp_cifar10_conditional --class 3 --num 16

Result: not yet measured.
What is needed: cifar10 prepared as array_record (``tfds build cifar10
--file_format=array_record`` needs internet and TensorFlow, neither on the development machine)
and an accelerator for 500,000 steps.
"""

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.load("pixelcnn_pp_cifar10.py", __file__)
    c.data.conditional = True
    return c
