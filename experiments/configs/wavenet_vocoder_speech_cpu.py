"""``wavenet_speech_cpu.py`` (the same model, data and budget) conditioned on log-mel frames as
in ``wavenet_vocoder_speech.py``, upsampled by repetition; the two test scores differ only by
what the spectrogram tells the model.

Run:
    jaxar train --config experiments/configs/wavenet_vocoder_speech_cpu.py \
        --workdir runs/wavenet_vocoder_speech_cpu

Result: not yet measured.
"""

from jaxar import config as jaxar_config


def get_config():
    vocoder = jaxar_config.load("wavenet_vocoder_speech.py", __file__)
    c = jaxar_config.load("wavenet_speech_cpu.py", __file__)
    c.data.update({k: vocoder.data[k] for k in ("features", "num_mels", "feature_hop", "fft_size")})
    return c
