"""A tiny CPU smoke variant of ``wavenet_speech.py``: the same speech data at 8 kHz, crops of
1,000 samples, 2 cycles of 5 layers with 16 channels, a few steps; it checks the whole pipeline
(wav source, training, exact test bits per sample, cached sampling to WAV) in minutes on a
laptop.

Run:
    jaxar train --config experiments/configs/wavenet_runlocal.py --workdir runs/wavenet_runlocal

Result (2-core CPU, 2026-11-30): test 7.997 bits per sample (5543.2 nats per 1,000-sample
window) after 40 steps, 21 s wall clock; two 1,000-sample WAVs written. A smoke test: 8 bits is
a uniform guess over the 256 levels.
"""

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.load("wavenet_speech.py", __file__)
    c.data.length = 1000
    c.model.residual_channels = 16
    c.model.gate_channels = 16
    c.model.skip_channels = 16
    c.model.num_cycles = 2
    c.model.layers_per_cycle = 5
    c.batch_size = 4
    c.eval_batch_size = 64
    c.num_steps = 40
    c.optim.warmup_steps = 5
    c.ema_decay = 0.0
    c.log_every = 10
    c.eval_every = 40
    c.checkpoint_every = 40
    c.num_samples = 2
    return c
