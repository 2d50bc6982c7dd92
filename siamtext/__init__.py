"""siamtext: Siamese transformer networks for text similarity."""

from __future__ import annotations

__version__ = "0.1.0"

from siamtext.config import SiamTextConfig
from siamtext.hub import HubMixin, push_folder_to_hub
from siamtext.model import SiamText
from siamtext.model_card import ModelCardData, build_model_card
from siamtext.resolve import DEFAULT_MODEL, ModelNotFoundError

__all__ = [
    "DEFAULT_MODEL",
    "HubMixin",
    "ModelCardData",
    "ModelNotFoundError",
    "SiamText",
    "SiamTextConfig",
    "build_model_card",
    "push_folder_to_hub",
    "__version__",
]
