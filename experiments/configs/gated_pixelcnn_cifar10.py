"""Gated PixelCNN on CIFAR-10 (32x32 RGB, 256 levels), the setting of van den Oord et al. 2016,
"Conditional Image Generation with PixelCNN Decoders": 15 gated layers of 192 feature maps
(64 per colour group), a 256-way softmax per sub-pixel. The paper reports 3.03 bits/dim on the
test set. The kernel sizes (7 first, then 3), the output width and the optimiser schedule are
ours: the paper does not list them.

Run (an accelerator; tfds must have cifar10 prepared, e.g. ``tfds build cifar10``):
    jaxar train --config experiments/configs/gated_pixelcnn_cifar10.py \
        --workdir runs/gated_pixelcnn_cifar10

Result: not yet measured. What is needed: CIFAR-10 prepared as array_record (``tfds build
cifar10 --file_format=array_record`` needs internet and TensorFlow, neither on the development
machine) and an accelerator for the full budget.

Small CPU variant (same data; 4 layers of 24 features; the budget of
``jaxar.config.runlocal``), for checking the pipeline on a laptop; needs the same data:
    jaxar train --config experiments/configs/gated_pixelcnn_cifar10.py:runlocal \
        --workdir runs/gated_pixelcnn_cifar10_runlocal
"""

import ml_collections

from jaxar import config as jaxar_config


def get_config(arg: str = ""):
    c = jaxar_config.default()
    c.data.name = "tfds:cifar10"
    c.model_name = "gated_pixelcnn"
    c.model = ml_collections.ConfigDict(
        dict(features=192, num_layers=15, first_kernel=7, kernel=3, output_features=768)
    )
    c.batch_size = 64
    c.eval_batch_size = 256
    c.num_steps = 300_000
    c.optim.learning_rate = 1e-3
    c.optim.schedule = "cosine"
    c.optim.warmup_steps = 2000
    c.ema_decay = 0.9995
    c.log_every = 200
    c.eval_every = 10_000
    c.checkpoint_every = 5000
    c.num_samples = 16
    return jaxar_config.runlocal(
        c, arg, features=24, num_layers=4, first_kernel=5, output_features=48
    )
