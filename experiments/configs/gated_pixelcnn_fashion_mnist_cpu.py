"""Gated PixelCNN on Fashion-MNIST under the short CPU budget of the README's results table.

Overrides gated_pixelcnn_fashion_mnist.py: 5 gated layers of 32 features, 64 output features,
and ``jaxar.config.short_cpu_budget`` (1,000 steps of 32 images).

Run:
    jaxar train --config experiments/configs/gated_pixelcnn_fashion_mnist_cpu.py \
        --workdir runs/gated_pixelcnn_fashion_mnist_cpu

Result (2026-11-30, 2-core CPU shared with other jobs, load 2-5): test 3.275 bits/dim
(1779.5 nats per image) over all 10,000 test images after 1,000 steps; 21 min wall clock.
Again at 4e64a44: test 3.2745 bits/dim (1779.47 nats per image), 17 min wall clock with a
niced mutation-testing job alongside. Again at 1dd36f2 (2026-12-02, 2-core AMD EPYC,
``taskset -c 1``, the other core running another training): test 3.2749 bits/dim (1779.67
nats per image), 17 min 35 s wall clock. Its train step is 2.1-2.4x faster than 53e9bb1's on
this processor (BENCHMARKS.md), yet the wall clock matches the earlier runs': the old code took
about 2 s per step here, twice the time per step those runs imply, so they probably ran on
another processor.
"""

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.load("gated_pixelcnn_fashion_mnist.py", __file__)
    c.model.features = 32
    c.model.num_layers = 5
    c.model.output_features = 64
    return jaxar_config.short_cpu_budget(c)
