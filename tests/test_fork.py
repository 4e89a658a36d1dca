"""A model from outside the package: the README's worked example (examples/causal_conv1d.py)
passes the model contract, and trains, evaluates and samples through the CLI with no edit inside
jaxar/, named only in its config's ``imports``."""

import importlib
import json
import os
import pathlib

import jax
import ml_collections
import numpy as np
import pytest
from test_train import _cli  # the CLI in a subprocess, as a user runs it

from jaxar import config as jaxar_config
from jaxar import models
from jaxar.models import registry
from jaxar.testing import (
    assert_cached_matches_naive,
    assert_causal,
    assert_teacher_forced_matches_full,
    randomize_params,
)

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "examples" / "causal_conv1d_config.py")


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made by a test are undone after it (other tests iterate the names)."""
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    monkeypatch.setattr(registry, "_TINY", dict(registry._TINY))


@pytest.fixture
def fork_module(scratch_registry, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))
    module = importlib.import_module("examples.causal_conv1d")
    return importlib.reload(module)  # registers into the scratch registry


@pytest.mark.parametrize("role", ["grey", "rgb"])
def test_the_example_passes_the_contract(fork_module, role):
    model = models.create_tiny("causal_conv1d", role)
    params = randomize_params(model.init(jax.random.key(0)), jax.random.key(1))
    x = jax.random.randint(jax.random.key(2), (1, *model.event_shape), 0, model.num_levels)
    assert_causal(model, params, x[0])
    samples = assert_cached_matches_naive(model, params, jax.random.key(3), 2)
    assert_teacher_forced_matches_full(model, params, samples)


def test_the_example_trains_evaluates_and_samples_through_the_cli(tmp_path):
    workdir = str(tmp_path / "run")
    budget = ["--config.num_steps=4", "--config.eval_every=4", "--config.checkpoint_every=4"]
    r = _cli("train", f"--config={CONFIG}", f"--workdir={workdir}", *budget,
             "--config.num_samples=4", cwd=REPO)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    saved = json.load(open(os.path.join(workdir, "config.json")))
    assert saved["imports"] == ["examples.causal_conv1d"] and saved["model_name"] == "causal_conv1d"
    assert np.load(os.path.join(workdir, "samples.npy")).shape == (4, 8, 8, 1)
    # eval and sample rebuild the model from config.json alone, importing it again.
    r = _cli("eval", f"--workdir={workdir}", cwd=REPO)
    assert r.returncode == 0 and "causal_conv1d step 4: test bits/dim" in r.stdout, r.stderr[-3000:]
    r = _cli("sample", f"--workdir={workdir}", "--num=2", f"--out={tmp_path}/s", cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    assert np.load(f"{tmp_path}/s.npy").shape == (2, 8, 8, 1)


def test_a_config_that_registers_a_model_loads_twice(tmp_path, scratch_registry):
    """The CLI executes a config file twice (to check overrides, then to build it): a model
    registered inside it must not collide with itself; another factory under a taken name
    does."""
    path = tmp_path / "inline.py"
    path.write_text(
        "from jaxar import config, models\n"
        "from jaxar.models import pixelcnn\n\n"
        "@models.register('inline_pixelcnn')\n"
        "def inline_pixelcnn(image_shape=(8, 8, 1), num_levels=17):\n"
        "    return pixelcnn.pixelcnn(image_shape=image_shape, num_levels=num_levels)\n\n"
        "def get_config():\n"
        "    c = config.default()\n"
        "    c.model_name = 'inline_pixelcnn'\n"
        "    return c\n"
    )
    for _ in range(2):
        assert jaxar_config.load(str(path)).model_name == "inline_pixelcnn"
    with pytest.raises(ValueError, match="'inline_pixelcnn' is already registered by"):
        models.register("inline_pixelcnn")(lambda image_shape=(8, 8, 1): None)


def test_a_fork_model_without_dtype_still_gets_the_datas_shape_and_levels(scratch_registry):
    """A fork's factory need not take every data-given hyperparameter: ``build_model`` skips
    the ones it lacks (``dtype`` here, the first filled) and still fills the rest."""
    from jaxar.data import DataInfo
    from jaxar.models import pixelcnn
    from jaxar.runner import build_model

    @models.register("no_dtype_pixelcnn")
    def no_dtype_pixelcnn(image_shape=(8, 8, 1), num_levels=17):
        return pixelcnn.pixelcnn(image_shape=image_shape, num_levels=num_levels, features=4)

    c = jaxar_config.default()
    c.model_name, c.model = "no_dtype_pixelcnn", ml_collections.ConfigDict()
    model = build_model(c, DataInfo("img", (4, 5, 1), 5))
    assert (model.event_shape, model.num_levels) == ((4, 5, 1), 5)
    assert "dtype" not in model.hparams


def test_a_missing_import_is_one_clear_error():
    c = jaxar_config.default()
    c.imports = ("no_such_module_here",)
    from jaxar import runner

    with pytest.raises(ValueError, match="config.imports: cannot import 'no_such_module_here'"):
        runner.load_data(c)


def test_imports_given_as_a_comma_separated_string_import_each_module(tmp_path, monkeypatch):
    # A config not built on jaxar's defaults (where imports is a tuple) may name its modules in
    # one comma-separated string: each is imported, from the current directory first, and
    # empty names are skipped.
    import sys

    import ml_collections

    from jaxar.runner import build

    for name in ("fork_mod_a", "fork_mod_b"):
        (tmp_path / f"{name}.py").write_text("LOADED = True\n")
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != ""])
    build.import_modules(ml_collections.ConfigDict(dict(imports="fork_mod_a,,fork_mod_b")))
    assert sys.modules["fork_mod_a"].LOADED and sys.modules["fork_mod_b"].LOADED
    for name in ("fork_mod_a", "fork_mod_b"):
        monkeypatch.delitem(sys.modules, name)
