"""Test settings: strict dtype promotion (as equinox does), float32 everywhere."""

import os

# Four fake CPU devices for the data-parallel tests; set before JAX initialises.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def rng():
    return jax.random.key(0)
