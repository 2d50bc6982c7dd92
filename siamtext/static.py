"""Static embeddings distilled from a tower: a fast first pass for search and classification.

:func:`distill_static` runs the tower once over every token of its vocabulary (model2vec's
distillation: each token alone through the transformer, pooled like the tower pools, then PCA
and SIF weighting; Tulkens & van Dongen 2024, "Model2Vec"). A :class:`StaticEncoder` then
embeds a sentence as the mean of its tokens' vectors: no transformer at all, so it encodes
tens of thousands of sentences a second on one CPU core, at some cost in quality. Use it to
propose candidates (:mod:`siamtext.classify.cascade`) and let the transformer decide.

Needs the ``static`` extra: ``pip install 'siamtext[static]'`` (model2vec and skeletoken).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from siamtext.extras import require
from siamtext.validation import check_choice, check_positive_int, check_texts

if TYPE_CHECKING:
    from siamtext.model import SiamText

logger = logging.getLogger(__name__)

# siamtext pooling -> model2vec's name for the same pooling of one token's outputs
_POOLING = {"mean": "mean", "cls": "first"}
# the files model2vec.StaticModel.from_pretrained reads from a local folder
_FILES = ("model.safetensors", "tokenizer.json", "config.json")


def distill_static(
    model: SiamText,
    *,
    pca_dims: int | None = 256,
    sif_coefficient: float | None = 1e-4,
    pooling: Literal["mean", "first"] | None = None,
    vocabulary: Sequence[str] | None = None,
    quantize_to: Literal["float32", "float16"] = "float32",
    device: str | torch.device | None = None,
) -> StaticEncoder:
    """Distil a tower into a static encoder (model2vec), in minutes on a CPU.

    The tower's weights are not changed (model2vec works on a copy).

    Args:
        model: The (fine-tuned) tower, a :class:`~siamtext.SiamText`.
        pca_dims: Dimensions kept by PCA (capped at the tower's width); ``None``: no PCA.
            256 is model2vec's default; on all-MiniLM-L6-v2 (384 wide) it keeps nearly all
            of the quality at two thirds of the size.
        sif_coefficient: Smooth inverse frequency weighting of the tokens (by their rank in
            the vocabulary), in (0, 1); ``None``: none.
        pooling: How a token's outputs become its vector: ``"mean"`` or ``"first"``
            (``[CLS]``). ``None`` follows the tower: mean for ``"mean"`` and ``"max"``
            pooling (max has no counterpart; mean comes closest), first for ``"cls"``.
        vocabulary: Extra words to add to the tokenizer's vocabulary as whole tokens.
        quantize_to: Storage of the vectors. ``"float32"`` (default) keeps them exact;
            ``"float16"`` halves the file.
        device: Where the tower runs during distillation (default: its own device).

    Returns:
        A :class:`StaticEncoder`.

    Raises:
        ValueError: For a bad ``pca_dims``, ``sif_coefficient``, ``pooling`` or
            ``quantize_to``, before any work.
        ImportError: Without the ``static`` extra.

    Examples:
        >>> static = SiamText().distill_static(pca_dims=256)
        >>> static.encode(["How do I reset my password?"]).shape
        (1, 256)
    """
    from siamtext.model import SiamText

    if not isinstance(model, SiamText):
        raise TypeError(f"model must be a SiamText, got {type(model).__name__}")
    if pca_dims is not None:
        check_positive_int(pca_dims, "pca_dims")
        pca_dims = min(pca_dims, model.embedding_dim)
    if sif_coefficient is not None and (
            isinstance(sif_coefficient, bool) or not isinstance(sif_coefficient, (int, float))
            or not 0.0 < sif_coefficient < 1.0):
        raise ValueError(f"sif_coefficient must be a number in (0, 1) or None, got "
                         f"{sif_coefficient!r}")
    if pooling is None:
        pooling = _POOLING.get(model.config.pooling, "mean")
        if model.config.pooling not in _POOLING:
            logger.info("distill_static: the tower pools by %r, which a single token has no "
                        "counterpart for; distilling with mean pooling", model.config.pooling)
    check_choice(pooling, ("mean", "first"), "pooling")
    check_choice(quantize_to, ("float32", "float16"), "quantize_to")
    if vocabulary is not None:
        vocabulary = check_texts(vocabulary, "vocabulary")
    distill = require("model2vec.distill", "static", "distill_static()")
    device = str(model.device if device is None else torch.device(device))
    static = distill.distill_from_model(
        model.transformer, model.tokenizer, vocabulary=vocabulary, device=device,
        pca_dims=pca_dims, sif_coefficient=sif_coefficient, quantize_to=quantize_to,
        pooling=pooling,
    )
    static.base_model_name = model.config.base_model or model.model_name_or_path
    return StaticEncoder(static)


class StaticEncoder:
    """A static sentence encoder: the normalised mean of its tokens' vectors.

    A thin wrapper over ``model2vec.StaticModel`` with the contract of
    :meth:`SiamText.encode <siamtext.SiamText.encode>`: float32 rows, L2-normalised, in
    input order. Build one with :func:`distill_static` (or
    :meth:`SiamText.distill_static <siamtext.SiamText.distill_static>`), or load one with
    :meth:`from_pretrained`; the folder is model2vec's own (safetensors, ``tokenizer.json``
    and JSON), so ``model2vec.StaticModel.from_pretrained(folder)`` reads it too.

    Args:
        static_model: A ``model2vec.StaticModel``.

    Attributes:
        static_model: The wrapped model2vec model.

    Examples:
        >>> static = StaticEncoder.from_pretrained("static/")
        >>> static.similarity(["I lost my card"], ["my card is gone"]).shape
        (1, 1)
    """

    def __init__(self, static_model: Any) -> None:
        model2vec = require("model2vec", "static", "StaticEncoder")
        if not isinstance(static_model, model2vec.StaticModel):
            raise TypeError(f"static_model must be a model2vec.StaticModel, got "
                            f"{type(static_model).__name__}")
        self.static_model = static_model

    def __repr__(self) -> str:
        return (f"StaticEncoder(base_model={self.static_model.base_model_name!r}, "
                f"vocabulary={len(self.static_model.tokens)}, dim={self.embedding_dim})")

    @property
    def embedding_dim(self) -> int:
        """Size of the sentence embeddings."""
        return int(self.static_model.dim)

    @property
    def device(self) -> torch.device:
        """Always the CPU: the vectors are numpy arrays."""
        return torch.device("cpu")

    def encode(
        self,
        sentences: str | Sequence[str],
        batch_size: int = 1024,
        convert_to: Literal["numpy", "torch"] = "numpy",
        show_progress: bool | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Embed sentences as the normalised mean of their token vectors.

        A text with no known token (the empty string) gets the zero vector.

        Args:
            sentences: A string or a list of strings.
            batch_size: Sentences per tokenizer call.
            convert_to: ``"numpy"`` (float32 array) or ``"torch"`` (float32 CPU tensor).
            show_progress: Show a progress bar; ``None``: only for long inputs.

        Returns:
            ``(dim,)`` for a single string, else ``(len(sentences), dim)``.

        Raises:
            TypeError: If ``sentences`` is not a string or a list of strings.
            ValueError: For a bad ``batch_size`` or ``convert_to``.
        """
        single = isinstance(sentences, str)
        texts = check_texts(sentences)
        check_positive_int(batch_size, "batch_size")
        check_choice(convert_to, ("numpy", "torch"), "convert_to")
        if not texts:
            out = np.zeros((0, self.embedding_dim), dtype=np.float32)
        else:
            if show_progress is None:
                show_progress = len(texts) >= 100 * batch_size
            out = self.static_model.encode(texts, batch_size=batch_size, normalize=False,
                                           show_progress_bar=show_progress)
            out = np.asarray(out, dtype=np.float32).reshape(len(texts), -1)
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out = out / np.where(norms > 0, norms, 1.0).astype(np.float32)
        if single:
            out = out[0]
        return torch.from_numpy(np.ascontiguousarray(out)) if convert_to == "torch" else out

    def similarity(self, a: str | Sequence[str] | np.ndarray | torch.Tensor,
                   b: str | Sequence[str] | np.ndarray | torch.Tensor) -> np.ndarray:
        """Cosine similarity of every item of ``a`` with every item of ``b``.

        Args:
            a: Texts (a string or a list) or ``(n, dim)`` embeddings.
            b: The same for the other side.

        Returns:
            ``(len(a), len(b))`` float32 similarities in [-1, 1].
        """
        return self._as_embeddings(a, "a") @ self._as_embeddings(b, "b").T

    def _as_embeddings(self, x: object, name: str) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        if isinstance(x, np.ndarray) and x.dtype.kind not in "UO":
            x = np.atleast_2d(np.asarray(x, dtype=np.float32))
            if x.ndim != 2 or x.shape[1] != self.embedding_dim:
                raise ValueError(f"{name} embeddings must have shape (n, {self.embedding_dim}), "
                                 f"got {x.shape}")
            norms = np.linalg.norm(x, axis=1, keepdims=True)
            return x / np.where(norms > 0, norms, 1.0).astype(np.float32)
        texts = check_texts(x.tolist() if isinstance(x, np.ndarray) else x, name)
        return self.encode(texts)

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, folder: str | Path) -> Path:
        """Write model2vec's folder: ``model.safetensors``, ``tokenizer.json``,
        ``config.json``, ``modules.json`` and a ``README.md`` model card.

        Returns:
            The folder.
        """
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"folder must be a directory path, got an existing file: {folder}")
        self.static_model.save_pretrained(folder)
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> StaticEncoder:
        """Load a folder written by :meth:`save_pretrained` (or any local model2vec folder).

        Raises:
            FileNotFoundError: If the folder or one of its files is missing.
            ImportError: Without the ``static`` extra.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"no static model folder at {folder}: save one with "
                                    "StaticEncoder.save_pretrained(folder)")
        missing = [name for name in _FILES if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder} is not a static model folder: {', '.join(missing)} "
                                    f"missing (expected {', '.join(_FILES)})")
        model2vec = require("model2vec", "static", "StaticEncoder.from_pretrained()")
        return cls(model2vec.StaticModel.from_pretrained(folder))
