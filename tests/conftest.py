"""Test settings: strict dtype promotion (as equinox does), float32 everywhere."""

import os

# Four fake CPU devices for the data-parallel tests; set before JAX initialises (subprocesses
# the tests start inherit it). The tests run tiny models, whose time is compiling, not running:
# LLVM's optimisation level 0 halves the suite's CPU time (XLA's graph passes, and so the
# numerics, are the same; only the machine code is less optimised).
os.environ.setdefault(
    "XLA_FLAGS", "--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0"
)

import jax
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def rng():
    return jax.random.key(0)
