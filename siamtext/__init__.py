"""siamtext: Siamese transformer networks for text similarity."""

from __future__ import annotations

__version__ = "0.1.0"

from siamtext.config import SiamTextConfig
from siamtext.model import SiamText
from siamtext.resolve import DEFAULT_MODEL, ModelNotFoundError

__all__ = [
    "DEFAULT_MODEL",
    "ModelNotFoundError",
    "SiamText",
    "SiamTextConfig",
    "__version__",
]
