"""Test settings: strict dtype promotion (as equinox does), float32 everywhere."""

import atexit
import os
import shutil
import tempfile

# Four fake CPU devices for the data-parallel tests; set before JAX initialises (subprocesses
# the tests start inherit it). The tests run tiny models, whose time is compiling, not running:
# LLVM's optimisation level 0 halves the suite's CPU time (XLA's graph passes, and so the
# numerics, are the same; only the machine code is less optimised).
os.environ.setdefault(
    "XLA_FLAGS", "--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0"
)

# One XLA compilation cache for the whole run, shared by both xdist workers and every `jaxar`
# subprocess a test starts (they inherit the variable), and removed at the end: nothing is
# written to the user's ~/.cache, and a graph compiled by one test process is read back by the
# others (about 10% of the heaviest files' time on one core). The first process to import this
# file (xdist's controller, or pytest alone) makes it; a variable already set (a directory, or
# "off") is left as given.
if "JAXAR_COMPILATION_CACHE" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="jaxar-test-xla-")
    os.environ["JAXAR_COMPILATION_CACHE"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)

import jax
import pytest

from jaxar.compilation import enable_compilation_cache

jax.config.update("jax_numpy_dtype_promotion", "strict")
enable_compilation_cache()


@pytest.fixture
def rng():
    return jax.random.key(0)
