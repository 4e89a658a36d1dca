"""jaxar: autoregressive generative models in JAX/Flax.

Exact likelihoods, provably causal networks, and samplers that run as one ``lax.scan``.
"""

from jaxar import distributions, models, nn, sampling
from jaxar.models import create

__version__ = "0.1.0"

__all__ = ["create", "distributions", "models", "nn", "sampling"]
