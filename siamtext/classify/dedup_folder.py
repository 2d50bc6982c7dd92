"""The saved folder of a :class:`~siamtext.classify.DuplicateDetector`.

Layout (format 1, unchanged)::

    encoder/                  the SiamText (absent for a detector without a model)
    duplicate_detector.json   kind, format_version, threshold, threshold_, batch_size and the
                              fitted ThresholdClassifier's calibration (``classifier``)
    README.md                 the model card

A detector's ``index`` (the collection new texts are checked against) is not part of the
folder: it lives at its own path and is opened beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from siamtext.classify import storage
from siamtext.classify.threshold import ThresholdClassifier, check_similarity_threshold
from siamtext.model_card import MODEL_ID_PLACEHOLDER
from siamtext.validation import check_positive_int

if TYPE_CHECKING:
    from siamtext.model import SiamText

CONFIG_NAME = "duplicate_detector.json"

USAGE = f"""```python
from huggingface_hub import snapshot_download
from siamtext.classify import DuplicateDetector

folder = snapshot_download("{MODEL_ID_PLACEHOLDER}")
detector = DuplicateDetector.load(folder)
detector.is_duplicate("How do I reset my password?", "I forgot my password")
detector.find_duplicates(questions).groups
```"""


@dataclass
class Saved:
    """What a folder holds: the encoder, the settings and the fitted calibration."""

    model: SiamText | None
    threshold: float | None
    batch_size: int
    threshold_: float | None = None
    classifier: ThresholdClassifier | None = None


def save(folder: str | Path, *, model: SiamText | None, threshold: float | None,
         threshold_: float | None, batch_size: int,
         classifier: ThresholdClassifier | None) -> Path:
    """Write the folder (an existing one is replaced only once the new one is complete)."""
    import siamtext

    payload: dict[str, Any] = {
        "kind": "DuplicateDetector", "format_version": storage.FORMAT_VERSION,
        "siamtext_version": siamtext.__version__, "threshold": threshold,
        "threshold_": threshold_, "batch_size": batch_size,
    }
    if classifier is not None:
        clf = classifier
        payload["classifier"] = {
            "objective": clf.objective, "target": clf.target, "calibration": clf.calibration,
            "classes": clf.classes_.tolist(),
            "best_score": clf.best_score_, "calibration_": clf.calibration_,
        }

    def write(tmp: Path) -> None:
        storage.save_encoder(model, tmp, kind="DuplicateDetector", usage=USAGE)
        storage.write_json(tmp / CONFIG_NAME, payload)

    return storage.save_folder(folder, write)


def load(folder: str | Path, **model_kwargs: Any) -> Saved:
    """Read a folder written by :func:`save` (any earlier siamtext included).

    Raises:
        FileNotFoundError: If it is not a saved detector.
        ValueError: Naming the file, for values a detector cannot use.
    """
    payload = storage.read_json(folder, CONFIG_NAME, "DuplicateDetector")
    check_payload(Path(folder) / CONFIG_NAME, payload)
    model = storage.load_encoder(folder, **model_kwargs)
    saved = Saved(model, payload["threshold"], payload["batch_size"])
    if payload.get("threshold_") is not None:
        saved.threshold_ = float(payload["threshold_"])
    info = payload.get("classifier")
    if info is not None:
        clf = ThresholdClassifier(model, objective=info["objective"], target=info["target"],
                                  calibration=info["calibration"],
                                  batch_size=payload["batch_size"])
        clf.classes_ = np.asarray(info["classes"])
        clf.threshold_ = saved.threshold_
        clf.best_score_ = info["best_score"]
        clf.calibration_ = info["calibration_"]
        saved.classifier = clf
    return saved


def check_payload(path: Path, payload: dict) -> None:
    """Refuse a ``duplicate_detector.json`` whose values :func:`load`
    cannot use, naming the file."""
    try:
        for key in ("threshold", "threshold_"):
            if payload.get(key) is not None:
                check_similarity_threshold(payload[key], key)
        check_positive_int(payload.get("batch_size"), "batch_size")
        info = payload.get("classifier")
        if info is not None:
            if not isinstance(info, dict) or payload.get("threshold_") is None:
                raise ValueError("classifier must be an object and comes with threshold_")
            classes = info.get("classes")
            if not isinstance(classes, list) or len(classes) != 2:
                raise ValueError(f"classifier.classes must list the 2 labels, got {classes!r:.80}")
            calib = info.get("calibration_")
            if not isinstance(calib, dict) or calib.get("method") not in ("platt", "isotonic"):
                raise ValueError("classifier.calibration_ must be a platt or isotonic map")
            if calib["method"] == "platt":
                values = [calib.get("a"), calib.get("b")]
            else:
                x, y = calib.get("x"), calib.get("y")
                paired = isinstance(x, list) and isinstance(y, list) and 0 < len(x) == len(y)
                values = x + y if paired else [None]
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                raise ValueError(f"classifier.calibration_ holds unusable values: {calib!r:.80}")
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None
