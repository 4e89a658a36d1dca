"""Autoregressive models, registered by name.

``jaxar.models.create(name, **hparams)`` returns an :class:`AutoregressiveModel`; see
:mod:`jaxar.models.base` for the contract. Importing this package registers every family.
"""

from jaxar.models import (
    gated_pixelcnn,  # noqa: F401  (registers "gated_pixelcnn")
    pixelcnn,  # noqa: F401  (registers "pixelcnn")
    pixelcnn_pp,  # noqa: F401  (registers "pixelcnn_pp")
    pixelrnn,  # noqa: F401  (registers "row_lstm", "diagonal_bilstm")
    transformer,  # noqa: F401  (registers "transformer")
    vqvae,  # noqa: F401  (registers "vqvae")
    wavenet,  # noqa: F401  (registers "wavenet")
)
from jaxar.models.base import AutoregressiveModel
from jaxar.models.registry import (
    create,
    create_tiny,
    hparam_names,
    names,
    register,
    tiny_shape,
    tiny_spec,
)

__all__ = [
    "AutoregressiveModel",
    "create",
    "create_tiny",
    "hparam_names",
    "names",
    "register",
    "tiny_shape",
    "tiny_spec",
]
