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

Result: the 1,000-step run is not measured yet (the shared 2-core machine ran 20 s a step this
session). 200 steps (``--config.num_steps=200 --config.eval_every=200
--config.checkpoint_every=200``, workdir /work/runs/wavenet_speakers_cpu_200, 2026-11-30, load
average about 22): test 6.654 bits per sample (9224.42 nats per 2,000-sample window), exact over
every test window of the five voices with the true speaker. Still needed: the same with a
wrong speaker (``speaker_ablation.py``) and the 1,000-step figures.
"""

import os

from jaxar import config as jaxar_config

VOICES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "asterisk_voices")


def get_config():
    c = jaxar_config.load("wavenet_speech_cpu.py", __file__)
    c.data.name = "wav:" + os.path.normpath(VOICES)
    c.data.conditional = True
    return c
