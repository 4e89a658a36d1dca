"""``wavenet_speech.py`` as a vocoder: every layer is also conditioned on the log-mel
spectrogram of the audio (80 mel bands up to 4 kHz, one frame per 10 ms = 80 samples, 512-point
FFT), upsampled to the sample rate by a learned transposed convolution (stride and width 80).
The test score is the exact -log p(x | mel) in bits per sample; ``jaxar sample`` resynthesises
the first test windows from their spectrograms and writes them beside the originals
(``*_reference_K.wav``).

Run:
    jaxar train --config experiments/configs/wavenet_vocoder_speech.py \
        --workdir runs/wavenet_vocoder_speech

Result: not yet measured (an accelerator is advised); see ``wavenet_vocoder_speech_cpu.py``.
What is needed: an accelerator for its 100,000 steps (none was lent); the data is on the
development machine, and the CPU vocoder config is measured in the README.
"""

from jaxar import config as jaxar_config


def get_config():
    c = jaxar_config.load("wavenet_speech.py", __file__)
    # The runner sets the model's local_features and local_hop from these.
    c.data.update(dict(features="log_mel", num_mels=80, feature_hop=80, fft_size=512))
    c.model.upsample = "transposed"
    return c
