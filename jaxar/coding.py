"""Lossless coding of integer events with any autoregressive model: rANS driven by the cached step.

:func:`encode` turns a batch of events into bytes whose size is, up to a small fixed overhead,
the model's ``sum of -log2 p(x)``; :func:`decode` gives the events back exactly.

**Tables that agree bit for bit.** One jitted function, :func:`_chunk_fn` of the model, runs the
model's cached decode step over every sampling step of a chunk of examples and turns each
sub-step's distribution into an integer frequency table (:func:`quantize`, every value keeps a
frequency >= 1, the table sums to ``2**PRECISION``). The encoder calls it teacher-forced (the
symbols written into the event are the given ones), the decoder calls it decoding (the symbols
come from the rANS state); everything else is the same compiled program on the same inputs
(the events seen so far, later dimensions zero, padding lanes zero), so both sides see the same
tables. Encoding from the full forward pass would not do: it differs from the cached step in
the last float bits, and one differing table breaks the stream.

**Sub-pixels.** A step of PixelCNN++'s mixture covers a pixel's ``C`` channels; the table of
channel ``c`` is ``p(x_c | x_<c of the pixel, earlier pixels)``, computed from the step's
parameters and the channels of the pixel already (de)coded (:func:`sub_step_log_probs`).

**rANS.** 32-bit states in ``[2**16, 2**32)`` and 16-bit words, one state per *lane*; a chunk
codes ``lanes`` examples side by side (vectorised over the batch) and the lanes carry their
states from chunk to chunk, so the fixed cost of flushing the states (4 bytes per lane) is paid
once per stream. Words of all lanes share one stream, in lane order within a sub-step.

**Stream format** (version 1): ``b"JXAR"``, a version byte, a 2-byte length and a JSON header
(model name, a fingerprint of its hyperparameters and parameter shapes, digests of the
parameters and of the conditioning, number of examples, event shape, lanes, number of words,
a CRC-32 of the events), the lanes' final states (uint32 little-endian), the words (uint16
little-endian), and a CRC-32 of everything before it. A damaged or truncated stream, a stream
of another model or other parameters, or other conditioning, raise ``ValueError`` before any
decoding; the decoded events are checked against the header's CRC as well.

A stream decodes with the jax version and kind of processor that wrote it (the tables come
from float computations); anything else that made the tables differ is reported by the checks
above, never returned as wrong events.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import struct
import time
import zlib

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxar.distributions import Categorical, DiscretizedLogisticMixture
from jaxar.models.base import AutoregressiveModel

__all__ = [
    "FORMAT_VERSION",
    "PRECISION",
    "StreamInfo",
    "compress_run",
    "decode",
    "decompress_file",
    "encode",
    "exact_bits",
    "quantize",
    "read_header",
    "sub_step_log_probs",
]

FORMAT_VERSION = 1
MAGIC = b"JXAR"
PRECISION = 16  # frequency tables sum to 2**PRECISION
_TOTAL = 1 << PRECISION
_LOW = 1 << 16  # rANS states live in [_LOW, 2**32)
_PREFIX = struct.Struct("<4sBH")  # magic, version, header length
_DEFAULT_LANES = 500


# ---------------------------------------------------------------------------- tables
def quantize(log_probs: jnp.ndarray) -> jnp.ndarray:
    """Integer frequencies ``(B, L)`` int32 from log-probabilities ``(B, L)``: every value gets at
    least 1, each row sums to ``2**PRECISION`` (the rounding remainder goes to the row's most
    probable value)."""
    levels = log_probs.shape[-1]
    p = jax.nn.softmax(log_probs.astype(jnp.float32), axis=-1)
    freq = jnp.floor(p * float(_TOTAL - levels)).astype(jnp.int32) + 1
    deficit = _TOTAL - jnp.sum(freq, axis=-1)
    top = jnp.argmax(p, axis=-1)
    return freq + jax.nn.one_hot(top, levels, dtype=jnp.int32) * deficit[:, None]


def sub_step_log_probs(distribution, params: jnp.ndarray, pix: jnp.ndarray, c: int):
    """``log p(x_c = v | ...)`` for every value ``v``: ``(B, L)``.

    ``params`` are one step's distribution parameters ``(B, P)`` (what ``cached_step`` returns),
    ``pix (B, dims_per_step)`` the step's values, of which only ``pix[:, :c]`` is read.
    """
    if isinstance(distribution, Categorical):
        return jax.nn.log_softmax(params.astype(jnp.float32), axis=-1)
    if isinstance(distribution, DiscretizedLogisticMixture):
        d = distribution
        logits, means, log_scales, coeffs = d._split(params)
        weights = jax.nn.log_softmax(logits, axis=-1)  # (B, K)
        if c:
            comp = d.component_log_probs(params, pix)  # (B, C, K); rows < c use only pix[:, :c]
            weights = weights + jnp.sum(comp[:, :c, :], axis=1)
        mean = d._shifted_means(means, coeffs, d._centered(pix, means.dtype))[:, c, :]
        levels = jnp.arange(d.num_levels, dtype=jnp.int32)[None, :, None]
        bins = d._bin_log_prob(levels, mean[:, None, :], log_scales[:, c, None, :])  # (B, L, K)
        return jax.nn.log_softmax(jax.nn.logsumexp(weights[:, None, :] + bins, axis=-1), axis=-1)
    raise ValueError(
        f"no entropy coder for distribution {type(distribution).__name__}; expected Categorical "
        "or DiscretizedLogisticMixture"
    )


# ---------------------------------------------------------------------------- jitted parts
@functools.lru_cache(maxsize=32)
def _chunk_fn(model):
    """The one jitted function both sides run over a chunk of ``lanes`` examples.

    ``fn(params, cond, x_given (lanes, D), active (lanes,), encoding, states (lanes,) uint32,
    window (W,) uint32) -> (x (lanes, D), states, words read, starts (S, lanes), freqs (S, lanes))``
    with ``S = D`` sub-steps. Encoding: the symbols are ``x_given``'s, the states are unchanged
    and ``starts``/``freqs`` are what the rANS encoder needs. Decoding: the symbols come from the
    states, which read words from ``window`` (the stream from the chunk's first word on).
    """
    dist = model.distribution
    g, d = dist.dims_per_step, model.num_dims
    steps = d // g

    def run(params, cond, x_given, active, encoding, states, window):
        lanes = x_given.shape[0]
        last_word = window.shape[0] - 1

        def body(carry, step):
            cache, x_flat, states, ptr = carry
            out, cache = model.cached_step(params, cache, x_flat, step, cond)
            pix = jnp.zeros((lanes, g), jnp.int32)
            starts, freqs = [], []
            for c in range(g):
                freq = quantize(sub_step_log_probs(dist, out, pix, c))
                cdf = jnp.cumsum(freq, axis=-1)  # inclusive
                slot = (states & jnp.uint32(_TOTAL - 1)).astype(jnp.int32)
                decoded = jnp.sum(cdf <= slot[:, None], axis=-1).astype(jnp.int32)
                given = lax.dynamic_index_in_dim(x_given, step * g + c, axis=1, keepdims=False)
                sym = jnp.where(active, jnp.where(encoding, given, decoded), 0)
                f = jnp.take_along_axis(freq, sym[:, None], axis=-1)[:, 0]
                start = jnp.take_along_axis(cdf, sym[:, None], axis=-1)[:, 0] - f
                moved = f.astype(jnp.uint32) * (states >> PRECISION) + (slot - start).astype(
                    jnp.uint32
                )
                stepping = active & jnp.logical_not(encoding)
                moved = jnp.where(stepping, moved, states)
                need = stepping & (moved < jnp.uint32(_LOW))
                idx = ptr + jnp.cumsum(need.astype(jnp.int32)) - 1
                word = window[jnp.clip(idx, 0, last_word)]
                states = jnp.where(need, (moved << 16) | word, moved)
                ptr = ptr + jnp.sum(need.astype(jnp.int32))
                pix = pix.at[:, c].set(sym)
                starts.append(start.astype(jnp.uint32))
                freqs.append(f.astype(jnp.uint32))
            x_flat = lax.dynamic_update_slice(x_flat, pix, (0, step * g))
            return (cache, x_flat, states, ptr), (jnp.stack(starts), jnp.stack(freqs))

        init = (
            model.init_cache(params, lanes, cond),
            jnp.zeros((lanes, d), jnp.int32),
            states,
            jnp.int32(0),
        )
        (_, x_flat, states, ptr), (starts, freqs) = lax.scan(body, init, jnp.arange(steps))
        return x_flat, states, ptr, starts.reshape(d, lanes), freqs.reshape(d, lanes)

    return jax.jit(run)


@jax.jit
def _rans_encode(starts, freqs, active, states):
    """Push sub-steps ``S-1 .. 0`` into the lanes' states: ``(words (S*lanes,), first, states)``;
    the chunk's words are ``words[first:]``, in the order the decoder reads them."""
    num, lanes = starts.shape
    size = num * lanes

    def body(carry, inputs):
        states, head, words = carry
        start, f = inputs
        need = active & (states >= (f << 16))
        n = jnp.sum(need.astype(jnp.int32))
        pos = jnp.where(need, head - n + jnp.cumsum(need.astype(jnp.int32)) - 1, size)
        words = words.at[pos].set(states & jnp.uint32(0xFFFF), mode="drop")
        states = jnp.where(need, states >> 16, states)
        pushed = ((states // f) << PRECISION) + states % f + start
        return (jnp.where(active, pushed, states), head - n, words), None

    init = (states, jnp.int32(size), jnp.zeros((size,), jnp.uint32))
    (states, head, words), _ = lax.scan(body, init, (starts, freqs), reverse=True)
    return words, head, states


# ---------------------------------------------------------------------------- header
def _digest(arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _fingerprint(model, params) -> str:
    shapes = [(jax.tree_util.keystr(k), v.shape, str(v.dtype)) for k, v in _leaves(params)]
    desc = {
        "name": model.name,
        "hparams": {k: repr(v) for k, v in sorted(model.hparams.items())},
        "event_shape": model.event_shape,
        "num_levels": model.num_levels,
        "params": shapes,
    }
    return hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _leaves(tree):
    return jax.tree_util.tree_flatten_with_path(tree)[0]


def _cond_digest(cond) -> str | None:
    return None if cond is None else _digest(jax.tree.leaves(cond))


def _data_crc(x: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(x, np.int32).astype("<i4").tobytes())


class StreamInfo(dict):
    """The parsed header of a stream (a dict): ``model``, ``arch``, ``params``, ``cond``,
    ``num``, ``shape``, ``levels``, ``lanes``, ``words``, ``data_crc``; plus ``header_bytes``
    (everything but the words) and ``total_bytes``."""


def read_header(data: bytes) -> StreamInfo:
    """Parse and check a stream's header and checksum (no model needed); ValueError if the
    stream is not one, is truncated or damaged."""
    data = bytes(data)
    if len(data) < _PREFIX.size + 4:
        raise ValueError(
            f"not a jaxar stream: expected at least {_PREFIX.size + 4} bytes, got {len(data)}"
        )
    magic, version, hlen = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise ValueError(f"not a jaxar stream: expected magic {MAGIC!r}, got {magic!r}")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"unsupported jaxar stream format: expected version {FORMAT_VERSION}, got {version}"
        )
    try:
        info = StreamInfo(json.loads(data[_PREFIX.size : _PREFIX.size + hlen]))
        expected = _PREFIX.size + hlen + 4 * int(info["lanes"]) + 2 * int(info["words"]) + 4
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"damaged or truncated jaxar stream: unreadable header ({e})") from None
    if len(data) != expected:
        raise ValueError(
            f"truncated or damaged jaxar stream: its header says {expected} bytes, got {len(data)}"
        )
    (crc,) = struct.unpack_from("<I", data, len(data) - 4)
    if zlib.crc32(data[:-4]) != crc:
        raise ValueError(
            f"damaged jaxar stream: CRC-32 of the {len(data) - 4} bytes is "
            f"{zlib.crc32(data[:-4]):08x}, the stream says {crc:08x}"
        )
    info["header_bytes"] = expected - 2 * int(info["words"])
    info["total_bytes"] = expected
    return info


# ---------------------------------------------------------------------------- checks
def _check_model(model) -> None:
    if not isinstance(model, AutoregressiveModel):
        raise ValueError(
            f"expected an autoregressive model (jaxar.models.AutoregressiveModel), got "
            f"{type(model).__name__} {getattr(model, 'name', '')!r}"
        )
    if "cached" not in model.sample_methods:
        raise ValueError(
            f"{model.name}: coding needs the cached decode step; its methods: "
            f"{list(model.sample_methods)}"
        )
    if not isinstance(model.distribution, (Categorical, DiscretizedLogisticMixture)):
        raise ValueError(
            f"{model.name}: no entropy coder for its {type(model.distribution).__name__}; "
            "expected Categorical or DiscretizedLogisticMixture"
        )


def _lanes(lanes, n: int) -> int:
    if lanes is None:
        return max(1, min(_DEFAULT_LANES, n))
    if int(lanes) < 1:
        raise ValueError(
            f"lanes must be a positive number of examples coded side by side, got {lanes}"
        )
    return int(lanes)


def _chunk(x, cond, k: int, lanes: int):
    """Examples ``k*lanes ..`` padded to ``lanes`` (zeros), their conditioning, the active mask."""
    lo, hi = k * lanes, min((k + 1) * lanes, len(x))
    pad = lanes - (hi - lo)
    padded = lambda a: np.concatenate([a[lo:hi], np.zeros((pad, *a.shape[1:]), a.dtype)])
    xk = padded(x.reshape(len(x), -1).astype(np.int32))
    ck = None if cond is None else jax.tree.map(lambda a: jnp.asarray(padded(np.asarray(a))), cond)
    return jnp.asarray(xk), ck, jnp.asarray(np.arange(lanes) < hi - lo)


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="example")


# ---------------------------------------------------------------------------- encode / decode
def encode(
    model, params, x, cond=None, *, lanes: int | None = None, progress: bool = False
) -> bytes:
    """Losslessly code the events ``x (N, *event_shape)`` with ``model``: the stream's bytes.

    ``cond`` is the conditioning of the ``N`` examples (the decoder must be given the same);
    ``lanes`` examples are coded side by side (default ``min(N, 500)``): more is faster, each
    costs 4 bytes.
    """
    _check_model(model)
    x = np.asarray(x)
    model.check_input(x, cond)
    n = x.shape[0]
    lanes = _lanes(lanes, n)
    fn = _chunk_fn(model)
    num_chunks = math.ceil(n / lanes)
    window = jnp.zeros((model.num_dims * lanes,), jnp.uint32)
    fresh = jnp.full((lanes,), _LOW, jnp.uint32)
    states = fresh
    blocks = []
    bar = _progress(n, "encode", progress)
    for k in reversed(range(num_chunks)):
        xk, ck, active = _chunk(x, cond, k, lanes)
        _, _, _, starts, freqs = fn(params, ck, xk, active, jnp.bool_(True), fresh, window)
        words, first, states = _rans_encode(starts, freqs, active, states)
        blocks.append(np.asarray(words)[int(first) :])
        if bar is not None:
            bar.update(int(np.sum(np.asarray(active))))
    if bar is not None:
        bar.close()
    words = np.concatenate(blocks[::-1]) if blocks else np.zeros((0,), np.uint32)
    header = {
        "model": model.name,
        "arch": _fingerprint(model, params),
        "params": _digest(jax.tree.leaves(params)),
        "cond": _cond_digest(cond),
        "num": int(n),
        "shape": list(model.event_shape),
        "levels": model.num_levels,
        "lanes": lanes,
        "words": int(words.size),
        "data_crc": _data_crc(x),
    }
    hbytes = json.dumps(header, separators=(",", ":")).encode()
    body = b"".join(
        [
            _PREFIX.pack(MAGIC, FORMAT_VERSION, len(hbytes)),
            hbytes,
            np.asarray(states, "<u4").tobytes(),
            words.astype("<u2").tobytes(),
        ]
    )
    return body + struct.pack("<I", zlib.crc32(body))


def decode(model, params, data: bytes, cond=None, *, progress: bool = False) -> np.ndarray:
    """The events ``(N, *event_shape)`` int32 that :func:`encode` coded into ``data``.

    Raises ValueError, before decoding, if ``data`` is damaged or truncated, or was made with
    another model, other parameters or other conditioning; and if the decoded events do not
    match the stream's checksum.
    """
    _check_model(model)
    data = bytes(data)
    info = read_header(data)
    if info["model"] != model.name:
        raise ValueError(f"stream was coded with model {info['model']!r}, got model {model.name!r}")
    if info["arch"] != _fingerprint(model, params):
        raise ValueError(
            f"stream was coded with another {model.name} (hyperparameters or parameter shapes "
            f"differ): fingerprint {info['arch']}, this model's {_fingerprint(model, params)}"
        )
    if info["params"] != _digest(jax.tree.leaves(params)):
        raise ValueError(
            f"stream was coded with other {model.name} parameters (another checkpoint?): "
            f"digest {info['params']}, these parameters' {_digest(jax.tree.leaves(params))}"
        )
    n = int(info["num"])
    model.check_cond(cond, n)
    if info["cond"] != _cond_digest(cond):
        raise ValueError(
            f"stream was coded with other conditioning: digest {info['cond']}, got "
            f"{_cond_digest(cond)}"
        )
    lanes = int(info["lanes"])
    offset = info["header_bytes"] - 4 * lanes - 4
    states = jnp.asarray(np.frombuffer(data, "<u4", lanes, offset).astype(np.uint32))
    words = np.frombuffer(data, "<u2", int(info["words"]), offset + 4 * lanes).astype(np.uint32)
    size = model.num_dims * lanes
    words = np.concatenate([words, np.zeros((size,), np.uint32)])
    fn = _chunk_fn(model)
    zeros = np.zeros((n, *model.event_shape), np.int32)
    out = np.zeros((n, model.num_dims), np.int32)
    ptr = 0
    bar = _progress(n, "decode", progress)
    for k in range(math.ceil(n / lanes)):
        xk, ck, active = _chunk(zeros, cond, k, lanes)
        window = jnp.asarray(words[ptr : ptr + size])
        xd, states, used, _, _ = fn(params, ck, xk, active, jnp.bool_(False), states, window)
        ptr += int(used)
        lo, hi = k * lanes, min((k + 1) * lanes, n)
        out[lo:hi] = np.asarray(xd)[: hi - lo]
        if bar is not None:
            bar.update(hi - lo)
    if bar is not None:
        bar.close()
    out = out.reshape((n, *model.event_shape))
    if ptr != int(info["words"]) or np.any(np.asarray(states) != _LOW):
        raise ValueError(
            f"stream does not decode with this model: read {ptr} of {info['words']} words and "
            "the coder did not end in its initial state (tables differ from the encoder's: "
            "another jax version or processor?)"
        )
    if _data_crc(out) != int(info["data_crc"]):
        raise ValueError("decoded events do not match the stream's checksum")
    return out


# ---------------------------------------------------------------------------- commands
_FILE_MAGIC = b"JXAF"  # a compressed file: labels (if any) and a stream


def _pack_file(stream: bytes, labels) -> bytes:
    side = b"" if labels is None else zlib.compress(np.asarray(labels, "<u2").tobytes(), 9)
    return _FILE_MAGIC + struct.pack("<BI", 0 if labels is None else 1, len(side)) + side + stream


def _unpack_file(data: bytes):
    head = len(_FILE_MAGIC) + 5
    if len(data) < head or data[: len(_FILE_MAGIC)] != _FILE_MAGIC:
        raise ValueError(
            f"not a jaxar compressed file: expected it to start with {_FILE_MAGIC!r}, got "
            f"{bytes(data[: len(_FILE_MAGIC)])!r}"
        )
    has_labels, size = struct.unpack_from("<BI", data, len(_FILE_MAGIC))
    if len(data) < head + size:
        raise ValueError(f"truncated jaxar file: {len(data)} bytes, its labels need {head + size}")
    labels = None
    if has_labels:
        try:
            labels = np.frombuffer(zlib.decompress(data[head : head + size]), "<u2")
        except zlib.error as e:
            raise ValueError(f"damaged jaxar file: its labels do not decompress ({e})") from None
        labels = jnp.asarray(labels.astype(np.int32))
    return labels, bytes(data[head + size :])


def _read_files(paths, info) -> np.ndarray:
    """Events from ``.npy`` (levels), ``.png`` (images) or ``.wav`` (audio, cut into events)."""
    from PIL import Image

    out = []
    for path in paths:
        ext = os.path.splitext(path)[1].lower()
        if ext == ".npy":
            a = np.load(path)
            out.append(a[None] if a.shape == tuple(info.event_shape) else a)
        elif ext == ".png" and info.kind == "image":
            a = np.asarray(Image.open(path).convert("L" if info.event_shape[-1] == 1 else "RGB"))
            out.append(a.reshape((1, *a.shape[:2], -1)))
        elif ext == ".wav" and info.kind == "audio":
            import soundfile as sf

            from jaxar.data.audio import mu_law_encode_np

            audio, rate = sf.read(path, dtype="float32", always_2d=True)
            if rate != info.sample_rate:
                raise ValueError(f"{path}: expected {info.sample_rate} Hz audio, got {rate} Hz")
            t = info.event_shape[0]
            if len(audio) % t:
                raise ValueError(
                    f"{path}: expected a multiple of the model's {t} samples, got {len(audio)}"
                )
            out.append(mu_law_encode_np(audio.mean(axis=1), info.num_levels).reshape(-1, t))
        else:
            raise ValueError(
                f"{path}: expected .npy, or .{'png' if info.kind == 'image' else 'wav'} for "
                f"{info.kind} data, got {ext or 'no extension'}"
            )
        if out[-1].shape[1:] != tuple(info.event_shape):
            raise ValueError(
                f"{path}: expected events of shape {tuple(info.event_shape)}, got "
                f"{out[-1].shape[1:]}"
            )
    return np.concatenate(out).astype(np.int32)


def _split_data(config, model, source, num):
    from jaxar.data.pipeline import eval_batches

    xs, labels = [], []
    for batch in eval_batches(
        source, batch_size=config.eval_batch_size, binarize=config.data.binarize, seed=config.seed
    ):
        mask = np.asarray(batch["mask"]) > 0
        xs.append(np.asarray(batch["x"])[mask])
        if model.num_classes:
            labels.append(np.asarray(batch["label"])[mask])
        if num is not None and sum(map(len, xs)) >= num:
            break
    x = np.concatenate(xs)[:num].astype(np.int32)
    return x, (jnp.asarray(np.concatenate(labels)[:num], jnp.int32) if labels else None)


def exact_bits(model, params, x, cond=None, batch_size: int = 500) -> float:
    """The model's ``sum of -log2 p(x)`` over ``x`` (full forward passes, in batches)."""
    total = 0.0
    for i in range(0, len(x), batch_size):
        c = None if cond is None else cond[i : i + batch_size]
        lp = model.log_prob(params, jnp.asarray(x[i : i + batch_size]), c)
        total -= float(np.sum(np.asarray(lp, np.float64)))
    return total / math.log(2.0)


def compress_run(
    workdir: str,
    output: str,
    *,
    split: str = "test",
    num: int | None = None,
    files=None,
    checkpoint: str = "best",
    lanes: int = _DEFAULT_LANES,
    progress: bool = True,
) -> dict:
    """``jaxar compress``: code a run's data split (or ``files``) with its model into ``output``,
    print a summary (bytes, bits/dim achieved, the model's exact bits/dim, overhead) and
    return it as a dict."""
    from jaxar import train

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if num is not None and int(num) < 1:
        raise ValueError(f"num must be a positive number of examples, got {num}")
    config, model, params, info, step, test_src = train.load_run(workdir, checkpoint)
    _check_model(model)
    if getattr(model, "local_features", 0):
        raise ValueError(
            f"{model.name} is conditioned on local features; compress codes unconditional or "
            "class-conditional runs"
        )
    if files:
        if model.num_classes:
            raise ValueError(
                f"{model.name} is class-conditional; compress files with an unconditional run"
            )
        x, cond, what = _read_files(files, info)[:num], None, f"{len(files)} file(s)"
    else:
        source = test_src if split == "test" else train.load_data(config)[0]
        x, cond = _split_data(config, model, source, num)
        what = f"{info.name} ({split})"
    model.check_input(x, cond)
    t0 = time.perf_counter()
    stream = encode(model, params, x, cond, lanes=min(lanes, len(x)), progress=progress)
    seconds = time.perf_counter() - t0
    data = _pack_file(stream, None if cond is None else np.asarray(cond))
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "wb") as f:
        f.write(data)
    dims = len(x) * model.num_dims
    ideal = exact_bits(model, params, x, cond, config.eval_batch_size)
    summary = {
        "examples": len(x),
        "bytes": len(data),
        "bits_per_dim": 8 * len(data) / dims,
        "exact_bits_per_dim": ideal / dims,
        "overhead": 8 * len(data) / ideal - 1.0,
        "encode_seconds": seconds,
    }
    unit = "bits/sample" if info.kind == "audio" else "bits/dim"
    print(
        f"{output}: {len(x)} examples of {what} with {model.name} step {step}: "
        f"{len(data):,} bytes, {summary['bits_per_dim']:.4f} {unit} (the model's exact "
        f"{summary['exact_bits_per_dim']:.4f} on the same data; overhead "
        f"{100 * summary['overhead']:+.2f}%); encoded in {seconds:.1f} s "
        f"({len(x) / seconds:.1f} examples/s)"
    )
    return summary


def decompress_file(
    path: str, workdir: str, output_dir: str, *, checkpoint: str = "best", progress: bool = True
) -> np.ndarray:
    """``jaxar decompress``: decode ``path`` with the run's model into ``output_dir``
    (``decoded.npy``, and one PNG per image or WAV per clip); print a summary."""
    from PIL import Image

    from jaxar import reporting, train

    with open(path, "rb") as f:
        labels, stream = _unpack_file(f.read())
    read_header(stream)  # a damaged file fails before the run is loaded
    config, model, params, info, step, _ = train.load_run(workdir, checkpoint)
    t0 = time.perf_counter()
    x = decode(model, params, stream, labels, progress=progress)
    seconds = time.perf_counter() - t0
    os.makedirs(output_dir, exist_ok=True)
    np.save(os.path.join(output_dir, "decoded.npy"), x)
    for i, event in enumerate(x):
        stem = os.path.join(output_dir, f"{i:06d}")
        if info.kind == "audio":
            reporting.write_wav(stem + ".wav", event, info.num_levels, info.sample_rate)
        else:
            pix = (event.astype(np.float64) * (255.0 / (info.num_levels - 1))).round()
            pix = pix.astype(np.uint8)
            Image.fromarray(pix[..., 0] if pix.shape[-1] == 1 else pix).save(stem + ".png")
    print(
        f"{path}: decoded {len(x)} examples with {model.name} step {step} in {seconds:.1f} s "
        f"({len(x) / seconds:.1f} examples/s) into {output_dir}"
    )
    del config
    return x
