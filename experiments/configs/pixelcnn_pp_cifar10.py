"""PixelCNN++ on CIFAR-10 (32x32 RGB, 256 levels), the configuration of Salimans et al. 2017
("PixelCNN++", table/section 3), who report 2.92 bits/dim on the test set.

Six-stage U-net (32 -> 16 -> 8 -> 16 -> 32) of gated resnet blocks, 5 blocks per stage, 160
features per stream, a mixture of 10 discretized logistics per pixel, dropout 0.5, Adam with
beta = (0.95, 0.9995) at learning rate 1e-3 decaying by 0.999995 per step, and an exponential
moving average of the weights (0.9995) used for evaluation and sampling. No weight norm (the
reference code's data-dependent init is optional here and off) and no gradient clipping or
warm-up, as in the paper. Ours: the global batch of 64 (the paper used 12-16 per GPU on 8 GPUs)
and the step count.

Run (an accelerator; tfds must have cifar10 prepared, e.g. ``tfds build cifar10``):
    jaxar train --config experiments/configs/pixelcnn_pp_cifar10.py \
        --workdir runs/pixelcnn_pp_cifar10

Result: not yet measured. What is needed: CIFAR-10 prepared as array_record (``tfds build
cifar10 --file_format=array_record`` needs internet and TensorFlow, neither on the development
machine) and an accelerator for the full budget.

Small CPU variant (same data; one gated resnet per stage of 16 features, 3 logistics; the budget of
``jaxar.config.runlocal``), for checking the pipeline on a laptop; needs the same data:
    jaxar train --config experiments/configs/pixelcnn_pp_cifar10.py:runlocal \
        --workdir runs/pixelcnn_pp_cifar10_runlocal
"""

import ml_collections

from jaxar import config as jaxar_config


def get_config(arg: str = ""):
    c = jaxar_config.default()
    c.data.name = "tfds:cifar10"
    c.model_name = "pixelcnn_pp"
    c.model = ml_collections.ConfigDict(
        dict(num_resnets=5, features=160, num_mixtures=10, dropout=0.5)
    )
    c.batch_size = 64
    c.eval_batch_size = 500
    c.num_steps = 500_000
    c.optim.learning_rate = 1e-3
    c.optim.schedule = "exponential"
    c.optim.decay_rate = 0.999995
    c.optim.warmup_steps = 0
    c.optim.b1 = 0.95
    c.optim.b2 = 0.9995
    c.optim.grad_clip = 0.0
    c.ema_decay = 0.9995
    c.log_every = 500
    c.eval_every = 10_000
    c.checkpoint_every = 5000
    c.num_samples = 16  # naive sampling: one full forward pass per pixel
    return jaxar_config.runlocal(c, arg, num_resnets=1, features=16, num_mixtures=3, dropout=0.1)
