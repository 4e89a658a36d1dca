"""The README's compression table: jaxar's coder against the model's exact bits and classic codecs.

    python experiments/compression_table.py --workdir /work/runs/pixelcnn_pp_fm_cpu \
        --workdir /work/runs/gated_pixelcnn_fm_cpu --speech-workdir /work/runs/wavenet_speech_cpu

Images (the runs' test split, all of it unless ``--num``): for each run, bits/dim of the coded
stream (every byte of it: header, lane states, words), the model's exact bits/dim on the same
images, encode and decode images/s (the round trip is checked); then PNG (Pillow,
``optimize=True``, one file per image), WebP lossless (Pillow, ``method=6``) if Pillow has it,
and gzip / bz2 / lzma (highest presets) of the images' raw bytes, all in bits/dim. Speech (the
WaveNet run's test windows of mu-law levels): the coder against FLAC (soundfile, 8-bit PCM, all
windows as one file) and lzma of the same 8-bit stream, in bits/sample. Prints markdown rows.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import io
import lzma
import subprocess
import time

import numpy as np

from jaxar import coding, train


def _test_data(workdir, num):
    config, model, params, info, step, test_src = train.load_run(workdir)
    x, cond = coding._split_data(config, model, test_src, num)
    return model, params, info, step, x, cond


def _coder_row(workdir, model, params, step, x, cond, lanes):
    t0 = time.perf_counter()
    stream = coding.encode(model, params, x, cond, lanes=min(lanes, len(x)), progress=True)
    t1 = time.perf_counter()
    back = coding.decode(model, params, stream, cond, progress=True)
    t2 = time.perf_counter()
    np.testing.assert_array_equal(back, x)
    exact = coding.exact_bits(model, params, x, cond) / x.size
    coded = 8 * len(stream) / x.size
    return (
        f"| jaxar coder, {model.name} (`{workdir}`, step {step}) | {coded:.4f} | {exact:.4f} "
        f"| {100 * (coded / exact - 1):+.2f}% | {len(x) / (t1 - t0):.1f} | "
        f"{len(x) / (t2 - t1):.1f} |"
    )


def _classic_rows(x) -> list[str]:
    raw = x.astype(np.uint8).tobytes()
    rows = []
    for name, fn in (
        ("gzip -9", lambda b: gzip.compress(b, 9)),
        ("bz2 -9", lambda b: bz2.compress(b, 9)),
        ("lzma (preset 9 extreme)", lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME)),
    ):
        rows.append(f"| {name} of the raw bytes | {8 * len(fn(raw)) / x.size:.4f} | | | | |")
    return rows


def _image_rows(x) -> list[str]:
    from PIL import Image, features

    rows = []
    imgs = [Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im) for im in x.astype(np.uint8)]
    total = 0
    for im in imgs:
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=True)
        total += buf.tell()
    rows.append(
        f"| PNG (Pillow, optimize), one file per image | {8 * total / x.size:.4f} | | | | |"
    )
    if features.check("webp"):
        total = 0
        for im in imgs:
            buf = io.BytesIO()
            im.save(buf, format="WEBP", lossless=True, quality=100, method=6)
            total += buf.tell()
        rows.append(
            f"| WebP lossless (Pillow, method 6), one file per image | "
            f"{8 * total / x.size:.4f} | | | | |"
        )
    return rows + _classic_rows(x)


def _flac_row(x, sample_rate) -> str:
    import soundfile as sf

    buf = io.BytesIO()
    # The 8-bit stream as the top byte of 16-bit samples (soundfile writes no int8 arrays);
    # FLAC stores 8 bits per sample of it. The round trip is checked.
    pcm = ((x.astype(np.int16) - 128) * 256).reshape(-1)
    sf.write(buf, pcm, int(sample_rate), format="FLAC", subtype="PCM_S8")
    bits = 8 * len(buf.getvalue()) / x.size  # not tell(): the header is rewritten at close
    buf.seek(0)
    np.testing.assert_array_equal(sf.read(buf, dtype="int16")[0], pcm)
    return f"| FLAC (soundfile, 8-bit, all windows as one file) | {bits:.4f} | | | | |"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", action="append", default=[], help="an image run (repeatable)")
    ap.add_argument("--speech-workdir", help="a WaveNet run on speech")
    ap.add_argument("--data", help="only the classic codecs on this image data spec's test split")
    ap.add_argument("--num", type=int, default=None, help="first N test examples (default all)")
    ap.add_argument("--lanes", type=int, default=500)
    args = ap.parse_args()
    if not args.workdir and not args.speech_workdir and not args.data:
        ap.error("give at least one --workdir, --speech-workdir or --data")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    header = "| method | bits/dim | model's exact | overhead | encode img/s | decode img/s |"
    print(f"commit {commit}")
    if args.workdir:
        print(header + "\n|---|---|---|---|---|---|")
        x = None
        for wd in args.workdir:
            model, params, info, step, xs, cond = _test_data(wd, args.num)
            if info.kind != "image":
                ap.error(f"{wd} is not an image run ({info.kind})")
            x = xs if x is None else x
            print(_coder_row(wd, model, params, step, xs, cond, args.lanes))
        for row in _image_rows(x):
            print(row)
    if args.data and not args.workdir:
        from jaxar.data import load

        src = load(args.data, "test")
        n = len(src) if args.num is None else min(args.num, len(src))
        x = np.stack([src[i]["x"] for i in range(n)])
        print(f"{n} test images of {args.data}")
        print(header + "\n|---|---|---|---|---|---|")
        for row in _image_rows(x):
            print(row)
    if args.speech_workdir:
        model, params, info, step, x, cond = _test_data(args.speech_workdir, args.num)
        print(header.replace("bits/dim", "bits/sample").replace("img/s", "windows/s"))
        print("|---|---|---|---|---|---|")
        print(_coder_row(args.speech_workdir, model, params, step, x, cond, args.lanes))
        print(_flac_row(x, info.sample_rate))
        print(_classic_rows(x)[-1])


if __name__ == "__main__":
    main()
