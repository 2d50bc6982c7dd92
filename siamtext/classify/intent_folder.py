"""The saved folder of an :class:`~siamtext.classify.IntentClassifier`.

Layout (format 1, unchanged since the first release)::

    encoder/                         the SiamText (absent for a classifier without a model)
    first_pass/                      the StaticEncoder of a cascade (model2vec format)
    intent_classifier.json           kind, format_version, params, classes, threshold_,
                                     threshold_info_, head_ (logistic), first_pass (cascade)
    intent_classifier.safetensors    examples, example_classes, head_coef / head_intercept,
                                     first_pass_examples
    README.md                        the model card

This module turns a :class:`~siamtext.classify.examples.ClassState` and the settings into
that folder and back; it knows nothing of the estimator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from siamtext.classify import examples as ex
from siamtext.classify import logistic, storage
from siamtext.model_card import MODEL_ID_PLACEHOLDER

if TYPE_CHECKING:
    from siamtext.model import SiamText
    from siamtext.static import StaticEncoder

CONFIG_NAME = "intent_classifier.json"
TENSORS_NAME = "intent_classifier.safetensors"
FIRST_PASS_DIR = "first_pass"
#: The estimator parameters written under ``params`` (the cascade's go under ``first_pass``).
PARAMS = ("mode", "n_neighbors", "temperature", "threshold", "unknown_label", "batch_size",
          "C", "class_weight")

USAGE = f"""```python
from huggingface_hub import snapshot_download
from siamtext.classify import IntentClassifier

folder = snapshot_download("{MODEL_ID_PLACEHOLDER}")
classifier = IntentClassifier.load(folder)
classifier.predict(["I lost my card"])
```"""


@dataclass
class Saved:
    """What a folder holds.

    Attributes:
        model: The encoder, or ``None``.
        params: Constructor arguments (the cascade's ``first_pass``, ``rerank_top`` and
            ``first_pass_margin`` included when there is one).
        state: The stored classes.
        fitted: Fitted attributes to set: ``threshold_``, ``threshold_info_``,
            ``first_pass_margin_``, ``first_pass_info_`` (those present).
    """

    model: SiamText | None
    params: dict[str, Any]
    state: ex.ClassState
    fitted: dict[str, Any] = field(default_factory=dict)


def _json_float(x: float | None) -> float | str | None:
    return x if x is None or math.isfinite(x) else ("inf" if x > 0 else "-inf")


def _from_json(x: float | str | None) -> float | None:
    return None if x is None else float(x)


def save(folder: str | Path, *, model: SiamText | None, first_pass: StaticEncoder | None,
         params: dict[str, Any], state: ex.ClassState, fitted: dict[str, Any]) -> Path:
    """Write the folder (replacing one that is there only once the new one is complete).

    Args:
        folder: Where.
        model: The encoder, or ``None``.
        first_pass: The static model of a cascade, or ``None``.
        params: Every name of :data:`PARAMS`, plus ``rerank_top`` and ``first_pass_margin``
            with a first pass.
        state: The snapshot to store.
        fitted: ``threshold_``, ``threshold_info_``, ``first_pass_margin_``,
            ``first_pass_info_`` (missing ones are ``None``).
    """
    from safetensors.torch import save_file

    import siamtext

    payload: dict[str, Any] = {
        "kind": "IntentClassifier", "format_version": storage.FORMAT_VERSION,
        "siamtext_version": siamtext.__version__,
        "params": {name: params[name] for name in PARAMS},
        "classes": state.labels,
        "threshold_": fitted.get("threshold_"),
        "threshold_info_": fitted.get("threshold_info_"),
    }
    tensors = {"examples": state.examples.detach().cpu().contiguous(),
               "example_classes": state.example_classes.detach().cpu().contiguous()}
    if params["mode"] == "logistic" and state.head is not None:
        payload["head_"] = {"C": state.head.C, "info": state.head.info}
        tensors.update(logistic.tensors(state.head))
    if first_pass is not None:
        payload["first_pass"] = {
            "rerank_top": params.get("rerank_top"),
            "first_pass_margin": _json_float(params.get("first_pass_margin")),
            "first_pass_margin_": _json_float(fitted.get("first_pass_margin_")),
            "first_pass_info_": fitted.get("first_pass_info_")}
        if state.static is not None:
            tensors["first_pass_examples"] = state.static.examples.contiguous()

    def write(tmp: Path) -> None:
        storage.save_encoder(model, tmp, kind="IntentClassifier", usage=USAGE)
        if first_pass is not None:
            first_pass.save_pretrained(tmp / FIRST_PASS_DIR)
        save_file(tensors, str(tmp / TENSORS_NAME))
        storage.write_json(tmp / CONFIG_NAME, payload)

    return storage.save_folder(folder, write)


def load(folder: str | Path, **model_kwargs: Any) -> Saved:
    """Read a folder written by :func:`save` (any earlier siamtext included).

    Raises:
        FileNotFoundError: If the folder is not a saved classifier.
        ValueError: Naming the file, for tensors that do not fit the stored classes or an
            encoder of another dimension.
    """
    payload = storage.read_json(folder, CONFIG_NAME, "IntentClassifier")
    path = Path(folder) / TENSORS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a saved IntentClassifier: "
                                f"{TENSORS_NAME} is missing")
    tensors = storage.load_tensors(path)
    check_tensors(path, payload, tensors)
    # a folder saved before class_weight existed was fitted without weights
    params = {"class_weight": None, **payload["params"]}
    model = storage.load_encoder(folder, **model_kwargs)
    if model is not None and tensors["examples"].shape[1] != model.embedding_dim:
        raise ValueError(f"{path}: the examples have dimension "
                         f"{tensors['examples'].shape[1]}, the encoder in "
                         f"{Path(folder) / storage.ENCODER_DIR} embeds in "
                         f"{model.embedding_dim}")
    device = model.device if model is not None else torch.device("cpu")
    head = None
    if params.get("mode") == "logistic":
        stored = payload.get("head_")
        if not isinstance(stored, dict) or not isinstance(stored.get("C"), (int, float)):
            raise ValueError(f"{Path(folder) / CONFIG_NAME}: a logistic classifier needs "
                             "'head_': {'C': <number>, ...}")
        head = logistic.from_tensors(path, tensors, len(payload["classes"]),
                                     tensors["examples"].shape[1], stored["C"],
                                     stored.get("info"), device)
    fitted: dict[str, Any] = {}
    if payload.get("threshold_") is not None:
        fitted["threshold_"] = float(payload["threshold_"])
        fitted["threshold_info_"] = payload.get("threshold_info_")
    static = None
    info = payload.get("first_pass")
    if info is not None:
        from siamtext.static import StaticEncoder

        params["first_pass"] = StaticEncoder.from_pretrained(Path(folder) / FIRST_PASS_DIR)
        params["rerank_top"] = info["rerank_top"]
        params["first_pass_margin"] = _from_json(info["first_pass_margin"])
        if info.get("first_pass_margin_") is not None:
            fitted["first_pass_margin_"] = _from_json(info["first_pass_margin_"])
            fitted["first_pass_info_"] = info.get("first_pass_info_")
        if "first_pass_examples" in tensors:
            static = tensors["first_pass_examples"].float()
    state = ex.build(np.asarray(payload["classes"]), tensors["examples"].to(device),
                     tensors["example_classes"].to(device), head=head, static=static)
    return Saved(model, params, state, fitted)


def check_tensors(path: Path, payload: dict, tensors: dict[str, torch.Tensor]) -> None:
    """Refuse stored examples that do not fit the stored classes, naming the file."""
    examples, owners = tensors.get("examples"), tensors.get("example_classes")
    classes = payload.get("classes")
    if examples is None or owners is None:
        raise ValueError(f"{path} lacks the 'examples' or 'example_classes' tensor")
    if not isinstance(classes, list) or not classes:
        raise ValueError(f"{path.parent / CONFIG_NAME}: 'classes' must be a non-empty list")
    if examples.ndim != 2 or not examples.is_floating_point():
        raise ValueError(f"{path}: 'examples' must be a 2-D float tensor, got "
                         f"{examples.dtype} of shape {tuple(examples.shape)}")
    if owners.ndim != 1 or owners.dtype != torch.long or len(owners) != len(examples):
        raise ValueError(f"{path}: 'example_classes' must be {len(examples)} int64 class "
                         f"indices, got {owners.dtype} of shape {tuple(owners.shape)}")
    out_of_range = len(owners) > 0 and (int(owners.min()) < 0
                                         or int(owners.max()) >= len(classes))
    if out_of_range or torch.unique(owners).numel() != len(classes):
        raise ValueError(f"{path}: 'example_classes' does not match the {len(classes)} labels "
                         f"of {CONFIG_NAME}: every class needs an example and every index "
                         f"must be in [0, {len(classes)})")
    if not bool(torch.isfinite(examples).all()):
        raise ValueError(f"{path}: 'examples' holds NaN or infinite values")
    static = tensors.get("first_pass_examples")
    if static is not None and (static.ndim != 2 or len(static) != len(examples)):
        raise ValueError(f"{path}: 'first_pass_examples' must have one row per example "
                         f"({len(examples)}), got shape {tuple(static.shape)}")
