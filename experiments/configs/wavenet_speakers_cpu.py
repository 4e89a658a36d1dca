"""One WaveNet, five speakers: ``wavenet_speech_cpu.py`` on Debian's five asterisk voices (one
per language: en_US Allison, es_MX Allison, fr_CA June, it_IT Carlo, ru_RU IvrvoiceRU; 8 kHz),
globally conditioned on the speaker (``data.conditional = True``: a learned speaker embedding
enters every layer's gate).

Data: ``experiments/data/asterisk_voices`` holds links named ``en es fr it ru`` (labels 0..4,
sorted) to the voices' folders, so ``wav:`` labels each clip by its sub-folder (see
:mod:`jaxar.data.wav`). Needs ``apt-get install asterisk-core-sounds-{en,es,fr,it,ru}-wav``
(``.ci/run`` installs them).

Run:
    jaxar train --config experiments/configs/wavenet_speakers_cpu.py \\
        --workdir runs/wavenet_speakers_cpu
    python experiments/speaker_ablation.py --workdir runs/wavenet_speakers_cpu
    jaxar sample --workdir runs/wavenet_speakers_cpu --class K   # K = 0..4, each voice

Result (2026-12-01, commit 18abff4, 2-core AMD EPYC, one core (``taskset -c 1``) with another
training on the other; workdir /work/runs/wavenet_speakers_cpu_1000): after 1,000 steps (13 min
24 s) test 5.0436 bits per sample (6991.87 nats per 2,000-sample window), exact over all 3,577
test windows of the five voices with the true speaker; ``speaker_ablation.py`` (6 min 16 s):
5.0548 / 5.0557 / 5.0562 / 5.0560 with speaker k + 1 / 2 / 3 / 4 (mod 5), 5.0557 on average, so
the label is worth 0.012 bits/sample at this budget. 200 steps gave 6.654 with the true speaker.
"""

import os

from jaxar import config as jaxar_config

VOICES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "asterisk_voices")


def get_config():
    c = jaxar_config.load("wavenet_speech_cpu.py", __file__)
    c.data.name = "wav:" + os.path.normpath(VOICES)
    c.data.conditional = True
    return c
