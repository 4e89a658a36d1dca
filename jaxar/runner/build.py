"""Building a run from its config: imports, data, model (through the registry only).

The model's data-dependent hyperparameters come from the data (:data:`DATA_HPARAMS`): a
factory that accepts one of them gets it, unless the config sets it. A config that asks for
something the model cannot take (class conditioning, local features, a compute dtype) is an
error, never silently dropped.
"""

from __future__ import annotations

import importlib
import sys

import ml_collections

from jaxar import models
from jaxar.data import load
from jaxar.data.pipeline import binarized_info

__all__ = ["DATA_HPARAMS", "build_model", "data_options", "import_modules", "load_data"]

#: The hyperparameters the runner fills from the data when a factory accepts them.
DATA_HPARAMS = (
    "image_shape",  # (H, W, C) of image data
    "length",  # T of audio data
    "num_levels",  # values per dimension
    "num_classes",  # labels, with config.data.conditional
    "local_features",  # features per frame of local conditioning (config.data.features)
    "local_hop",  # samples per feature frame
    "dtype",  # config.compute_dtype
)


def import_modules(config) -> None:
    """Import the modules named in ``config.imports`` (models or data loaders defined outside
    the package register themselves when imported). The current directory is searched first,
    as ``python -m`` would, so a fork runs ``jaxar`` from its root."""
    names = config.get("imports", ()) or ()
    if isinstance(names, str):
        names = [n for n in names.split(",") if n]
    for name in names:
        if "" not in sys.path:
            sys.path.insert(0, "")
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ValueError(
                f"config.imports: cannot import {name!r} ({type(e).__name__}: {e}); expected a "
                "module name importable from the current directory or the Python path"
            ) from e


def data_options(config) -> dict:
    """The loader options among ``config.data`` (those that are set)."""
    opts = {}
    if config.data.get("data_dir"):
        opts["data_dir"] = config.data.data_dir
    for key in ("length", "sample_rate", "features", "num_mels", "feature_hop", "fft_size"):
        if config.data.get(key):
            opts[key] = config.data[key]
    return opts


def load_data(config):
    """``(train source, test source, info)`` of the configured data; ``info`` describes the
    events the model sees (after binarization, if any)."""
    import_modules(config)
    opts = data_options(config)
    train_src = load(config.data.name, "train", **opts)
    test_src = load(config.data.name, "test", **opts)
    return train_src, test_src, binarized_info(train_src.info, config.data.binarize)


def _data_hparams(config, info) -> dict:
    """The data-dependent hyperparameters this data and config give."""
    filled = {"num_levels": info.num_levels, "dtype": config.get("compute_dtype", "float32")}
    if len(info.event_shape) == 3:
        filled["image_shape"] = tuple(info.event_shape)
    elif len(info.event_shape) == 1:
        filled["length"] = info.event_shape[0]
    if config.data.get("conditional"):
        if not info.num_classes:
            raise ValueError(f"data.conditional is set but {info.name} has no labels")
        filled["num_classes"] = info.num_classes
    if info.feature_shape:
        filled["local_features"] = info.feature_shape[-1]
        filled["local_hop"] = info.feature_hop
    return filled


def build_model(config: ml_collections.ConfigDict, info):
    """The model named by the config, its data-dependent hyperparameters filled from ``info``.

    Raises ValueError when the model cannot take what the config and data ask for, or when a
    hyperparameter the config sets contradicts the data.
    """
    import_modules(config)
    name = config.model_name
    hparams = dict(config.model.to_dict()) if config.get("model") else {}
    accepted = models.hparam_names(name)
    filled = _data_hparams(config, info)
    if "num_classes" in filled and "num_classes" not in accepted:
        raise ValueError(
            f"data.conditional is set but model {name} takes no num_classes (no class "
            "conditioning); unset config.data.conditional or choose a conditional model"
        )
    if "local_features" in filled and "local_features" not in accepted:
        raise ValueError(
            f"the data {info.name} has local conditioning features but model {name} takes "
            "none; unset config.data.features"
        )
    if filled["dtype"] != "float32" and "dtype" not in accepted:
        raise ValueError(
            f"model {name} takes no dtype, so config.compute_dtype={filled['dtype']!r} cannot "
            "apply; use compute_dtype='float32'"
        )
    if hparams.get("local_features") and not info.feature_shape:
        raise ValueError(
            f"model {name} is conditioned on local features "
            f"(model.local_features={hparams['local_features']}) but the data {info.name} has "
            "none; set config.data.features (e.g. 'log_mel') and config.data.feature_hop"
        )
    for key, value in filled.items():
        if key not in accepted:
            continue
        if key in hparams and key != "dtype":
            given = tuple(hparams[key]) if key == "image_shape" else hparams[key]
            if given != value and key in ("local_features", "local_hop", "num_classes"):
                what = {
                    "local_features": f"{value} features per frame",
                    "local_hop": f"one feature frame per {value} samples",
                    "num_classes": f"{value} classes",
                }[key]
                raise ValueError(
                    f"model {name} has {key}={given} in the config but the data {info.name} "
                    f"has {what}; remove model.{key} from the config"
                )
        else:
            hparams[key] = value
    model = models.create(name, **hparams)
    if model.event_shape != tuple(info.event_shape) or model.num_levels != info.num_levels:
        raise ValueError(
            f"model {name} models events {model.event_shape} with "
            f"{model.num_levels} levels but the data {info.name} has {tuple(info.event_shape)} "
            f"with {info.num_levels} levels"
        )
    return model
