"""Width reduction: a linear projection after pooling, initialised by PCA of the teacher's
embeddings, and :class:`ProjectedSiamText`, the tower that carries it.

A student distilled with ``dims=`` (:func:`siamtext.training.distill.distill`) embeds into
fewer dimensions, for indexes whose memory matters: ``pooled -> W pooled + b`` (then
normalised, if the tower normalises), with ``W`` the top ``dims`` principal components of
the teacher's pooled embeddings of the training texts and ``b = 0`` at the start, both
trained with the layers. sentence-transformers' ``Dense`` module is the same map (its
dimensionality-reduction example also starts it from PCA).

:class:`ProjectedSiamText` is a :class:`~siamtext.SiamText` whose ``embed`` applies the
projection; what works and what does not yet:

* ``encode``, ``similarity``, the classifiers and the index (they read ``embedding_dim``
  and call ``encode``): yes, on torch and on the exported backends (the exported graph is
  the transformer; the projection runs after pooling).
* ``save_pretrained`` / ``push_to_hub``: the sentence-transformers layout with a
  ``2_Dense`` module (so ``SentenceTransformer(folder)`` gives the same embeddings) and
  ``siamtext_projection.json``; no ``siamtext_config.json``, so that plain
  ``SiamText(folder)``, which has no projection, refuses the folder (naming the Dense
  module) instead of giving other embeddings. Load it with ``ProjectedSiamText(folder)``.
* ``export("onnx" | "openvino", quantize="int8")``: yes; load with
  ``ProjectedSiamText(folder, backend=..., file_name=...)``.
* not yet: ``encode(devices=...)`` (its worker processes load plain SiamText) and, in
  training, ``resume_from_checkpoint`` and ``load_best_model_at_end`` (the trainer reloads
  the transformer's weights only): refused with an error. Anything that reloads the model
  from its folder as plain ``SiamText`` (``siamtext index`` reopening its encoder by path)
  gets the refusal above.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from siamtext import st_format
from siamtext.config import CONFIG_NAME, SiamTextConfig
from siamtext.folder_checks import read_json_file
from siamtext.model import SiamText
from siamtext.resolve import resolve_model_path

PROJECTION_NAME = "siamtext_projection.json"
DENSE_DIR = "2_Dense"
_IDENTITY = "torch.nn.modules.linear.Identity"


def pca_projection(embeddings: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """The PCA map onto the top ``dims`` components of ``embeddings``, as ``(W, b)``.

    ``W`` (``(dims, dim)``) holds the principal directions of the centred rows, largest
    variance first, each with its largest entry positive (so the result does not depend on
    the SVD's sign choices). ``b`` is zero: ``W x`` keeps the part of the mean that lies on
    the components, so cosines between projected embeddings stay close to the teacher's
    (sentence-transformers' dimensionality-reduction example, a Dense without bias, does
    the same); centring (``b = -W mean``) would measure a different similarity.

    Raises:
        ValueError: If ``dims`` exceeds the rows or the width of ``embeddings``.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or not 1 <= dims <= min(x.shape):
        raise ValueError(f"dims={dims}: PCA of {x.shape[0]} embeddings of width "
                         f"{x.shape[-1]} gives at most {min(x.shape)} components")
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    weight = vt[:dims]
    signs = np.sign(weight[np.arange(dims), np.abs(weight).argmax(axis=1)])
    weight = weight * signs[:, None]
    return weight.astype(np.float32), np.zeros(dims, dtype=np.float32)


class ProjectedSiamText(SiamText):
    """A :class:`~siamtext.SiamText` with a linear projection after pooling (see the module
    docstring for what it supports).

    Args:
        model_name_or_path: A folder written by its ``save_pretrained`` (or a Hub id of one).
        **kwargs: As for :class:`~siamtext.SiamText` (``device``, ``backend``,
            ``file_name``, ``revision``, ``token``, ``cache_dir``...).

    Raises:
        ValueError: For a folder without ``siamtext_projection.json`` (load it with
            ``SiamText``), or a projection whose shape does not fit the tower.
    """

    def __init__(self, model_name_or_path: str | Path, **kwargs: Any) -> None:
        hub = {k: kwargs.get(k) for k in ("revision", "token", "cache_dir")}
        folder = resolve_model_path(model_name_or_path, **hub)
        super().__init__(model_name_or_path, **kwargs)
        info = _read_projection(folder)
        state = load_file(str(folder / DENSE_DIR / "model.safetensors"))
        self._set_projection(state["linear.weight"], state["linear.bias"])
        if self.projection.in_features != self.transformer_dim:
            raise ValueError(f"{folder}: the projection takes {self.projection.in_features} "
                             f"dimensions, the tower gives {self.transformer_dim}")
        if info.get("out_features") != self.projection.out_features:
            raise ValueError(f"{folder / PROJECTION_NAME}: out_features "
                             f"{info.get('out_features')} but the weights give "
                             f"{self.projection.out_features}")

    @classmethod
    def from_model(cls, model: SiamText, weight: np.ndarray | torch.Tensor,
                   bias: np.ndarray | torch.Tensor) -> ProjectedSiamText:
        """Turn ``model`` (a plain SiamText, e.g. a fresh student) into a projected one, in
        place, with ``y = weight @ pooled + bias``; returns it."""
        if type(model) is not SiamText:
            raise TypeError(f"model must be a plain SiamText, got {type(model).__name__}")
        model.__class__ = cls
        model._set_projection(torch.as_tensor(weight), torch.as_tensor(bias))
        return model  # type: ignore[return-value]

    def _set_projection(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        linear = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            linear.weight.copy_(weight)
            linear.bias.copy_(bias)
        self.projection = linear.to(self.transformer.device)

    @staticmethod
    def _read_settings(folder: Path, name: str | Path) -> tuple[Path, SiamTextConfig]:
        info = _read_projection(folder)
        return folder, SiamTextConfig(**info["siamtext_config"])

    # ------------------------------------------------------------------ the projection
    @property
    def transformer_dim(self) -> int:
        """The width of the pooled transformer output, before the projection."""
        return SiamText.embedding_dim.fget(self)  # type: ignore[attr-defined]

    @property
    def embedding_dim(self) -> int:
        projection = self.__dict__.get("_modules", {}).get("projection")
        return projection.out_features if projection is not None else self.transformer_dim

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              **inputs: torch.Tensor) -> torch.Tensor:
        """Pooled, projected embeddings, not normalised: ``(batch, seq) -> (batch, dims)``."""
        return self.projection(super().embed(input_ids, attention_mask, **inputs))

    def _embed_one_thread(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                          **inputs: torch.Tensor) -> torch.Tensor:
        return self.projection(super()._embed_one_thread(input_ids, attention_mask, **inputs))

    def _embed_arrays(self, arrays: dict[str, np.ndarray], one_thread: bool = False
                      ) -> np.ndarray:
        pooled = torch.from_numpy(super()._embed_arrays(arrays, one_thread))
        with torch.inference_mode():
            return self.projection(pooled).numpy()

    def encode(self, *args: Any, **kwargs: Any) -> Any:
        """:meth:`SiamText.encode <siamtext.SiamText.encode>`, but not with ``devices``."""
        if kwargs.get("devices") is not None or len(args) >= 8:
            raise ValueError("encode(devices=...) is not supported yet for a projected model "
                             "(its worker processes load plain SiamText); encode in one "
                             "process")
        return super().encode(*args, **kwargs)

    # ------------------------------------------------------------------ saving
    def _write_files(self, folder: Path, name: str | None = None) -> None:
        super()._write_files(folder, name)
        (folder / CONFIG_NAME).unlink(missing_ok=True)  # plain SiamText must refuse it
        dense = folder / DENSE_DIR
        dense.mkdir(exist_ok=True)
        linear = self.projection
        save_file({"linear.weight": linear.weight.detach().cpu().contiguous(),
                   "linear.bias": linear.bias.detach().cpu().contiguous()},
                  str(dense / "model.safetensors"))
        _write_json(dense / "config.json", {
            "in_features": linear.in_features, "out_features": linear.out_features,
            "bias": True, "activation_function": _IDENTITY})
        _write_json(folder / PROJECTION_NAME, {
            "in_features": linear.in_features, "out_features": linear.out_features,
            "siamtext_config": asdict(self.config)})
        pooling = folder / "1_Pooling" / "config.json"
        pool_cfg = read_json_file(pooling)
        pool_cfg["word_embedding_dimension"] = linear.in_features
        _write_json(pooling, pool_cfg)
        modules = [m for m in read_json_file(folder / st_format.MODULES_NAME)
                   if not str(m.get("type", "")).endswith("Normalize")]
        modules.append({"idx": 2, "name": "2", "path": DENSE_DIR,
                        "type": "sentence_transformers.models.Dense"})
        if self.config.normalize:
            (folder / "3_Normalize").mkdir(exist_ok=True)
            modules.append({"idx": 3, "name": "3", "path": "3_Normalize",
                            "type": "sentence_transformers.models.Normalize"})
        normalize_dir = folder / "2_Normalize"
        if normalize_dir.is_dir() and not any(normalize_dir.iterdir()):
            normalize_dir.rmdir()
        _write_json(folder / st_format.MODULES_NAME, modules)


def _read_projection(folder: Path) -> dict[str, Any]:
    path = folder / PROJECTION_NAME
    if not path.is_file():
        raise ValueError(f"{folder} holds no projection ({PROJECTION_NAME}): load it with "
                         "SiamText(...), not ProjectedSiamText")
    data = read_json_file(path)
    if not isinstance(data, dict) or not isinstance(data.get("siamtext_config"), dict):
        raise ValueError(f"{path} must hold a JSON object with 'siamtext_config'")
    return data


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
