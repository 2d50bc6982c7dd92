"""The settings a SiamText model needs beyond the transformer's own config, saved as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from siamtext.folder_checks import read_json_file
from siamtext.pooling import POOLING

CONFIG_NAME = "siamtext_config.json"


@dataclass
class SiamTextConfig:
    """How token embeddings become a sentence embedding.

    Attributes:
        pooling: ``"mean"`` (masked mean, the default), ``"cls"`` or ``"max"``.
        normalize: L2-normalise embeddings, so that a dot product is a cosine similarity.
        max_length: Longest input in tokens; longer texts are truncated. ``None`` takes the
            model's own limit.
        base_model: Where the weights first came from, for model cards.
    """

    pooling: str = "mean"
    normalize: bool = True
    max_length: int | None = None
    base_model: str | None = None

    def __post_init__(self) -> None:
        if self.pooling not in POOLING:
            raise ValueError(f"pooling must be one of {sorted(POOLING)}, got {self.pooling!r}")
        if self.max_length is not None and (
            not isinstance(self.max_length, int) or self.max_length < 2
        ):
            raise ValueError(f"max_length must be an int >= 2 or None, got {self.max_length!r}")

    def save(self, folder: str | Path) -> None:
        """Write the config to ``folder/siamtext_config.json``."""
        path = Path(folder) / CONFIG_NAME
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> SiamTextConfig:
        """Read ``folder/siamtext_config.json``, ignoring keys this version does not know."""
        path = Path(folder) / CONFIG_NAME
        data = read_json_file(path)
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
