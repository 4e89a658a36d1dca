"""The ``jaxar`` command: train, eval, sample, encode, models.

jaxar train  --config FILE --workdir DIR [--config.KEY=VALUE ...]
jaxar eval   --workdir DIR [--checkpoint best|latest|STEP] [--bits-map]
jaxar sample --workdir DIR [--num N] [--class K] [--method cached|naive|fixed_point] [--out STEM]
             [--temperature T] [--top_p P] [--prompt-rows K | --prompt-seconds S] [--completions M]
jaxar encode --workdir VQVAE_DIR [--checkpoint best|latest|STEP]
jaxar compress --workdir DIR --output FILE [--split test] [--num N] [FILE.png|.wav|.npy ...]
jaxar decompress FILE --workdir DIR --output OUT_DIR
jaxar models

A prior trained on ``codes:VQVAE_DIR`` (two-stage generation, see jaxar.two_stage): ``sample``
also writes the decoded images (STEM_decoded.png), ``eval`` also the bound on image bits/dim.
"""

from __future__ import annotations

import logging
import os
import sys

import ml_collections
from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

__all__ = ["main"]

COMMANDS = ("train", "eval", "sample", "encode", "compress", "decompress", "models")
FLAGS = flags.FLAGS


def _define_flags(command: str) -> None:
    if command == "train":
        config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
    flags.DEFINE_string("workdir", None, "Run directory (checkpoints, logs, samples).")
    flags.DEFINE_string(
        "compilation_cache",
        "",
        "XLA compilation cache directory, or 'off'; default: the config's compilation_cache, "
        "else $JAXAR_COMPILATION_CACHE, else ~/.cache/jaxar/xla.",
    )
    if command in ("eval", "encode", "compress", "decompress"):
        flags.DEFINE_string("checkpoint", "best", "best, latest or a step number.")
    if command == "eval":
        flags.DEFINE_bool("bits-map", False, "Also write maps of the bits at every position.")
    if command in ("compress", "decompress"):
        flags.DEFINE_string("output", None, "The coded file (compress) or folder (decompress).")
    if command == "compress":
        flags.DEFINE_string("split", "test", "The split to code (without files): train or test.")
        flags.DEFINE_integer("num", None, "Code only the first N examples.")
    if command == "sample":
        flags.DEFINE_string("checkpoint", "best", "best, latest or a step number.")
        flags.DEFINE_integer("num", 64, "Number of samples.")
        flags.DEFINE_integer("class", None, "Class label to condition on (conditional models).")
        flags.DEFINE_string("method", "", "Sampling method; empty: the model's default.")
        flags.DEFINE_integer("seed", 0, "Sampling seed.")
        flags.DEFINE_string("out", "", "Output stem; default WORKDIR/samples_STEP.")
        flags.DEFINE_float("temperature", 1.0, "Sampling temperature (1: the model's own).")
        flags.DEFINE_float("top_p", 1.0, "Nucleus sampling mass (categorical outputs; 1: off).")
        flags.DEFINE_integer("prompt-rows", 0, "Complete --num test images from their first K rows")
        flags.DEFINE_float("prompt-seconds", 0.0, "Continue --num test clips from their first S s.")
        flags.DEFINE_integer("completions", 4, "Completions per test example (with a prompt).")


def _config_path(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _check_config_keys(argv: list[str]) -> None:
    """A clear error for --config.KEY overrides that name no key of the config."""
    from jaxar import config as jaxar_config

    path = _config_path(argv)
    if path is None:
        raise SystemExit("jaxar train: --config FILE is required")
    config = jaxar_config.load(path)
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        key = arg[len("--config.") :].split("=", 1)[0]
        node, parts = config, key.split(".")
        for i, part in enumerate(parts):
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                where = ".".join(parts[:i]) or "the config"
                valid = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
                raise SystemExit(f"jaxar: unknown config key {key!r}; {where} has keys {valid}")
            node = node[part]


def _train(argv):
    from jaxar import runner

    if FLAGS.workdir is None:
        raise app.UsageError("--workdir is required")
    runner.train_and_evaluate(FLAGS.config, FLAGS.workdir)


def _eval(argv):
    from jaxar import runner, two_stage

    config, model, state, info, step, test_src = runner.restore_run(FLAGS.workdir, FLAGS.checkpoint)
    metrics = runner.evaluate(
        model,
        state.eval_params,
        test_src,
        batch_size=config.eval_batch_size,
        binarize=config.data.binarize,
        seed=config.seed,
        model_state=state.model_state,
    )
    print(f"{model.name} step {step}{model.objective().report(metrics, info, len(test_src))}")
    if FLAGS["bits-map"].value:
        from jaxar import bitsmap

        paths = bitsmap.write_bits_maps(
            model,
            state.eval_params,
            test_src,
            info,
            os.path.join(FLAGS.workdir, "bits_map"),
            batch_size=config.eval_batch_size,
            binarize=config.data.binarize,
            seed=config.seed,
        )
        print("\n".join(paths))
    vqvae_dir = two_stage.prior_run_dir(config.data.name)
    if vqvae_dir is not None:
        bound = two_stage.image_bound(metrics["test/nll_nats"], two_stage.read_meta(vqvae_dir))
        print(
            f"image bound: {bound['test/image_bound_bits_per_dim']:.5f} bits/dim "
            f"(-log p(x|z) {bound['test/recon_nll_nats']:.2f} + -log p(z) "
            f"{metrics['test/nll_nats']:.2f} = {bound['test/image_bound_nats']:.2f} nats per image)"
        )


def _sample(argv):
    import jax
    import numpy as np

    from jaxar import reporting, runner, two_stage
    from jaxar.data import DataInfo

    shaping = dict(temperature=FLAGS.temperature, top_p=FLAGS.top_p)
    if FLAGS["prompt-rows"].value or FLAGS["prompt-seconds"].value:
        from jaxar import completion

        for path in completion.run_completion(
            FLAGS.workdir,
            checkpoint=FLAGS.checkpoint,
            rows=FLAGS["prompt-rows"].value,
            seconds=FLAGS["prompt-seconds"].value,
            num=FLAGS.num,
            per_example=FLAGS.completions,
            seed=FLAGS.seed,
            method=FLAGS.method or None,
            out=FLAGS.out,
            **shaping,
        ):
            print(path)
        return
    config, model, params, info, step, test_src = runner.load_run(FLAGS.workdir, FLAGS.checkpoint)
    if not callable(getattr(model, "sample", None)):
        raise ValueError(
            f"{FLAGS.workdir} is a {model.name} run, which has no sampler; encode it with "
            "`jaxar encode` and sample from a prior trained on codes:RUN_DIR"
        )
    examples = model.sampling_examples(test_src, FLAGS.num)
    cond = model.sample_cond(FLAGS.num, FLAGS["class"].value, examples)
    samples = model.sample(
        params,
        jax.random.key(FLAGS.seed),
        FLAGS.num,
        cond=cond,
        method=FLAGS.method or None,
        **shaping,
    )
    stem = FLAGS.out or os.path.join(FLAGS.workdir, f"samples_{step}")
    for path in reporting.save_samples(np.asarray(samples), info, stem):
        print(path)
    if examples is not None:  # the test windows whose features the samples were given
        for path in reporting.save_samples(examples["x"], info, stem + "_reference"):
            print(path)
    vqvae_dir = two_stage.prior_run_dir(config.data.name)
    if vqvae_dir is not None:
        decoder, variables, meta = two_stage.load_decoder(vqvae_dir)
        images = two_stage.decode_codes(decoder, variables, np.asarray(samples))
        image_info = DataInfo(meta["source"], decoder.event_shape, decoder.num_levels)
        for path in reporting.save_samples(images, image_info, stem + "_decoded"):
            print(path)


def _encode(argv):
    from jaxar import two_stage

    meta = two_stage.encode_run(FLAGS.workdir, FLAGS.checkpoint)
    print(
        f"encoded {meta['train_size']} train and {meta['test_size']} test images of "
        f"{meta['source']} to {meta['code_shape']} grids of {meta['num_codes']} codes in "
        f"{os.path.join(FLAGS.workdir, 'codes')} (step {meta['step']}); test reconstruction: "
        f"{meta['test_recon_bits_per_dim']:.4f} bits/dim ({meta['test_recon_nll_nats']:.2f} "
        f"nats per image), MSE {meta['test_mse']:.5f}"
    )


def _compress(argv):
    from jaxar import coding

    if FLAGS.output is None:
        raise app.UsageError("--output FILE is required")
    files = argv[1:] or None
    coding.compress_run(
        FLAGS.workdir,
        FLAGS.output,
        split=FLAGS.split,
        num=FLAGS.num,
        files=files,
        checkpoint=FLAGS.checkpoint,
    )


def _decompress(argv):
    from jaxar import coding

    if len(argv) != 2 or FLAGS.output is None:
        raise app.UsageError("expected: jaxar decompress FILE --workdir DIR --output OUT_DIR")
    coding.decompress_file(argv[1], FLAGS.workdir, FLAGS.output, checkpoint=FLAGS.checkpoint)


def _models(argv):
    from jaxar import models

    for name in models.names():
        print(f"{name}: {', '.join(models.hparam_names(name))}")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        raise SystemExit(2 if len(argv) < 2 or argv[1] not in ("-h", "--help") else 0)
    command = argv.pop(1)
    _define_flags(command)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    run = {
        "train": _train,
        "eval": _eval,
        "sample": _sample,
        "encode": _encode,
        "compress": _compress,
        "decompress": _decompress,
        "models": _models,
    }[command]

    def entry(rest):
        # absl routes every library's INFO lines to stderr; keep jaxar's, quiet the rest.
        absl_logging.set_verbosity(absl_logging.WARNING)
        logging.getLogger("jaxar").setLevel(logging.INFO)
        if command not in ("train", "models") and FLAGS.workdir is None:
            raise app.UsageError("--workdir is required")
        from jaxar.compilation import enable_compilation_cache

        configured = FLAGS.config.get("compilation_cache", "") if command == "train" else ""
        from jaxar.preemption import Preempted
        from jaxar.runlock import RunLockedError

        # Errors a user can cause are one line; anything else keeps its traceback.
        user_errors = (ValueError, OSError, FloatingPointError, RunLockedError)
        try:
            enable_compilation_cache(FLAGS.compilation_cache or configured or None)
            run(rest)
        except Preempted as e:
            print(f"jaxar {command}: {e}", file=sys.stderr)
            raise SystemExit(e.exit_code) from None
        except user_errors as e:
            raise SystemExit(f"jaxar {command}: error: {e}") from None

    if command == "train":
        try:
            _check_config_keys(argv)
        except (ValueError, FileNotFoundError) as e:
            raise SystemExit(f"jaxar train: error: {e}") from e
    app.run(entry, argv=argv)


if __name__ == "__main__":
    main()
