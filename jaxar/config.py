"""The default experiment config, and loading of config files that override it.

Config files live in ``experiments/configs/``. Each defines ``get_config()`` that starts from
:func:`default` (or from another config file through :func:`load`) and overrides what differs;
none copies another. Its docstring says how to run it and what came out.

The model's data-dependent hyperparameters (``image_shape`` or ``length``, ``num_levels``,
``num_classes``) are filled in from the dataset by the runner unless the config sets them.
"""

from __future__ import annotations

import importlib.util
import os

import ml_collections

__all__ = ["FASHION_MNIST", "default", "load", "runlocal", "short_cpu_budget"]

FASHION_MNIST = "idx:/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist


def default() -> ml_collections.ConfigDict:
    """Every key the runner reads, with its default."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    # Modules imported before anything is built (models or data loaders defined outside the
    # package register themselves on import); saved in config.json, so eval/sample/encode
    # import them again. Searched from the current directory first.
    c.imports = ()

    c.data = ml_collections.ConfigDict()
    c.data.name = "digits"  # digits | idx:DIR | tfds:NAME | wav:DIR
    c.data.data_dir = ""  # tfds data_dir ("" = tfds' default)
    c.data.binarize = ""  # "" | "dynamic" (fresh Bernoulli draw per epoch) | "static"
    c.data.conditional = False  # feed the labels to the model as class conditioning
    # Audio only: crop length (samples), sample rate, mu-law levels.
    c.data.length = 0
    c.data.sample_rate = 0
    # Audio only: local conditioning features, "" (none) or "log_mel" with one frame per
    # feature_hop samples; the runner sets the model's local_features and local_hop to match.
    c.data.features = ""
    c.data.num_mels = 80
    c.data.feature_hop = 0
    c.data.fft_size = 0  # 0: the least power of two >= 4 hops

    c.model_name = "pixelcnn"
    c.model = ml_collections.ConfigDict(
        dict(features=64, num_blocks=7, output_features=256, first_kernel=7, kernel=3)
    )
    c.compute_dtype = "float32"  # "bfloat16": bf16 compute, float32 params and likelihood

    c.batch_size = 64  # global, over all devices and processes
    c.eval_batch_size = 256
    c.num_steps = 2000
    c.grad_accum_steps = 1

    c.optim = ml_collections.ConfigDict()
    c.optim.learning_rate = 1e-3
    c.optim.schedule = "cosine"  # constant | cosine | exponential
    c.optim.warmup_steps = 100
    c.optim.decay_rate = 0.999995  # per step, for "exponential"
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.weight_decay = 0.0
    c.optim.grad_clip = 1.0  # global norm; 0 = off
    c.ema_decay = 0.0  # 0 = off; else evaluation and samples use the EMA weights

    c.log_every = 50
    c.eval_every = 500  # exact test bits/dim over the whole test split; also at the end
    c.checkpoint_every = 500
    c.keep_checkpoints = 3  # latest N, plus the best by test bits/dim
    c.num_samples = 64  # the final sample grid
    c.sample_method = ""  # "" = the model's default (cached where it has one)
    c.distributed = False  # call jax.distributed.initialize() (multi-host)
    c.prefetch = 2  # global batches sent to the devices ahead of the step (0: none)
    # Persistent XLA compilation cache: "" = $JAXAR_COMPILATION_CACHE or ~/.cache/jaxar/xla;
    # a directory; or "off" (jaxar.compilation). Also `--compilation_cache` on every command.
    c.compilation_cache = ""
    return c


def load(path: str, relative_to: str | None = None) -> ml_collections.ConfigDict:
    """Load the ``get_config()`` of a config file; ``FILE.py:ARG`` calls ``get_config(ARG)``
    (as ``--config FILE.py:ARG`` does, e.g. ``:runlocal``).

    ``relative_to`` (a file path, usually ``__file__``) resolves ``path`` next to it, so a
    variant can start from its base: ``config.load("fashion_mnist.py", __file__)``.
    """
    path, sep, arg = path.rpartition(".py:") if ".py:" in path else (path, "", "")
    path += ".py" if sep else ""
    if relative_to is not None and not os.path.isabs(path):
        path = os.path.join(os.path.dirname(os.path.abspath(relative_to)), path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no config file at {path}")
    import traceback

    name = "jaxar_config_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)

    def run(fn):
        # Any error in the file's own code becomes one line naming the file and the line; an
        # error already so named (a base config loaded by this one) passes through.
        try:
            return fn()
        except Exception as e:
            if getattr(e, "jaxar_config_file", None):
                raise
            if isinstance(e, SyntaxError) and e.filename == path:
                line, what = e.lineno, f"{type(e).__name__}: {e.msg}"
            else:
                frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == path]
                line = frames[-1].lineno if frames else None
                what = f"{type(e).__name__}: {e}".splitlines()[0]
            where = f"config file {path}" + (f", line {line}" if line else "")
            error = ValueError(f"{where}: {what}")
            error.jaxar_config_file = path
            raise error from None

    run(lambda: spec.loader.exec_module(module))
    if not hasattr(module, "get_config"):
        raise ValueError(f"config file {path} defines no get_config()")
    return run(lambda: module.get_config(arg) if arg else module.get_config())


def runlocal(
    c: ml_collections.ConfigDict,
    arg: str,
    *,
    num_steps: int = 200,
    batch_size: int = 16,
    eval_batch_size: int = 100,
    num_samples: int = 4,
    data: dict | None = None,
    **model,
) -> ml_collections.ConfigDict:
    """The ``:runlocal`` variant of a config (``--config FILE.py:runlocal``): the same data,
    model family and optimiser at the small ``model`` widths, with one small budget shared by
    every config (a few hundred steps, small batches, no EMA, one evaluation at the end) to check
    the pipeline end to end on a laptop. ``arg`` is the config's ``get_config`` argument: ``""``
    leaves ``c`` as it is; anything but ``"runlocal"`` is an error.
    """
    if not arg:
        return c
    if arg != "runlocal":
        raise ValueError(f"unknown config argument {arg!r}; expected 'runlocal' or none")
    c.batch_size, c.eval_batch_size, c.num_steps = batch_size, eval_batch_size, num_steps
    c.optim.warmup_steps = max(1, num_steps // 10)
    c.ema_decay = 0.0
    c.log_every = max(1, num_steps // 10)
    c.eval_every = c.checkpoint_every = num_steps
    c.num_samples = num_samples
    c.data.update(data or {})
    c.model.update(model)
    return c


def short_cpu_budget(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The one short CPU budget every model's Fashion-MNIST results-table run uses.

    1,000 steps of 32 images (about 0.5 epochs), exact test bits/dim over all 10,000 test
    images at the end. Models shrink their own widths in their ``*_cpu`` configs.
    """
    c.batch_size = 32
    c.num_steps = 1000
    c.eval_every = 1000
    c.checkpoint_every = 500
    c.log_every = 50
    c.eval_batch_size = 500
    c.optim.warmup_steps = 50
    c.num_samples = 16
    return c
