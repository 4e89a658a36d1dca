"""Data transforms against direct computations: binarization probabilities, stereo down-mix,
resampling, mu-law, audio windows and random crops, per-process shards."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from jaxar.data import ArraySource, DataInfo
from jaxar.data.audio import AudioSource, mu_law_encode_np
from jaxar.data.pipeline import binarized_info, eval_batches, train_batches
from jaxar.distributions import mu_law_decode, mu_law_encode

LEVELS = 17  # digits' grey levels: pixel level k is 1 with probability k / 16


def _level_images(n):
    """n images whose 16 pixels hold the levels 0, 1, ..., 15 and (pixel 15) 16."""
    pixels = np.minimum(np.arange(16), 16)
    pixels[-1] = 16
    x = np.broadcast_to(pixels.reshape(1, 4, 4, 1), (n, 4, 4, 1)).astype(np.uint8)
    return ArraySource(np.ascontiguousarray(x), None, DataInfo("levels", (4, 4, 1), LEVELS))


def _check_bernoulli(draws, n_draws):
    """Every pixel's frequency of 1 is its level / 16 (5 standard deviations), levels 0 and 16
    exactly 0 and 1."""
    want = _level_images(1).x[0].astype(np.float64) / (LEVELS - 1)
    freq = draws.reshape(n_draws, 4, 4, 1).mean(axis=0)
    sd = np.sqrt(want * (1 - want) / n_draws)
    assert np.all(np.abs(freq - want) <= 5 * sd + 1e-12), (freq.ravel(), want.ravel())
    assert set(np.unique(draws)) == {0, 1}


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_binarization_draws_each_pixel_with_probability_level_over_max(mode):
    src = _level_images(600)
    it = train_batches(src, batch_size=200, seed=3, binarize=mode)
    epochs = [np.concatenate([next(it)["x"] for _ in range(3)]) for _ in range(2)]
    for e in epochs:
        _check_bernoulli(e, 600)
    # Dynamic draws afresh every epoch, static keeps one draw per example (here all examples
    # are equal, so compare the epochs' pixel sums).
    same = np.array_equal(np.sort(epochs[0].sum(axis=(1, 2, 3))), np.sort(epochs[1].sum((1, 2, 3))))
    assert same == (mode == "static")
    both = np.concatenate(epochs)
    if mode == "dynamic":
        _check_bernoulli(both, 1200)


def test_binarized_data_info_has_two_levels():
    info = _level_images(1).info
    for mode in ("dynamic", "static"):
        assert binarized_info(info, mode) == DataInfo("levels", (4, 4, 1), 2)
        two = DataInfo("binary", (4, 4, 1), 2)
        assert binarized_info(two, mode) is two
    assert binarized_info(info, "") is info
    audio = DataInfo("speech", (100,), 256, kind="audio")
    assert binarized_info(audio, "") is audio
    with pytest.raises(ValueError, match="binarization applies to images, not audio data"):
        binarized_info(audio, "static")
    with pytest.raises(ValueError, match="unknown binarize mode 'always'"):
        binarized_info(info, "always")


def test_binarized_evaluation_is_one_bernoulli_draw():
    src = _level_images(600)
    a = np.concatenate([b["x"] for b in eval_batches(src, batch_size=200, binarize="static")])
    b = np.concatenate([b["x"] for b in eval_batches(src, batch_size=200, binarize="dynamic")])
    _check_bernoulli(a, 600)
    np.testing.assert_array_equal(a, b)  # evaluation data: the same fixed draw either way


# ---------------------------------------------------------------------------- mu-law
def _mu_law_direct(x, levels):
    mu = levels - 1.0
    x = np.clip(np.asarray(x, np.float64), -1, 1)
    y = np.sign(x) * np.log(1 + mu * np.abs(x)) / np.log(1 + mu)
    return np.floor((y + 1) / 2 * mu + 0.5).astype(np.int64)


@pytest.mark.parametrize("levels", [256, 16])
def test_mu_law_against_the_formula(levels):
    x = np.concatenate([np.linspace(-1.2, 1.2, 4001), [0.0, 1.0, -1.0, 1e-4, -1e-4]])
    # Avoid the exact .5 rounding ties, where round-half-even and the formula differ.
    mu = levels - 1
    y = np.sign(x) * np.log1p(mu * np.abs(np.clip(x, -1, 1))) / np.log1p(mu)
    frac = ((y + 1) / 2 * mu) % 1.0
    x = x[np.abs(frac - 0.5) > 1e-3]
    want = _mu_law_direct(x, levels)
    np.testing.assert_array_equal(mu_law_encode_np(x, levels), want)
    np.testing.assert_array_equal(
        np.asarray(mu_law_encode(jnp.asarray(x, jnp.float32), levels)), want
    )
    assert want.min() == 0 and want.max() == levels - 1
    # Decoding inverts the companding at the level centres: f^-1(2 k / mu - 1).
    k = np.arange(levels)
    yk = 2.0 * k / mu - 1.0
    centres = np.sign(yk) * ((1 + mu) ** np.abs(yk) - 1) / mu
    np.testing.assert_allclose(
        np.asarray(mu_law_decode(jnp.asarray(k), levels)), centres, atol=2e-6
    )
    np.testing.assert_array_equal(mu_law_encode_np(centres, levels), k)
    if levels == 256:  # the defaults are 8-bit
        np.testing.assert_array_equal(np.asarray(mu_law_encode(jnp.asarray(x, jnp.float32))), want)
        np.testing.assert_array_equal(mu_law_encode_np(x), want)
        np.testing.assert_allclose(np.asarray(mu_law_decode(jnp.asarray(k))), centres, atol=2e-6)


# ---------------------------------------------------------------------------- audio
def _item(name, audio, rate, label=None):
    audio = np.asarray(audio, np.float32)
    if audio.ndim == 1:
        audio = audio[:, None]
    return name, lambda: (audio, rate, label)


def test_stereo_downmix_is_the_mean_of_the_channels():
    rs = np.random.default_rng(0)
    left, right = rs.uniform(-0.9, 0.9, 300), rs.uniform(-0.2, 0.2, 300)
    src = AudioSource("t", "test", [_item("a", np.stack([left, right], 1), 8000)],
                      length=100, sample_rate=8000)  # fmt: skip
    got = np.concatenate([src[i]["x"] for i in range(len(src))])
    np.testing.assert_array_equal(got, _mu_law_direct((left + right) / 2, 256))
    assert src.stats.downmixed == 1


def test_audio_source_counts_what_loading_did_to_each_clip():
    """``stats`` against a hand count: a mono clip padded to whole feature frames, a stereo
    clip down-mixed and resampled (its 800 samples already whole frames), a clip shorter than
    a window, an empty one; then silence trimming at a 0.5 dB threshold."""
    import dataclasses

    from jaxar.data.features import log_mel_spectrogram

    rs = np.random.default_rng(0)
    a = rs.uniform(-0.5, 0.5, 1000)
    items = [
        _item("a", a, 8000),
        _item("b", rs.uniform(-0.5, 0.5, (1600, 2)), 16000),
        _item("c", rs.uniform(-0.5, 0.5, 240), 8000),
        _item("d", np.zeros(0), 8000),
    ]
    src = AudioSource("t", "test", items, length=400, sample_rate=8000, features="log_mel",
                      num_mels=8, feature_hop=80)  # fmt: skip
    got = dataclasses.asdict(src.stats)
    assert got.pop("seconds") == pytest.approx((1000 + 800 + 240) / 8000)
    assert got == dict(files=3, resampled=1, downmixed=1, trimmed_files=0, trimmed_seconds=0.0,
                       padded_files=["c"], frame_padded_files=1, dropped_files=["d"])  # fmt: skip
    # The default FFT size: the least power of two >= 4 hops (512), on the frame-padded clip.
    want = log_mel_spectrogram(np.pad(a, (0, 40)).astype(np.float32), 8000, 80, 8, 512)
    np.testing.assert_allclose(src[0]["features"], want[:5], rtol=1e-5, atol=1e-5)
    assert src.info.feature_shape == (5, 8) and all(type(d) is int for d in src.info.feature_shape)
    assert len(src) == 3 + 2 + 1  # ceil(1040 / 400) + 800 / 400 + one padded window
    np.testing.assert_array_equal(src[-len(src)]["x"], src[0]["x"])
    with pytest.raises(IndexError, match="window 6 out of range for 6 windows"):
        src[len(src)]

    square = np.concatenate([np.zeros(160), np.tile([0.5, -0.5], 400), np.zeros(240)])
    trimmed = AudioSource("t", "test", [_item("s", square, 8000)], length=400,
                          sample_rate=8000, trim_silence_db=0.5)  # fmt: skip
    assert trimmed.stats.trimmed_files == 1
    assert trimmed.stats.trimmed_seconds == pytest.approx(400 / 8000)
    with pytest.raises(ValueError, match="expected a sample rate >= 1 Hz .* got 0"):
        AudioSource("t", "test", items, length=400)
    with pytest.raises(ValueError, match="expected a crop length >= 1 samples .* got 0"):
        AudioSource("t", "test", items, sample_rate=8000)
    one = AudioSource("t", "test", items[:1], length=400, sample_rate=8000, features="log_mel",
                      num_mels=8, feature_hop=1, fft_size=64)  # fmt: skip
    assert one[0]["features"].shape == (400, 8)  # a hop of one sample is allowed


def test_silence_trimming_keeps_the_frames_within_db_of_the_loudest():
    """``_trim`` on 10 ms square-wave frames (RMS = amplitude exactly) 26, 24 and 0 dB below
    a full-scale peak: a 25 dB threshold cuts between the first two, and a clip whose last
    whole frame is loud keeps its partial tail."""
    from jaxar.data.audio import _trim

    n = 80  # 10 ms at 8 kHz
    frame = lambda db: np.tile([1.0, -1.0], n // 2) * 10.0 ** (-db / 20.0)
    silence = np.zeros(n)
    clip = np.concatenate([silence, frame(26), frame(24), frame(0), frame(24), frame(26), silence])
    np.testing.assert_array_equal(_trim(clip, 8000, 25.0), clip[2 * n : 5 * n])
    np.testing.assert_array_equal(_trim(clip, 8000, 35.0), clip[n : 6 * n])
    np.testing.assert_array_equal(_trim(clip, 8000, 10.0), clip[3 * n : 4 * n])
    tail = np.concatenate([silence, frame(0), frame(0), 0.01 * np.ones(30)])  # 3 frames + 30
    np.testing.assert_array_equal(_trim(tail, 8000, 20.0), tail[n:])
    np.testing.assert_array_equal(_trim(np.zeros(500), 8000, 20.0), np.zeros(500))  # all silent
    np.testing.assert_array_equal(_trim(clip[:50], 8000, 20.0), clip[:50])  # under one frame


def test_split_items_is_a_fixed_permutation_with_a_share_for_test():
    from jaxar.data.audio import split_items

    order = np.random.default_rng(0).permutation(10)
    np.testing.assert_array_equal(split_items(10, "test", 0.2), np.sort(order[:2]))
    np.testing.assert_array_equal(split_items(10, "train", 0.2), np.sort(order[2:]))
    assert len(split_items(9, "test", 0.05)) == 1  # at least one
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=f"test_fraction must be in \\(0, 1\\), got {bad}"):
            split_items(10, "test", bad)


def test_resampling_keeps_the_waveform():
    rate, target, n = 16000, 8000, 3200
    t = np.arange(n) / rate
    tone = lambda t: 0.5 * np.sin(2 * np.pi * 440 * t)
    src = AudioSource("t", "test", [_item("a", tone(t), rate)], length=1600, sample_rate=target)
    assert len(src) == 1 and src.stats.resampled == 1
    got = np.asarray(mu_law_decode(jnp.asarray(src[0]["x"]), 256))
    want = tone(np.arange(n * target // rate) / target)
    # Away from the filter's edge effects, within mu-law's quantisation error (at 0.5: ~0.01).
    np.testing.assert_allclose(got[100:-100], want[100:-100], atol=0.02)


def test_windows_and_random_crops_are_slices_of_the_clip():
    rs = np.random.default_rng(1)
    audio = [rs.uniform(-1, 1, 250), rs.uniform(-1, 1, 60)]
    src = AudioSource("t", "test", [_item("a", audio[0], 8000), _item("b", audio[1], 8000)],
                      length=100, sample_rate=8000)  # fmt: skip
    levels = [_mu_law_direct(a, 256) for a in audio]
    padded = np.concatenate([levels[1], np.full(40, _mu_law_direct(0.0, 256))])
    # Clip a: windows at 0, 100 and (the last ends at the clip's end) 150; clip b: padded.
    want = [levels[0][0:100], levels[0][100:200], levels[0][150:250], padded]
    assert len(src) == 4
    for i, w in enumerate(want):
        np.testing.assert_array_equal(src[i]["x"], w)
    # Random crops: a contiguous slice of the element's own clip, every start reachable.
    rng = np.random.default_rng(2)
    starts = []
    for _ in range(600):
        crop = src.train_transform(src[1], rng)["x"]
        hits = [s for s in range(151) if np.array_equal(levels[0][s : s + 100], crop)]
        assert len(hits) == 1
        starts.append(hits[0])
    counts = np.bincount(starts, minlength=151)
    assert counts[0] > 0 and counts[150] > 0 and counts.max() < 15  # uniform over 151 starts
    np.testing.assert_array_equal(src.train_transform(src[3], rng)["x"], padded)


# ---------------------------------------------------------------------------- shards
def test_each_process_reads_exactly_its_shard():
    n = 120
    idx = np.arange(n)
    x = np.stack([idx % 16, idx // 16, np.zeros(n), np.zeros(n)], 1).reshape(n, 2, 2, 1)
    src = ArraySource(x.astype(np.uint8), None, DataInfo("index", (2, 2, 1), 16))
    for count in (2, 3):
        for p in range(count):
            it = train_batches(src, batch_size=10 * count, seed=0, process_index=p,
                               process_count=count)  # fmt: skip
            seen = []
            for _ in range(n // count // 10):
                b = next(it)["x"].reshape(-1, 4).astype(np.int64)
                assert len(b) == 10
                seen.extend(b[:, 0] + 16 * b[:, 1])
            assert sorted(seen) == list(range(p, n, count)), (count, p)
    assert math.isclose(len(seen), n / count)
