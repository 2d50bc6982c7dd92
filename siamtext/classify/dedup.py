"""Duplicate detection: a threshold on cosine similarity, for pairs and whole corpora."""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from sklearn.exceptions import NotFittedError

from siamtext.classify import candidates, storage
from siamtext.classify.approximate import faiss_pairs
from siamtext.classify.first_pass import texts_of
from siamtext.classify.search import DEFAULT_BLOCK_SIZE, connected_groups, exact_pairs
from siamtext.classify.threshold import (
    Calibration,
    Objective,
    ThresholdClassifier,
    apply_calibration,
    check_similarity_threshold,
    encode_pair_scores,
)
from siamtext.hub import HubMixin
from siamtext.model_card import MODEL_ID_PLACEHOLDER
from siamtext.validation import check_choice, check_positive_int, check_texts

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from siamtext.model import SiamText
    from siamtext.static import StaticEncoder

logger = logging.getLogger(__name__)
CONFIG_NAME = "duplicate_detector.json"


@dataclass
class Duplicates:
    """The duplicates found in a corpus.

    Attributes:
        pairs: ``(m, 2)`` int64 indices ``i < j`` into the corpus, most similar first.
        scores: ``(m,)`` float32 cosine similarities of the pairs.
        groups: Connected components of the pairs (size >= 2), each a sorted list of indices.
        n: Size of the corpus.
    """

    pairs: np.ndarray
    scores: np.ndarray
    groups: list[list[int]] = field(default_factory=list)
    n: int = 0

    def __len__(self) -> int:
        return len(self.pairs)

    def records(self, texts: list[str] | None = None) -> list[dict]:
        """One dict per pair: ``i``, ``j``, ``score`` (and ``text_i``/``text_j``)."""
        out = []
        for (i, j), s in zip(self.pairs.tolist(), self.scores.tolist()):
            row = {"i": i, "j": j, "score": round(s, 6)}
            if texts is not None:
                row.update(text_i=texts[i], text_j=texts[j])
            out.append(row)
        return out


_USAGE = f"""```python
from huggingface_hub import snapshot_download
from siamtext.classify import DuplicateDetector

folder = snapshot_download("{MODEL_ID_PLACEHOLDER}")
detector = DuplicateDetector.load(folder)
detector.is_duplicate("How do I reset my password?", "I forgot my password")
detector.find_duplicates(questions).groups
```"""


class DuplicateDetector(HubMixin):
    """Are two texts duplicates? Cosine similarity of their embeddings against a threshold.

    Set ``threshold`` yourself, or :meth:`fit` it on a labelled validation split (never on
    the pairs you report on). :meth:`find_duplicates` finds every duplicate pair and group in
    a corpus by an exact search in memory-bounded tiles (no ``n x n`` matrix), or with a faiss
    index for corpora in the millions.

    Args:
        model: The encoder (a :class:`~siamtext.SiamText`); ``None`` if you only pass
            precomputed embeddings to :meth:`find_duplicates`.
        threshold: Cosine similarity at or above which two texts are duplicates, in [-1, 1].
            A fitted threshold (``threshold_``) takes precedence.
        batch_size: Encoding batch size.

    Attributes:
        threshold_: Set by :meth:`fit`.
        classifier_: The fitted :class:`ThresholdClassifier` (calibrated probabilities).

    Example:
        >>> det = DuplicateDetector(SiamText(), threshold=0.8)
        >>> det.is_duplicate("How do I reset my password?", "I forgot my password")
        True
        >>> found = det.find_duplicates(questions)
        >>> found.groups[:2]
        [[0, 33, 58], [1, 12]]
    """

    def __init__(self, model: SiamText | None = None, threshold: float | None = None,
                 batch_size: int = 32) -> None:
        if threshold is not None:
            threshold = check_similarity_threshold(threshold)
        check_positive_int(batch_size, "batch_size")
        self.model = model
        self.threshold = threshold
        self.batch_size = batch_size

    # ------------------------------------------------------------------ threshold
    @property
    def decision_threshold(self) -> float:
        """The threshold in use: the fitted one, else the one given.

        Raises:
            NotFittedError: If there is neither.
        """
        fitted = getattr(self, "threshold_", None)
        if fitted is not None:
            return fitted
        if self.threshold is None:
            raise NotFittedError("DuplicateDetector has no threshold: pass threshold=... or "
                                 "call fit(pairs, labels) on a validation split")
        return self.threshold

    def fit(self, pairs: list[tuple[str, str]], labels: object, objective: Objective = "f1",
            target: float | None = None, calibration: Calibration = "platt") -> DuplicateDetector:
        """Learn the threshold from labelled pairs of a validation split.

        Args:
            pairs: ``[(text_a, text_b), ...]``.
            labels: 1 (or True) for duplicates, 0 for different, one per pair.
            objective, target, calibration: See :class:`ThresholdClassifier`.

        Returns:
            self. Nothing changes if fitting fails.
        """
        model = self._require_model()
        clf = ThresholdClassifier(model, objective=objective, target=target,
                                  calibration=calibration, batch_size=self.batch_size)
        clf.fit(pairs, labels)
        self.classifier_ = clf
        self.threshold_ = clf.threshold_
        return self

    def _require_model(self) -> SiamText:
        if self.model is None:
            raise ValueError("this DuplicateDetector has no model; build it with "
                             "DuplicateDetector(SiamText(...)) to score texts")
        return self.model

    # ------------------------------------------------------------------ pairs
    def score(self, q1: str | list[str], q2: str | list[str]) -> float | np.ndarray:
        """Cosine similarity of ``q1[i]`` and ``q2[i]`` (a float for two strings)."""
        single = isinstance(q1, str) and isinstance(q2, str)
        a, b = check_texts(q1, "q1"), check_texts(q2, "q2")
        if len(a) != len(b):
            raise ValueError(f"q1 and q2 must have the same length, got {len(a)} and {len(b)}")
        s = encode_pair_scores(self._require_model(), a, b, self.batch_size)
        return float(s[0]) if single else s

    def is_duplicate(self, q1: str | list[str], q2: str | list[str]) -> bool | np.ndarray:
        """Whether ``q1[i]`` and ``q2[i]`` are duplicates (a bool for two strings)."""
        threshold = self.decision_threshold
        s = self.score(q1, q2)
        return bool(s >= threshold) if isinstance(s, float) else s >= threshold

    def predict_proba(self, q1: str | list[str], q2: str | list[str]) -> float | np.ndarray:
        """Calibrated P(duplicate) (needs :meth:`fit`)."""
        if not hasattr(self, "classifier_"):
            raise NotFittedError("predict_proba needs a fitted calibration: call fit first")
        s = self.score(q1, q2)
        p = apply_calibration(np.atleast_1d(s), self.classifier_.calibration_)
        return float(p[0]) if isinstance(s, float) else p

    # ------------------------------------------------------------------ corpus
    def find_duplicates(
        self,
        corpus: list[str] | np.ndarray | torch.Tensor,
        threshold: float | None = None,
        top_k: int | None = None,
        method: Literal["exact", "faiss"] = "exact",
        block_size: int = DEFAULT_BLOCK_SIZE,
        faiss_index: str = "auto",
        recall_target: float = 0.95,
        show_progress: bool | None = None,
        first_pass: StaticEncoder | None = None,
        rerank_top: int | None = None,
        first_pass_threshold: float | None = None,
    ) -> Duplicates:
        """Every duplicate pair in a corpus, and the groups they link.

        By default every pair whose similarity is at least the threshold is returned. With a
        ``top_k`` cap, a pair ``(i, j)`` is kept only when ``j`` is also among the ``top_k``
        most similar items of ``i`` (or ``i`` of ``j``); the exact method then counts the
        pairs above the threshold that the cap left out and warns with the count.

        Args:
            corpus: Texts, or their ``(n, dim)`` embeddings (numpy or torch).
            threshold: Overrides :attr:`decision_threshold` for this call.
            top_k: ``None`` (default): every pair at or above the threshold (tiles of the
                similarity matrix are searched one at a time, so memory grows with the
                pairs found, not with ``n^2``; ``method="faiss"`` runs a range search). An int
                caps the neighbours per item.
            method: ``"exact"`` (tiled matrix products on the model's device) or
                ``"faiss"`` (needs ``pip install 'siamtext[faiss]'``).
            block_size: Tile side for the exact method.
            faiss_index: ``"auto"`` (exact ``"Flat"`` below 20,000 items, else
                ``"IVF{~4 sqrt(n)},Flat"``) or a ``faiss.index_factory`` string such as
                ``"IVF4096,PQ32"`` (less memory) or ``"HNSW32"``
                (:mod:`siamtext.classify.approximate`).
            recall_target: For ``method="faiss"``: the index's search depth is raised until
                a sample of queries finds this share of its exact neighbours above the
                threshold.
            show_progress: Progress bar; ``None``: on a terminal for long work.
            first_pass: A :class:`~siamtext.static.StaticEncoder` (``model.distill_static()``)
                for a cascade (:mod:`siamtext.classify.candidates`): it proposes
                candidate pairs by static cosine (searched by ``method``), and the model
                embeds only their texts and keeps those at or above the threshold. Needs
                texts, and ``rerank_top`` and/or ``first_pass_threshold``; not ``top_k``.
            rerank_top: Candidates: each text's ``rerank_top`` nearest by static cosine.
                Alone it makes every text a candidate, so the model still embeds them all.
            first_pass_threshold: Candidates: pairs whose static similarity reaches this
                (with ``rerank_top``: the nearest among them). Texts without such a pair are
                never embedded by the model. Set it from validation pairs, below
                ``threshold``: static similarities run lower.

        Returns:
            :class:`Duplicates`. An empty corpus gives no pairs and no groups.
        """
        threshold = (self.decision_threshold if threshold is None
                     else check_similarity_threshold(threshold))
        if top_k is not None:
            check_positive_int(top_k, "top_k")
        check_choice(method, ("exact", "faiss"), "method")
        check_positive_int(block_size, "block_size")
        if first_pass is not None or rerank_top is not None or first_pass_threshold is not None:
            return self._find_by_cascade(
                corpus, threshold, first_pass=first_pass, rerank_top=rerank_top,
                first_pass_threshold=first_pass_threshold, top_k=top_k, method=method,
                block_size=block_size, faiss_index=faiss_index, recall_target=recall_target,
                show_progress=show_progress)
        emb = self._corpus_embeddings(corpus)
        n = emb.shape[0]
        if method == "exact":
            pairs, scores = exact_pairs(emb, threshold, top_k, block_size, show_progress)
        else:
            pairs, scores = faiss_pairs(emb.cpu().numpy(), threshold, top_k, faiss_index,
                                        recall_target, show_progress=show_progress)
        groups = connected_groups(pairs, n)
        logger.info("find_duplicates: %d items, threshold %.4f, top_k %s: %d pairs in %d groups",
                    n, threshold, top_k, len(pairs), len(groups))
        return Duplicates(pairs, scores, groups, n)

    def _find_by_cascade(self, corpus: object, threshold: float, *, first_pass: object,
                         rerank_top: int | None, first_pass_threshold: float | None,
                         top_k: int | None, method: str, block_size: int, faiss_index: str,
                         recall_target: float, show_progress: bool | None) -> Duplicates:
        """:meth:`find_duplicates` with a first pass (:mod:`siamtext.classify.candidates`):
        static candidate pairs, kept when the model's similarity reaches ``threshold``. With
        ``rerank_top >= len(corpus) - 1`` every pair is a candidate and the result is the
        exact search's."""
        first_pass_threshold = candidates.check_options(first_pass, rerank_top,
                                                        first_pass_threshold, top_k)
        texts = texts_of(corpus, "find_duplicates", "corpus")
        model = self._require_model()
        static = first_pass.encode(texts, convert_to="torch")
        found = candidates.static_candidates(static, rerank_top, first_pass_threshold, method,
                                             block_size, faiss_index, recall_target,
                                             show_progress)
        pairs, scores = candidates.rerank(model, texts, found, threshold, self.batch_size)
        groups = connected_groups(pairs, len(texts))
        logger.info("find_duplicates with a first pass: %d items, %d candidate pairs over %d "
                    "texts, threshold %.4f: %d pairs in %d groups", len(texts), len(found),
                    len(np.unique(found)), threshold, len(pairs), len(groups))
        return Duplicates(pairs, scores, groups, len(texts))

    def _corpus_embeddings(self, corpus: object) -> torch.Tensor:
        device = self.model.device if self.model is not None else torch.device("cpu")
        if isinstance(corpus, np.ndarray):
            with warnings.catch_warnings():  # a read-only memory map: nothing writes to it
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                corpus = torch.from_numpy(corpus)
        if isinstance(corpus, torch.Tensor):
            if corpus.ndim != 2:
                raise ValueError(f"corpus embeddings must be 2-D (n, dim), got shape "
                                 f"{tuple(corpus.shape)}")
            if self.model is not None and len(corpus) and \
                    corpus.shape[1] != self.model.embedding_dim:
                raise ValueError(f"corpus embeddings have dimension {corpus.shape[1]}, but the "
                                 f"model embeds in {self.model.embedding_dim}: they come from "
                                 "another model")
            emb = corpus.to(device, torch.float32)
            if not bool(torch.isfinite(emb).all()):
                row = int((~torch.isfinite(emb)).any(dim=1).nonzero()[0])
                raise ValueError(f"corpus embeddings hold NaN or infinite values (row {row})")
            return emb
        texts = check_texts(corpus, "corpus")
        model = self._require_model()
        if not texts:
            return torch.zeros((0, model.embedding_dim), device=device)
        return model.encode(texts, batch_size=self.batch_size, convert_to="torch",
                            normalize=True)

    # ------------------------------------------------------------------ plot
    def plot(self, pairs: list[tuple[str, str]], labels: object, **kwargs: object) -> Figure:
        """Similarity histograms of duplicate and different pairs with the threshold in use,
        and the precision-recall curve with its operating point. Needs
        ``pip install 'siamtext[plot]'``.

        Args:
            pairs: ``[(text_a, text_b), ...]``, labelled pairs other than those fitted on.
            labels: 1 (or True) for duplicates, 0 for different; both present.
            **kwargs: Passed to :func:`siamtext.plot.threshold_figure` (``bins``, ``title``,
                ``figsize``, ``dpi``).

        Returns:
            A matplotlib ``Figure``.
        """
        from siamtext.classify.threshold import split_pairs
        from siamtext.plot import binary_labels, require_matplotlib, threshold_figure

        threshold = self.decision_threshold
        require_matplotlib("DuplicateDetector.plot()")
        binary_labels(labels, (0, 1))  # before any encoding
        scores = encode_pair_scores(self._require_model(), *split_pairs(pairs, "pairs"),
                                    self.batch_size)
        return threshold_figure(scores, labels, threshold, classes=(0, 1), **kwargs)

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> Path:
        """Write a self-contained folder: ``encoder/`` and ``duplicate_detector.json``.

        An existing folder is replaced only once the new one is complete.
        """
        import siamtext

        payload = {
            "kind": "DuplicateDetector", "format_version": storage.FORMAT_VERSION,
            "siamtext_version": siamtext.__version__, "threshold": self.threshold,
            "threshold_": getattr(self, "threshold_", None), "batch_size": self.batch_size,
        }
        if hasattr(self, "classifier_"):
            clf = self.classifier_
            payload["classifier"] = {
                "objective": clf.objective, "target": clf.target, "calibration": clf.calibration,
                "classes": clf.classes_.tolist(),
                "best_score": clf.best_score_, "calibration_": clf.calibration_,
            }

        def write(tmp: Path) -> None:
            storage.save_encoder(self.model, tmp, kind="DuplicateDetector", usage=_USAGE)
            storage.write_json(tmp / CONFIG_NAME, payload)

        return storage.save_folder(folder, write)

    @classmethod
    def load(cls, folder: str | Path, **model_kwargs) -> DuplicateDetector:
        """Load a folder written by :meth:`save`; ``model_kwargs`` go to ``SiamText``."""
        payload = storage.read_json(folder, CONFIG_NAME, "DuplicateDetector")
        _check_payload(Path(folder) / CONFIG_NAME, payload)
        model = storage.load_encoder(folder, **model_kwargs)
        det = cls(model, threshold=payload["threshold"], batch_size=payload["batch_size"])
        if payload.get("threshold_") is not None:
            det.threshold_ = float(payload["threshold_"])
        info = payload.get("classifier")
        if info is not None:
            clf = ThresholdClassifier(model, objective=info["objective"], target=info["target"],
                                      calibration=info["calibration"],
                                      batch_size=payload["batch_size"])
            clf.classes_ = np.asarray(info["classes"])
            clf.threshold_ = det.threshold_
            clf.best_score_ = info["best_score"]
            clf.calibration_ = info["calibration_"]
            det.classifier_ = clf
        return det


def _check_payload(path: Path, payload: dict) -> None:
    """Refuse a ``duplicate_detector.json`` whose values :meth:`DuplicateDetector.load`
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
