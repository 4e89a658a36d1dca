"""WaveNet (van den Oord et al. 2016) on real speech: Debian's asterisk-core-sounds-en-wav, the
telephony prompts of one speaker (Allison), 8 kHz mono WAV, about 23 minutes in 568 files.

Model: the paper-sized stack of ``benchmarks/wavenet_generate.py``: 3 cycles of 10 layers with
dilations 1..512, kernel 3 (receptive field 6,139 samples, 0.77 s), 64 residual, 128 gate and
64 skip channels, a 256-way softmax over mu-law (mu = 255) levels; unconditional. Data: 1 s
crops (8,000 samples): random crops of the training files each epoch, and every window of the
test files (a fixed 10% of the files) for the test score, reported as bits per sample (the
runner's bits/dim) and nats. ``jaxar sample`` writes the samples as 8 kHz WAV files.

Needs: ``apt-get install asterisk-core-sounds-en-wav`` (files in
/usr/share/asterisk/sounds/en_US_f_Allison). An accelerator is advised.

Run:
    jaxar train --config experiments/configs/wavenet_speech.py --workdir runs/wavenet_speech

Result: not yet measured: 100,000 steps of this model need an accelerator (none was lent).
``wavenet_speech_cpu.py`` is a short CPU budget of it with a measured result.

Smoke variant (crops of 1,000 samples, 2 cycles of 5 layers of 16 channels, 40 steps; checks
the wav source, training, exact test bits per sample and cached sampling to WAV in minutes):
    jaxar train --config experiments/configs/wavenet_speech.py:runlocal \
        --workdir runs/wavenet_runlocal
Result of the smoke variant (2026-11-30, 2-core CPU loaded by other jobs, working tree between
e09c744 and 41d0c5a): 7.997 exact test bits per sample (5543.1 nats per 1,000-sample window)
after 40 steps; a smoke test (8 bits is a uniform guess over the 256 levels).
"""

import ml_collections

from jaxar import config as jaxar_config


def get_config(arg: str = ""):
    c = jaxar_config.default()
    c.data.name = "wav:/usr/share/asterisk/sounds/en_US_f_Allison"
    c.data.length = 8000
    c.data.sample_rate = 8000
    c.model_name = "wavenet"
    c.model = ml_collections.ConfigDict(
        dict(
            residual_channels=64, gate_channels=128, skip_channels=64, kernel_size=3,
            num_cycles=3, layers_per_cycle=10,
        )
    )  # fmt: skip
    c.batch_size = 16
    c.eval_batch_size = 16
    c.num_steps = 100_000
    c.optim.learning_rate = 1e-3
    c.optim.warmup_steps = 1000
    c.optim.grad_clip = 1.0
    c.ema_decay = 0.9999
    c.log_every = 100
    c.eval_every = 5000
    c.checkpoint_every = 5000
    c.num_samples = 4
    return jaxar_config.runlocal(
        c, arg, num_steps=40, batch_size=4, eval_batch_size=64, num_samples=2,
        data=dict(length=1000), residual_channels=16, gate_channels=16, skip_channels=16,
        num_cycles=2, layers_per_cycle=5,
    )  # fmt: skip
