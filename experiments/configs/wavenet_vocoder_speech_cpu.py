"""``wavenet_speech_cpu.py`` (the same model, data and budget) conditioned on log-mel frames as
in ``wavenet_vocoder_speech.py``, upsampled by repetition; the two test scores differ only by
what the spectrogram tells the model.

Run:
    jaxar train --config experiments/configs/wavenet_vocoder_speech_cpu.py \
        --workdir runs/wavenet_vocoder_speech_cpu

Result (2-core CPU, 2026-11-30, nothing else running): test 4.544 bits per sample (6299.1 nats
per 2,000-sample window), exact -log p(x | mel), over all 476 test windows, after 1,000 steps;
9 min 2 s wall clock (750 s user + 248 s system CPU time). The unconditional run scored 4.533,
so under this budget the spectrogram buys nothing net, although the model does use it: over all
476 test windows the same weights give 5.259 with frames shuffled between windows and 5.402 with
zeroed frames (``python experiments/feature_ablation.py --workdir
runs/wavenet_vocoder_speech_cpu``). The gap closed from 0.036 bits at step 500 (4.730 against
4.694, ``jaxar eval --checkpoint 500``) to 0.011 at step 1,000; with 2,500 steps (both runs with
``--config.num_steps=2500 --config.eval_every=2500 --config.checkpoint_every=500``) the vocoder
scores 4.059 bits per sample (5627.5 nats per window; 23 min 9 s, 1,923 s user + 640 s system)
against 4.164 unconditional: 0.105 bits per sample (145 nats per window) better, and 5.745 /
6.354 with shuffled / zeroed frames. ``jaxar sample`` resynthesises the first test windows from
their frames and writes the originals beside them. The test windows match the unconditional
run's except that clips are padded to whole 10 ms frames (at most 79 samples of silence at the
end of 56 of the 57 test clips, under 0.5% of the test samples).
"""

from jaxar import config as jaxar_config


def get_config():
    vocoder = jaxar_config.load("wavenet_vocoder_speech.py", __file__)
    c = jaxar_config.load("wavenet_speech_cpu.py", __file__)
    c.data.update({k: vocoder.data[k] for k in ("features", "num_mels", "feature_hop", "fft_size")})
    return c
