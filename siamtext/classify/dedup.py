"""Duplicate detection: a threshold on cosine similarity, for pairs and whole corpora."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from sklearn.exceptions import NotFittedError

from siamtext.classify import candidates, dedup_folder
from siamtext.classify.approximate import faiss_pairs
from siamtext.classify.attach import check_index
from siamtext.classify.dedup_folder import CONFIG_NAME  # noqa: F401
from siamtext.classify.dedup_index import OnlineDuplicates, find_in_index, is_index
from siamtext.classify.duplicates import Duplicates
from siamtext.classify.first_pass import texts_of
from siamtext.classify.search import DEFAULT_BLOCK_SIZE, connected_groups, exact_pairs
from siamtext.classify.threshold import (
    Calibration,
    Objective,
    ThresholdClassifier,
    apply_calibration,
    check_similarity_threshold,
    encode_pair_scores,
    split_pairs,
)
from siamtext.hub import HubMixin
from siamtext.validation import check_choice, check_positive_int, check_texts

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from siamtext.index import Index
    from siamtext.model import SiamText
    from siamtext.static import StaticEncoder

logger = logging.getLogger(__name__)




class DuplicateDetector(OnlineDuplicates, HubMixin):
    """Are two texts duplicates? Cosine similarity of their embeddings against a threshold.

    Set ``threshold`` yourself, or :meth:`fit` it on a labelled validation split (never on
    the pairs you report on). :meth:`find_duplicates` finds every duplicate pair and group in
    a corpus by an exact search in memory-bounded tiles (no ``n x n`` matrix), or with a faiss
    index for corpora in the millions. With an ``index`` (a :class:`siamtext.index.Index`
    of stored texts) it works online (:mod:`siamtext.classify.dedup_index`): :meth:`check`
    gives each new text the stored items at or above the threshold, :meth:`add` stores
    texts, and :meth:`find_duplicates` with no corpus searches every stored pair.

    Args:
        model: The encoder (a :class:`~siamtext.SiamText`); ``None`` if you only pass
            precomputed embeddings to :meth:`find_duplicates`.
        threshold: Cosine similarity at or above which two texts are duplicates, in [-1, 1].
            A fitted threshold (``threshold_``) takes precedence.
        batch_size: Encoding batch size.
        index: The stored items new texts are checked against: a path (a collection there
            is opened, or created on the first :meth:`add`) or an open
            :class:`siamtext.index.Index`, filled by the same encoder as ``model``.
            ``None``: none (corpora are passed to :meth:`find_duplicates`). It is not part of
            the folder :meth:`save` writes.

    Attributes:
        threshold_: Set by :meth:`fit`.
        classifier_: The fitted :class:`ThresholdClassifier` (calibrated probabilities).
        index_: With ``index``: the open collection, once used.

    Examples:
        >>> det = DuplicateDetector(SiamText(), threshold=0.8)
        >>> det.is_duplicate("How do I reset my password?", "I forgot my password")
        True
        >>> found = det.find_duplicates(questions)
        >>> found.groups[:2]
        [[0, 33, 58], [1, 12]]
        >>> live = DuplicateDetector(SiamText(), threshold=0.8, index="questions.idx")
        >>> live.add(questions)  # durable when it returns
        >>> live.check("I forgot my password")[0].text
        'How do I reset my password?'
    """

    def __init__(self, model: SiamText | None = None, threshold: float | None = None,
                 batch_size: int = 32, index: str | Path | Index | None = None) -> None:
        if threshold is not None:
            threshold = check_similarity_threshold(threshold)
        check_positive_int(batch_size, "batch_size")
        check_index(index)
        self.model = model
        self.threshold = threshold
        self.batch_size = batch_size
        self.index = index

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
            objective: See :class:`ThresholdClassifier`.
            target: See :class:`ThresholdClassifier`.
            calibration: See :class:`ThresholdClassifier`.

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
        corpus: list[str] | np.ndarray | torch.Tensor | Index | None = None,
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
            corpus: Texts, or their ``(n, dim)`` embeddings (numpy or torch), or a
                :class:`siamtext.index.Index` (its stored vectors are searched, nothing is
                embedded, and pairs and groups hold item ids); ``None``: the detector's
                ``index``.
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

        Raises:
            ValueError: With no corpus and no ``index``, or ``first_pass`` with an index.
        """
        threshold = (self.decision_threshold if threshold is None
                     else check_similarity_threshold(threshold))
        if top_k is not None:
            check_positive_int(top_k, "top_k")
        check_choice(method, ("exact", "faiss"), "method")
        check_positive_int(block_size, "block_size")
        cascade = first_pass is not None or rerank_top is not None or \
            first_pass_threshold is not None
        if corpus is None:
            if self.index is None:
                raise ValueError("find_duplicates needs a corpus (texts or embeddings), or a "
                                 "detector built with index=... to search its stored items")
            corpus = self._collection()
        if is_index(corpus):
            if cascade:
                raise ValueError("first_pass cannot search an index: its items are embedded "
                                 "by the model already, so search them without first_pass")
            found = find_in_index(corpus, threshold, top_k, method, block_size, faiss_index,
                                  recall_target, show_progress,
                                  None if self.model is None else self.model.device)
            logger.info("find_duplicates over an index: %d items, threshold %.4f: %d pairs in "
                        "%d groups", found.n, threshold, len(found), len(found.groups))
            return found
        if cascade:
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
        from siamtext.plot import binary_labels, require_matplotlib, threshold_figure

        threshold = self.decision_threshold
        require_matplotlib("DuplicateDetector.plot()")
        binary_labels(labels, (0, 1))  # before any encoding
        scores = encode_pair_scores(self._require_model(), *split_pairs(pairs, "pairs"),
                                    self.batch_size)
        return threshold_figure(scores, labels, threshold, classes=(0, 1), **kwargs)

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> Path:
        """Write a self-contained folder: ``encoder/`` and ``duplicate_detector.json``
        (:mod:`siamtext.classify.dedup_folder`; the ``index`` is not part of it).

        An existing folder is replaced only once the new one is complete.
        """
        return dedup_folder.save(folder, model=self.model, threshold=self.threshold,
                                 threshold_=getattr(self, "threshold_", None),
                                 batch_size=self.batch_size,
                                 classifier=getattr(self, "classifier_", None))

    @classmethod
    def load(cls, folder: str | Path, **model_kwargs) -> DuplicateDetector:
        """Load a folder written by :meth:`save`; ``model_kwargs`` go to ``SiamText``."""
        saved = dedup_folder.load(folder, **model_kwargs)
        det = cls(saved.model, threshold=saved.threshold, batch_size=saved.batch_size)
        if saved.threshold_ is not None:
            det.threshold_ = saved.threshold_
        if saved.classifier is not None:
            det.classifier_ = saved.classifier
        return det
