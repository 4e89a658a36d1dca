"""The wav:DIR source: reading, resampling, splitting, crops, trimming, errors."""

import logging
import math
import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
import soundfile

import jaxar.data
from jaxar.data.audio import mu_law_encode_np
from jaxar.distributions import mu_law_encode

ALLISON = "/usr/share/asterisk/sounds/en_US_f_Allison"


def _tone(seconds, rate, freq=440.0, amp=0.5):
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def wav_dir(tmp_path):
    """Six small files: 8 kHz and 16 kHz, one stereo, one short, one in a subfolder."""
    soundfile.write(tmp_path / "a.wav", _tone(0.5, 8000), 8000)
    soundfile.write(tmp_path / "b.wav", _tone(0.3, 16000, 1000.0), 16000)
    soundfile.write(tmp_path / "c.wav", np.stack([_tone(0.4, 8000), _tone(0.4, 8000)], 1), 8000)
    soundfile.write(tmp_path / "d.WAV", _tone(0.01, 8000), 8000)  # 80 samples: padded
    os.mkdir(tmp_path / "sub")
    soundfile.write(tmp_path / "sub" / "e.wav", _tone(0.25, 8000, 300.0), 8000)
    soundfile.write(tmp_path / "f.wav", _tone(0.2, 22050), 22050)
    (tmp_path / "notes.txt").write_text("not audio")
    return tmp_path


def _load(d, split, **kw):
    return jaxar.data.load(f"wav:{d}", split, **{"length": 400, "sample_rate": 8000, **kw})


def test_the_level_count_reaches_the_source(wav_dir):
    src = _load(wav_dir, "train", num_levels=16)
    assert src.info.num_levels == 16 and 0 <= min(src[0]["x"]) and max(src[0]["x"]) < 16


def test_splits_info_and_windows(wav_dir):
    train, test = _load(wav_dir, "train"), _load(wav_dir, "test")
    assert train.info == test.info
    assert train.info.kind == "audio" and train.info.sample_rate == 8000
    assert train.info.event_shape == (400,) and train.info.num_levels == 256
    assert set(train.files).isdisjoint(test.files)
    assert len(train.files) + len(test.files) == 6  # every .wav (any case, subfolders)
    assert len(test.files) == 1
    assert _load(wav_dir, "test").files == test.files  # deterministic
    # ceil(n / length) windows per file; every element is a full window of int32 levels
    for src in (train, test):
        counts = np.bincount([int(src[i]["file"]) for i in range(len(src))])
        want = [-(-max(400, round(soundfile.info(f).duration * 8000)) // 400) for f in src.files]
        np.testing.assert_array_equal(counts, want)
        for i in range(len(src)):
            x = src[i]["x"]
            assert x.shape == (400,) and x.dtype == np.int32
            assert 0 <= x.min() and x.max() < 256


def test_windows_are_mu_law_of_the_audio_and_cover_it(wav_dir):
    src = _load(wav_dir, "train", test_fraction=0.2)
    f = src.files.index(str(wav_dir / "a.wav"))
    want = mu_law_encode_np(soundfile.read(wav_dir / "a.wav", dtype="float32")[0])  # 4000
    xs = [src[i]["x"] for i in range(len(src)) if int(src[i]["file"]) == f]
    np.testing.assert_array_equal(np.concatenate(xs), want)  # 10 non-overlapping windows


def test_last_window_ends_at_file_end(wav_dir):
    src = _load(wav_dir, "train", length=300, test_fraction=0.2)
    f = src.files.index(str(wav_dir / "a.wav"))  # 4000 samples: 14 windows, last overlaps
    want = mu_law_encode_np(soundfile.read(wav_dir / "a.wav", dtype="float32")[0])
    xs = [src[i]["x"] for i in range(len(src)) if int(src[i]["file"]) == f]
    assert len(xs) == 14
    np.testing.assert_array_equal(xs[-1], want[-300:])


def test_resampling_keeps_frequency_and_amplitude(wav_dir):
    src = _load(wav_dir, "train", length=2400, test_fraction=0.2)
    f = src.files.index(str(wav_dir / "b.wav"))  # 1 kHz at 16 kHz -> 8 kHz
    x = next(src[i]["x"] for i in range(len(src)) if int(src[i]["file"]) == f)
    audio = np.asarray(jaxar.distributions.mu_law_decode(jnp.asarray(x)))
    spectrum = np.abs(np.fft.rfft(audio[200:2200] * np.hanning(2000)))
    assert np.argmax(spectrum) * 8000 / 2000 == pytest.approx(1000.0, abs=4.0)
    assert np.abs(audio[200:2200]).max() == pytest.approx(0.5, abs=0.03)
    assert src.stats.resampled >= 1 and src.stats.downmixed >= 0


def test_short_file_padded_and_counted(wav_dir, caplog):
    with caplog.at_level(logging.INFO, logger="jaxar.data.audio"):
        src = next(
            s for s in (_load(wav_dir, "train"), _load(wav_dir, "test")) if s.stats.padded_files
        )
    short = str(wav_dir / "d.WAV")
    assert src.stats.padded_files == [short]
    f = src.files.index(short)
    x = next(src[i]["x"] for i in range(len(src)) if int(src[i]["file"]) == f)
    assert np.all(x[80:] == mu_law_encode_np(np.zeros(1))[0])  # digital silence after 80
    assert "padded 1 clips" in caplog.text and "padded 0 clips" in caplog.text


def test_silence_trimming_counted_and_logged(tmp_path, caplog):
    rate = 8000
    audio = np.concatenate([np.zeros(1600), _tone(0.5, rate), np.zeros(800)]).astype(np.float32)
    soundfile.write(tmp_path / "x.wav", audio, rate)
    soundfile.write(tmp_path / "y.wav", audio, rate)
    with caplog.at_level(logging.INFO, logger="jaxar.data.audio"):
        src = _load(tmp_path, "train", trim_silence_db=40.0, test_fraction=0.5)
    assert src.stats.trimmed_files == 1
    assert src.stats.trimmed_seconds == pytest.approx(0.3, abs=0.011)
    assert src.stats.seconds == pytest.approx(0.5, abs=0.011)
    assert "trimmed 0.3 s of silence from 1 clips" in caplog.text
    untrimmed = _load(tmp_path, "train", test_fraction=0.5)
    assert untrimmed.stats.trimmed_files == 0 and untrimmed.stats.seconds == pytest.approx(0.8)


def test_empty_file_left_out_with_a_warning(wav_dir, caplog):
    soundfile.write(wav_dir / "z.wav", np.zeros(0, np.float32), 8000)
    with caplog.at_level(logging.WARNING, logger="jaxar.data.audio"):
        train, test = _load(wav_dir, "train"), _load(wav_dir, "test")
    dropped = train.stats.dropped_files + test.stats.dropped_files
    assert dropped == [str(wav_dir / "z.wav")]
    assert "z.wav holds no audio; left out" in caplog.text


def test_random_train_crops(wav_dir):
    src = _load(wav_dir, "train", test_fraction=0.2)
    f = src.files.index(str(wav_dir / "a.wav"))
    i = next(i for i in range(len(src)) if int(src[i]["file"]) == f)
    full = mu_law_encode_np(soundfile.read(wav_dir / "a.wav", dtype="float32")[0])
    crops = [src.train_transform(src[i], np.random.default_rng(s))["x"] for s in range(20)]
    again = src.train_transform(src[i], np.random.default_rng(3))["x"]
    np.testing.assert_array_equal(again, crops[3])  # a pure function of the generator
    starts = set()
    for c in crops:  # every crop is a contiguous piece of its own file
        hits = [s for s in range(len(full) - 399) if np.array_equal(full[s : s + 400], c)]
        assert hits
        starts.add(hits[0])
    assert len(starts) > 5


def test_corrupt_file_is_named(wav_dir):
    (wav_dir / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    with pytest.raises(ValueError, match=r"broken\.wav"):
        _load(wav_dir, "train")
        _load(wav_dir, "test")


def test_bad_options_and_missing_dir(wav_dir, tmp_path):
    with pytest.raises(ValueError, match="length"):
        _load(wav_dir, "train", length=0)
    with pytest.raises(ValueError, match="sample rate"):
        _load(wav_dir, "train", sample_rate=0)
    with pytest.raises(ValueError, match=r"crop length .*config.data.length"):
        jaxar.data.load(f"wav:{wav_dir}", "train", sample_rate=8000)  # the runner omits 0s
    with pytest.raises(ValueError, match="split"):
        _load(wav_dir, "valid")
    with pytest.raises(FileNotFoundError, match="asterisk-core-sounds-en-wav"):
        _load(tmp_path / "nowhere", "train")
    with pytest.raises(ValueError, match="at least 2"):
        _load(wav_dir / "sub", "train")


def test_numpy_mu_law_matches_jax():
    audio = np.linspace(-1.2, 1.2, 20001, dtype=np.float32)
    np.testing.assert_array_equal(mu_law_encode_np(audio), np.asarray(mu_law_encode(audio)))


def test_real_speech_corpus(tmp_path):
    """Two files of Debian's asterisk-core-sounds-en-wav (8 kHz mono speech) when installed;
    without it, the error must say which package provides it."""
    if not os.path.isdir(ALLISON):
        with pytest.raises(FileNotFoundError, match="asterisk-core-sounds-en-wav"):
            _load(ALLISON, "train")
        return
    for name in ("beep.wav", "goodbye.wav"):
        shutil.copy(os.path.join(ALLISON, name), tmp_path / name)
    train, test = _load(tmp_path, "train", length=4000), _load(tmp_path, "test", length=4000)
    assert len(train.files) == len(test.files) == 1
    for src in (train, test):
        assert src.info.sample_rate == 8000 and src.stats.resampled == 0
        x = np.stack([src[i]["x"] for i in range(len(src))])
        assert x.shape[1] == 4000 and len(np.unique(x)) > 20  # real, varied audio


# ------------------------------------------------------------------ log-mel features
def test_log_mel_of_a_tone_peaks_in_its_band():
    from jaxar.data.features import log_mel_spectrogram, mel_filterbank

    fb = mel_filterbank(8000, 512, 40)
    assert fb.shape == (257, 40)
    np.testing.assert_allclose(fb.sum(axis=0), 1.0, rtol=1e-5)  # each band averages its bins
    feats = log_mel_spectrogram(_tone(0.5, 8000, 1000.0, 0.9), 8000, hop=80, num_mels=40)
    assert feats.shape == (50, 40) and feats.dtype == np.float32
    centre = np.argmax(fb[round(1000 / 8000 * 512)])  # the band whose filter peaks near 1 kHz
    assert abs(int(np.argmax(feats[25])) - int(centre)) <= 1
    assert 0.0 <= feats.min() and feats.max() <= 1.0 and feats[25].max() > 0.8
    assert log_mel_spectrogram(np.zeros(800, np.float32), 8000, 80, 40).max() == 0.0  # -100 dB


def _log_mel_direct(audio, rate, hop, num_mels, n_fft, fmin=0.0, min_db=-100.0):
    """The module docstring's definition, one frame and one band at a time."""
    mel = lambda f: 2595.0 * math.log10(1.0 + f / 700.0)
    hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    lo, hi = mel(fmin), mel(rate / 2.0)
    points = [hz(lo + (hi - lo) * i / (num_mels + 1)) for i in range(num_mels + 2)]
    freqs = [k * rate / n_fft for k in range(n_fft // 2 + 1)]
    window = [0.5 - 0.5 * math.cos(2 * math.pi * k / (n_fft - 1)) for k in range(n_fft)]
    out = np.zeros((len(audio) // hop, num_mels))
    for f in range(len(audio) // hop):
        start = f * hop + hop // 2 - n_fft // 2  # centred on the middle of the frame's samples
        seg = [audio[start + k] if 0 <= start + k < len(audio) else 0.0 for k in range(n_fft)]
        spec = np.abs(np.fft.rfft(np.multiply(seg, window))) / sum(window)
        for j in range(num_mels):
            a, b, c = points[j : j + 3]
            w = [max(0.0, min((x - a) / (b - a), (c - x) / (c - b))) for x in freqs]
            value = sum(wi * si for wi, si in zip(w, spec)) / sum(w)
            db = 20.0 * math.log10(max(value, 10.0 ** (min_db / 20.0)))
            out[f, j] = min(1.0, max(0.0, (db - min_db) / -min_db))
    return out


def test_log_mel_against_a_direct_computation():
    from jaxar.data.features import default_fft_size, log_mel_spectrogram

    rs = np.random.default_rng(0)
    audio = (0.3 * rs.standard_normal(240) + _tone(0.03, 8000, 700.0, 0.5)).astype(np.float32)
    for hop, mels, n_fft, fmin in [(16, 6, 64, 0.0), (24, 5, 0, 300.0), (8, 1, 32, 0.0)]:
        kw = {} if fmin == 0.0 else {"fmin": fmin}  # fmin's default is 0 Hz
        got = log_mel_spectrogram(audio, 8000, hop, mels, n_fft, **kw)
        want = _log_mel_direct(audio, 8000, hop, mels, n_fft or default_fft_size(hop), fmin)
        np.testing.assert_allclose(got, want, atol=2e-5)
    assert [default_fft_size(h) for h in (1, 2, 3, 16, 24, 80, 128)] == [
        4,
        8,
        16,
        64,
        128,
        512,
        512,
    ]
    assert log_mel_spectrogram(audio, 8000, 80).shape == (3, 80)  # 80 mels by default


def test_log_mel_frame_f_describes_samples_around_f_hop():
    """A click inside frame f changes the frames whose windows reach it and no others."""
    from jaxar.data.features import log_mel_spectrogram

    hop, n_fft = 80, 256
    audio = _tone(0.4, 8000, 500.0, 0.1)
    base = log_mel_spectrogram(audio, 8000, hop, 20, n_fft)
    click = audio.copy()
    click[20 * hop + hop // 2] += 0.5  # the middle of frame 20
    changed = np.flatnonzero(np.abs(log_mel_spectrogram(click, 8000, hop, 20, n_fft) - base).max(1))
    half = n_fft // 2 // hop  # frames whose window (n_fft wide, centred mid-frame) reaches it
    assert 20 in changed and changed.min() >= 20 - half - 1 and changed.max() <= 20 + half + 1


def test_log_mel_bad_input():
    from jaxar.data.features import log_mel_spectrogram, mel_filterbank

    with pytest.raises(ValueError, match="multiple of hop"):
        log_mel_spectrogram(np.zeros(801, np.float32), 8000, 80)
    with pytest.raises(ValueError, match="mono"):
        log_mel_spectrogram(np.zeros((800, 2), np.float32), 8000, 80)
    with pytest.raises(ValueError, match="hold no FFT bin"):
        mel_filterbank(8000, 64, 80)
    with pytest.raises(ValueError, match="fmax"):
        mel_filterbank(8000, 512, 40, fmax=5000.0)


def test_windows_carry_the_log_mel_frames_of_their_samples(wav_dir):
    """Every element's features are the clip's own frames for exactly its samples, for the
    fixed test windows and for random training crops (which start on a frame boundary)."""
    from jaxar.data.features import log_mel_spectrogram

    kw = dict(features="log_mel", feature_hop=80, num_mels=20, fft_size=256)
    train = _load(wav_dir, "train", **kw)
    assert train.info.feature_shape == (5, 20) and train.info.feature_hop == 80
    checked = 0
    for f, path in enumerate(train.files):
        audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
        if rate != 8000 or audio.shape[1] != 1:
            continue  # resampled / down-mixed clips: checked through the source below
        n = max(400, -(-len(audio) // 80) * 80)
        clip = np.pad(audio[:, 0], (0, n - len(audio)))
        want = log_mel_spectrogram(clip, 8000, 80, 20, 256)
        windows = [i for i in range(len(train)) if int(train[i]["file"]) == f]
        assert len(windows) == -(-n // 400)
        for w, i in enumerate(windows):
            starts = [min(400 * w, n - 400)]  # the documented test window
            rng = np.random.default_rng(w)
            starts.append(80 * int(np.random.default_rng(w).integers(0, (n - 400) // 80 + 1)))
            for el, start in zip((train[i], train.train_transform(train[i], rng)), starts):
                np.testing.assert_array_equal(el["x"], mu_law_encode_np(clip[start : start + 400]))
                np.testing.assert_array_equal(el["features"], want[start // 80 : start // 80 + 5])
        checked += 1
    assert checked >= 2
    with pytest.raises(ValueError, match="multiple of config.data.feature_hop"):
        _load(wav_dir, "train", features="log_mel", feature_hop=300)
    with pytest.raises(ValueError, match="unknown features 'mfcc'"):
        _load(wav_dir, "train", features="mfcc", feature_hop=80)


def _riff(chunks, form=b"WAVE", magic=b"RIFF"):
    """A RIFF file from ``(id, declared size, body)`` chunks, each padded to an even length
    as RIFF requires."""
    body = b"".join(
        cid + size.to_bytes(4, "little") + data + b"\0" * (len(data) & 1)
        for cid, size, data in chunks
    )
    return magic + (4 + len(body)).to_bytes(4, "little") + form + body


def test_the_riff_size_check_walks_the_chunks_to_the_data(tmp_path):
    """A truncated WAV is found from its ``data`` chunk's declared size, past chunks of odd
    length (padded to even); streamed sizes (0, 0xFFFFFFFF) and files that are not RIFF WAVE
    are not checked."""
    from jaxar.data.wav import _check_riff_size

    fmt = (b"fmt ", 16, bytes(16))
    odd = (b"LIST", 5, b"abcde")  # one pad byte follows it
    path = tmp_path / "x.wav"

    def check(data: bytes):
        path.write_bytes(data)
        _check_riff_size(str(path))

    check(_riff([fmt, odd, (b"data", 100, bytes(100))]))  # whole: no error
    check(_riff([fmt, odd, (b"data", 100, bytes(100))]) + b"trailing")  # more is fine
    for cut in (1, 99):
        whole = _riff([fmt, odd, (b"data", 100, bytes(100))])
        with pytest.raises(ValueError, match=f"declares 100 bytes but the file holds {100 - cut}$"):
            check(whole[:-cut])
    # The data chunk first, and a data chunk of odd size, are found the same way.
    with pytest.raises(ValueError, match="declares 7 bytes but the file holds 6$"):
        check(_riff([(b"data", 7, bytes(7)), fmt])[: 12 + 8 + 6])
    with pytest.raises(ValueError, match="declares 3 bytes but the file holds 2$"):
        check(_riff([odd, odd, (b"data", 3, b"xyz")])[:-2])  # cut the pad byte and one more
    for streamed in (0, 0xFFFFFFFF):  # sizes unknown when written: not checked
        check(_riff([fmt, (b"data", streamed, bytes(10))]))
    check(b"RIFF")  # shorter than a header
    for form, magic in ((b"AVI ", b"RIFF"), (b"WAVE", b"RIFX"), (b"WAVE", b"RF64")):
        check(_riff([fmt, (b"data", 100, bytes(10))], form=form, magic=magic))
    with pytest.raises(ValueError, match="declares 50 bytes but the file holds 10$"):
        check(_riff([fmt, (b"data", 50, bytes(10))]))  # the header's own size is not trusted
    check(_riff([fmt, (b"data", 1, b"")])[:-8])  # the data chunk's header cut: nothing to check
    with pytest.raises(ValueError, match="declares 1 bytes but the file holds 0$"):
        check(_riff([fmt, (b"data", 1, b"")]))  # a one-byte chunk with nothing after its header
