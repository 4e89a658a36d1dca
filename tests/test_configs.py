"""Every config file loads, builds its model for its data's shape, and documents itself; the
``:runlocal`` variants are the one shared budget, never a copied block."""

import pathlib
import re

import jax
import pytest

from jaxar import config as jaxar_config
from jaxar import models, runner
from jaxar.data import DataInfo

CONFIGS = sorted((pathlib.Path(__file__).parents[1] / "experiments" / "configs").glob("*.py"))
RUNLOCAL = [p for p in CONFIGS if "jaxar_config.runlocal(c, arg" in p.read_text()]


def _info(c) -> DataInfo:
    """The data's description without reading the data (tfds and audio need no download)."""
    name = c.data.name
    if name.startswith("wav:") or c.model_name == "wavenet":
        return DataInfo(name, (c.data.length,), 256, 5 if c.data.conditional else 0, "audio")
    if name.startswith("codes:"):
        return DataInfo(name, (7, 7, 1), 64, 10)
    shape = {"digits": (8, 8, 1)}.get(name, (32, 32, 3) if "cifar" in name else (28, 28, 1))
    levels = 17 if name == "digits" else 2 if c.data.binarize else 256
    return DataInfo(name, shape, levels, 10)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads_builds_and_documents_itself(path):
    c = jaxar_config.load(str(path))
    doc = path.read_text().split('"""')[1]
    assert re.search(r"jaxar\s+train\s+--config\s+experiments/configs/", doc) or "python" in doc, (
        path.name
    )
    assert re.search(r"[Rr]esult|measured|needed", doc), f"{path.name}: no result in docstring"
    assert "not yet measured." not in doc.replace("\n", " ") or "needed" in doc, path.name
    info = _info(c)
    if info.kind == "audio" and c.data.get("features"):
        return  # needs the data's feature frames; tests/test_wavenet_runner.py builds these
    model = runner.build_model(c, info)
    jax.eval_shape(model.init, jax.random.key(0))


@pytest.mark.parametrize("path", RUNLOCAL, ids=lambda p: p.name)
def test_runlocal_variant_is_the_shared_budget(path):
    full = jaxar_config.load(str(path))
    small = jaxar_config.load(f"{path}:runlocal")
    assert small.num_steps < full.num_steps and small.ema_decay == 0.0
    assert small.eval_every == small.checkpoint_every == small.num_steps
    assert small.model_name == full.model_name and small.data.name == full.data.name
    with pytest.raises(ValueError, match="unknown config argument 'fast'"):
        jaxar_config.load(f"{path}:fast")


def test_every_model_family_has_a_config():
    named = {jaxar_config.load(str(p)).model_name for p in CONFIGS}
    assert set(models.names()) <= named, set(models.names()) - named
