"""Autoregressive models, registered by name.

``jaxar.models.create(name, **hparams)`` returns an :class:`AutoregressiveModel`; see
:mod:`jaxar.models.base` for the contract. Importing this package registers every family.
"""

from jaxar.models import gated_pixelcnn  # noqa: F401  (registers "gated_pixelcnn")
from jaxar.models import pixelcnn  # noqa: F401  (registers "pixelcnn")
from jaxar.models import pixelcnn_pp  # noqa: F401  (registers "pixelcnn_pp")
from jaxar.models import pixelrnn  # noqa: F401  (registers "row_lstm", "diagonal_bilstm")
from jaxar.models import wavenet  # noqa: F401  (registers "wavenet")
from jaxar.models.base import AutoregressiveModel
from jaxar.models.registry import create, hparam_names, names, register

__all__ = ["AutoregressiveModel", "create", "hparam_names", "names", "register"]
