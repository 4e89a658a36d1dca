"""WaveNet through the runner on audio: unconditional and log-mel vocoder runs, WAV samples."""

import os

import ml_collections
import numpy as np
import pytest
import soundfile
from test_train import _cli

from jaxar import config as jaxar_config
from jaxar import train


@pytest.fixture
def speech_dir(tmp_path):
    """Eight 0.3 s chirps at 8 kHz (a stand-in for speech: pitch moves within a clip)."""
    rng = np.random.default_rng(0)
    d = tmp_path / "speech"
    d.mkdir()
    for k in range(8):
        t = np.arange(2400) / 8000
        f0 = 150 + 40 * k + 200 * t
        audio = 0.4 * np.sin(2 * np.pi * np.cumsum(f0) / 8000) + 0.01 * rng.standard_normal(2400)
        soundfile.write(d / f"utt{k}.wav", audio.astype(np.float32), 8000)
    return d


def _config(data_dir, **data):
    c = jaxar_config.default()
    c.data.name = f"wav:{data_dir}"
    c.data.length = 400
    c.data.sample_rate = 8000
    for k, v in data.items():
        c.data[k] = v
    c.model_name = "wavenet"
    c.model = ml_collections.ConfigDict(
        dict(residual_channels=8, gate_channels=8, skip_channels=8, num_cycles=1,
             layers_per_cycle=3)
    )  # fmt: skip
    c.batch_size = 4
    c.eval_batch_size = 8
    c.num_steps = 4
    c.log_every = 2
    c.eval_every = 4
    c.checkpoint_every = 4
    c.optim.warmup_steps = 1
    c.num_samples = 2
    return c


VOCODER = dict(features="log_mel", feature_hop=40, num_mels=8, fft_size=128)


def test_vocoder_run_fills_the_model_and_writes_samples_with_references(speech_dir, tmp_path):
    c = _config(speech_dir, **VOCODER)
    model = train.build_model(c, train.load_data(c)[2])
    assert model.local_features == 8 and model.net.local_hop == 40 and model.num_frames == 10
    workdir = tmp_path / "run"
    metrics = train.train_and_evaluate(c, str(workdir))
    assert np.isfinite(metrics["test/bits_per_dim"]) and metrics["test/bits_per_dim"] < 8.0
    for stem in ("samples", "reference"):
        assert np.load(workdir / f"{stem}.npy").shape == (2, 400)
        for k in range(2):
            audio, rate = soundfile.read(workdir / f"{stem}_{k}.wav")
            assert rate == 8000 and audio.shape == (400,)
    # The references are the first test windows, whose features the samples were given.
    _, test_src, _ = train.load_data(c)
    np.testing.assert_array_equal(np.load(workdir / "reference.npy")[1], test_src[1]["x"])

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = _cli("eval", f"--workdir={workdir}", cwd=repo)
    assert r.returncode == 0 and "test bits/sample" in r.stdout, r.stderr[-3000:]
    r = _cli("sample", f"--workdir={workdir}", "--num=3", f"--out={tmp_path}/s", cwd=repo)
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("s.npy", "s_2.wav", "s_reference.npy", "s_reference_2.wav"):
        assert os.path.exists(f"{tmp_path}/{name}"), name
    assert soundfile.info(f"{tmp_path}/s_0.wav").samplerate == 8000


def test_unconditional_run_writes_wav_samples_only(speech_dir, tmp_path):
    metrics = train.train_and_evaluate(_config(speech_dir), str(tmp_path))
    assert np.isfinite(metrics["test/bits_per_dim"])
    assert os.path.exists(tmp_path / "samples_1.wav")
    assert not os.path.exists(tmp_path / "reference.npy")


def test_features_and_model_must_match(speech_dir):
    c = _config(speech_dir)
    c.model.local_features = 8
    with pytest.raises(ValueError, match="set config.data.features"):
        train.build_model(c, train.load_data(c)[2])
    c = _config(speech_dir, **VOCODER)
    c.model.local_features = 16  # the data has 8 mels
    with pytest.raises(ValueError, match="local_features=16.*8 features per frame"):
        train.build_model(c, train.load_data(c)[2])
    c = _config(speech_dir, **VOCODER)
    c.model_name = "transformer"
    c.model = ml_collections.ConfigDict()
    with pytest.raises(ValueError, match="takes none; unset config.data.features"):
        train.build_model(c, train.load_data(c)[2])
