"""A short CPU budget of ``wavenet_speech.py``: the same speech (Debian's
asterisk-core-sounds-en-wav, 8 kHz) and test split, a smaller stack (2 cycles of dilations
1..128, kernel 3: receptive field 1,021 samples, 0.13 s; 32 residual, 64 gate and 32 skip
channels), 1,000 steps of 8 crops of 2,000 samples (0.25 s). ``wavenet_vocoder_speech_cpu.py``
trains the same model with log-mel conditioning under the same budget.

Run:
    jaxar train --config experiments/configs/wavenet_speech_cpu.py --workdir runs/wavenet_speech_cpu

Result (2-core CPU, 2026-11-30, with short test runs alongside): test 4.533 bits per sample
(6283.7 nats per 2,000-sample window), exact, over all 476 windows of the 57 test files, after
1,000 steps; 6 min 22 s wall clock (466 s user + 208 s system CPU time). Train bits per sample
went 7.84 (step 50) -> 4.76 (step 1,000). With ``--config.num_steps=2500
--config.eval_every=2500 --config.checkpoint_every=500`` (workdir runs/wavenet_speech_cpu_2500):
test 4.164 bits per sample (5772.9 nats per window), 15 min 16 s (1,143 s user + 526 s system).
Again at e7988fc (parameters now initialised by one jitted computation, which differs from
the op-by-op one in the last float bits): test 4.525 bits per sample (6273.1 nats per window),
8 min with a PixelCNN++ run sharing the two cores.
"""

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.load("wavenet_speech.py", __file__)
    c.data.length = 2000
    c.model.residual_channels = 32
    c.model.gate_channels = 64
    c.model.skip_channels = 32
    c.model.num_cycles = 2
    c.model.layers_per_cycle = 8
    c.batch_size = 8
    c.eval_batch_size = 64
    c.num_steps = 1000
    c.optim.warmup_steps = 50
    c.ema_decay = 0.0  # too few steps for an average to help
    c.log_every = 50
    c.eval_every = 1000
    c.checkpoint_every = 500
    c.num_samples = 4
    return c
