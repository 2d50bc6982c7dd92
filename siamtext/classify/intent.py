"""Intent classification over many classes by similarity to stored examples.

Each class is kept as the embeddings of its examples. A query batch is scored against every
class with one matrix product (prototype mode: the normalised mean of each class; k-NN mode:
every example; logistic mode: a logistic-regression head fitted on the examples), so classes
can number in the tens of thousands, have one example each, and be added or removed without
retraining the encoder.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError

from siamtext.classify import cascade, logistic, rejection, scoring, storage
from siamtext.classify.scoring import Mode
from siamtext.classify.search import single_thread
from siamtext.classify.threshold import check_similarity_threshold
from siamtext.hub import HubMixin
from siamtext.model_card import MODEL_ID_PLACEHOLDER
from siamtext.validation import check_choice, check_positive_int, check_texts

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from siamtext.model import SiamText
    from siamtext.static import StaticEncoder

CONFIG_NAME = "intent_classifier.json"
TENSORS_NAME = "intent_classifier.safetensors"
_QUERY_CHUNK = 1024
# Held while the stored classes change (fit, add_examples, remove_class) and while queries are
# scored against them, so a query sees the state before an edit or after it, never a class
# half added. Queries are embedded outside it. One lock for every classifier.
_STATE_LOCK = threading.RLock()


_USAGE = f"""```python
from huggingface_hub import snapshot_download
from siamtext.classify import IntentClassifier

folder = snapshot_download("{MODEL_ID_PLACEHOLDER}")
classifier = IntentClassifier.load(folder)
classifier.predict(["I lost my card"])
```"""


class IntentClassifier(HubMixin, ClassifierMixin, BaseEstimator):
    """Many-class, few-shot intent classifier with out-of-scope rejection.

    A scikit-learn estimator. :meth:`fit` embeds and stores the examples. A query gets the
    class whose prototype (``mode="prototype"``) or whose nearest examples (``mode="knn"``)
    are most similar, or that a logistic-regression head on the stored examples ranks first
    (``mode="logistic"``, :mod:`siamtext.classify.logistic`). When its best cosine similarity
    to the stored examples (to the prototypes, in prototype mode) is under the rejection
    threshold it gets ``unknown_label`` instead. Fit that threshold with
    :meth:`fit_threshold` on validation data that includes out-of-scope examples, or by a
    target in-scope recall.

    Which mode: ``"logistic"`` is the most accurate up to about 1,000 classes (its fit is a
    convex optimisation over every class, and :meth:`add_examples` / :meth:`remove_class`
    refit it, seconds at Banking77's size); beyond that, or when classes change often,
    ``"knn"`` (best with many examples per class) and ``"prototype"`` (fastest) update in
    constant time.

    Args:
        model: The encoder (a :class:`~siamtext.SiamText`); ``None`` to work on precomputed
            embeddings only.
        mode: ``"prototype"`` (one normalised mean per class), ``"knn"`` (vote of the
            ``n_neighbors`` most similar examples, weighted by softmax of similarity) or
            ``"logistic"`` (a multinomial logistic regression on the examples' embeddings).
        n_neighbors: Neighbours for k-NN mode.
        temperature: Softmax temperature turning similarities into probabilities.
        threshold: A rejection threshold on the best similarity, in [-1, 1]; ``None`` rejects
            nothing until :meth:`fit_threshold` is called (a fitted ``threshold_`` wins).
        unknown_label: Label given to rejected (out-of-scope) inputs.
        batch_size: Encoding batch size.
        first_pass: A :class:`~siamtext.static.StaticEncoder` (``model.distill_static()``) for
            a cascade (:mod:`siamtext.classify.cascade`): it keeps static embeddings of the
            examples (so ``fit`` needs texts) and answers first.
        rerank_top: With ``first_pass``: the transformer decides among the static model's
            ``rerank_top`` best classes only.
        first_pass_margin: With ``first_pass``: :meth:`predict` returns the static answer
            alone, without running the transformer, when the static margin (best minus
            second-best static class score) is above this; ``None`` never does (a fitted
            ``first_pass_margin_`` wins, see :meth:`fit_first_pass`).
        C: Logistic mode: the inverse L2 regularisation strength; ``None`` chooses it by
            stratified cross-validation in :meth:`fit` (which then needs 2 examples per
            class). :meth:`add_examples` and :meth:`remove_class` refit with the chosen one.
        class_weight: Logistic mode: ``"balanced"`` weighs each class's examples inversely
            to their number, so that a class added from a few examples is not outvoted by
            larger neighbours; ``None`` weighs every example alike.

    Attributes:
        classes_: Labels, in the order of the probability columns.
        examples_: ``(n_examples, dim)`` normalised example embeddings.
        example_classes_: ``(n_examples,)`` index into ``classes_`` of each example.
        prototypes_: ``(n_classes, dim)`` normalised class means.
        threshold_: Rejection threshold set by :meth:`fit_threshold`.
        first_pass_margin_: The static margin gate set by :meth:`fit_first_pass`.
        head_: Logistic mode: the :class:`~siamtext.classify.logistic.LogisticHead`
            (``head_.info`` says how ``C`` was chosen and how long the last fit took).
        C_: Logistic mode: the ``C`` the head was fitted with.

    Example:
        >>> clf = IntentClassifier(SiamText()).fit(texts, labels)
        >>> clf.add_examples(["Where is my parcel?", "my package hasn't arrived"], "delivery")
        >>> clf.predict(["when will my package come"]).tolist()
        ['delivery']
    """

    def __init__(
        self,
        model: SiamText | None = None,
        mode: Mode = "prototype",
        n_neighbors: int = 5,
        temperature: float = 0.05,
        threshold: float | None = None,
        unknown_label: str | int = "unknown",
        batch_size: int = 32,
        first_pass: StaticEncoder | None = None,
        rerank_top: int | None = None,
        first_pass_margin: float | None = None,
        C: float | None = None,
        class_weight: str | None = "balanced",
    ) -> None:
        self.model = model
        self.mode = mode
        self.n_neighbors = n_neighbors
        self.temperature = temperature
        self.threshold = threshold
        self.unknown_label = unknown_label
        self.batch_size = batch_size
        self.first_pass = first_pass
        self.rerank_top = rerank_top
        self.first_pass_margin = first_pass_margin
        self.C = C
        self.class_weight = class_weight

    # ------------------------------------------------------------------ validation
    def _check_params(self) -> None:
        check_choice(self.mode, ("prototype", "knn", "logistic"), "mode")
        logistic.check_C(self.C)
        logistic.check_class_weight(self.class_weight)
        check_positive_int(self.n_neighbors, "n_neighbors")
        check_positive_int(self.batch_size, "batch_size")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < float("inf"):
            raise ValueError(f"temperature must be a positive finite number, got {t!r}")
        if self.threshold is not None:
            check_similarity_threshold(self.threshold, "threshold")
        storage.json_label(self.unknown_label, "unknown_label")
        cascade.check_params(self)

    def _check_fitted(self) -> None:
        if not hasattr(self, "examples_"):
            raise NotFittedError("This IntentClassifier is not fitted yet; call fit(texts, "
                                 "labels) or add_examples(texts, label) first.")

    @property
    def device(self) -> torch.device:
        return self.model.device if self.model is not None else torch.device("cpu")

    def _embed(self, X: object, name: str = "X") -> torch.Tensor:
        """Normalised ``(n, dim)`` embeddings of texts or of precomputed vectors."""
        if isinstance(X, np.ndarray):
            X = X.tolist() if X.dtype.kind in "UO" else torch.from_numpy(
                np.asarray(X, dtype=np.float32))
        if isinstance(X, torch.Tensor):
            if X.ndim != 2:
                raise ValueError(f"{name} embeddings must be 2-D (n, dim), got shape "
                                 f"{tuple(X.shape)}")
            emb = X.to(self.device, torch.float32)
        else:
            texts = check_texts(X, name)
            if self.model is None:
                raise ValueError(f"{name} holds texts but this IntentClassifier has no model; "
                                 "pass embeddings or build it with IntentClassifier(SiamText())")
            if not texts:
                return torch.zeros((0, self.model.embedding_dim), device=self.device)
            emb = self.model.encode(texts, batch_size=self.batch_size, convert_to="torch")
        if not bool(torch.isfinite(emb).all()):
            row = int((~torch.isfinite(emb)).any(dim=1).nonzero()[0])
            raise ValueError(f"{name} embeddings hold NaN or infinite values (row {row})")
        dim = self.examples_.shape[1] if hasattr(self, "examples_") else None
        if dim is not None and emb.shape[1] != dim:
            raise ValueError(f"{name} has dimension {emb.shape[1]}, the stored examples have "
                             f"{dim}")
        with single_thread(emb.device):
            return F.normalize(emb.float(), p=2, dim=-1)

    def _labels(self, y: object, n: int, name: str = "y") -> list[str | int]:
        labels = [storage.json_label(v, name) for v in np.asarray(y, dtype=object).ravel()]
        if len(labels) != n:
            raise ValueError(f"X and {name} must have the same length, got {n} and {len(labels)}")
        if len({type(v) for v in labels}) > 1:
            raise TypeError(f"{name} mixes strings and integers; use one type")
        return labels

    # ------------------------------------------------------------------ fit
    def fit(self, X: object, y: object) -> IntentClassifier:
        """Embed and store the examples of every class (replacing what was stored).

        Args:
            X: Texts, or ``(n, dim)`` precomputed embeddings.
            y: One label (string or integer) per example; ``unknown_label`` is not allowed.

        Returns:
            self.

        Raises:
            ValueError: On an empty input, differing lengths, or ``unknown_label`` in ``y``.
        """
        self._check_params()
        if isinstance(X, (list, tuple)) and not X or getattr(X, "shape", (1,))[0] == 0:
            raise ValueError("X must hold at least one example, got none")
        emb = self._embed(X)
        labels = self._labels(y, emb.shape[0])
        if self.unknown_label in labels:
            raise ValueError(f"y contains unknown_label={self.unknown_label!r}; out-of-scope "
                             "examples belong in fit_threshold, not fit")
        classes, inverse = np.unique(np.asarray(labels), return_inverse=True)
        owners = torch.as_tensor(inverse, device=emb.device)
        head = (logistic.fit_head(emb, owners, classes, C=self.C,
                                  class_weight=self.class_weight)
                if self.mode == "logistic" else None)
        static = cascade.embed_examples(self, X, append=False)
        with _STATE_LOCK:
            self._set_state(classes, emb, owners, head=head)
            cascade.store_examples(self, static)
            for name in ("threshold_", "threshold_info_", "first_pass_margin_",
                         "first_pass_info_"):
                self.__dict__.pop(name, None)
        return self

    def _refit_head(self, classes: np.ndarray, examples: torch.Tensor,
                    example_classes: torch.Tensor) -> logistic.LogisticHead | None:
        """Logistic mode: the head for an edited state, refitted with the ``C`` in use."""
        if self.mode != "logistic":
            return None
        head = getattr(self, "head_", None)
        C = head.C if head is not None else (self.C or logistic.DEFAULT_C)
        return logistic.fit_head(examples, example_classes, classes, C=C,
                                 class_weight=self.class_weight)

    def _set_state(self, classes: np.ndarray, examples: torch.Tensor,
                   example_classes: torch.Tensor, prototypes: torch.Tensor | None = None,
                   head: logistic.LogisticHead | None = None) -> None:
        if prototypes is None:
            sums = torch.zeros((len(classes), examples.shape[1]), device=examples.device)
            sums.index_add_(0, example_classes, examples)
            prototypes = F.normalize(sums, p=2, dim=-1)
        self.classes_ = classes
        self.examples_ = examples
        self.example_classes_ = example_classes
        self.prototypes_ = prototypes
        self.n_features_in_ = examples.shape[1]
        if head is not None:
            self.head_ = head
            self.C_ = head.C

    # ------------------------------------------------------------------ scoring
    def _scores(self, emb: torch.Tensor, proba: bool = True,
                allowed: torch.Tensor | cascade.StaticQueries | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Scores of normalised query embeddings, in chunks of queries (only among the
        classes ``allowed`` ``(n, n_classes)`` bool marks, when given: a static shortlist is
        made here, against the state being scored). Each chunk is scored by
        :func:`siamtext.classify.scoring.score`.

        Returns:
            ``proba`` ``(n, n_classes)`` (empty when ``proba=False``), the best similarity
            ``(n,)`` and the predicted class index ``(n,)``.
        """
        probas, bests, preds = [], [], []
        t = float(self.temperature)
        n_classes = len(self.classes_)
        allowed = cascade.resolve_shortlist(self, allowed)
        with torch.inference_mode():
            for a in range(0, emb.shape[0], _QUERY_CHUNK):
                ok = None if allowed is None else allowed[a : a + _QUERY_CHUNK]
                p, best, pred = scoring.score(
                    self.mode, emb[a : a + _QUERY_CHUNK], n_classes=n_classes,
                    prototypes=self.prototypes_, examples=self.examples_,
                    example_classes=self.example_classes_,
                    head=self.head_ if self.mode == "logistic" else None,
                    n_neighbors=self.n_neighbors, temperature=t, proba=proba, ok=ok)
                if p is not None:
                    probas.append(p)
                bests.append(best)
                preds.append(pred)
        if not bests:
            return (torch.zeros((0, n_classes)), torch.zeros((0,)),
                    torch.zeros((0,), dtype=torch.long))
        out = torch.cat(probas) if probas else torch.zeros((0, n_classes))
        return out, torch.cat(bests), torch.cat(preds)

    @property
    def decision_threshold(self) -> float | None:
        """The rejection threshold in use (fitted, else given, else ``None``)."""
        fitted = getattr(self, "threshold_", None)
        return fitted if fitted is not None else self.threshold

    @property
    def first_pass_gate(self) -> float | None:
        """The static margin gate in use (fitted, else given, else ``None``: never)."""
        fitted = getattr(self, "first_pass_margin_", None)
        return fitted if fitted is not None else self.first_pass_margin

    def predict_proba(self, X: object) -> np.ndarray:
        """Class probabilities ``(n, n_classes)``, columns in ``classes_`` order (no
        out-of-scope column: rejection is a threshold on :meth:`similarity`)."""
        self._check_fitted()
        allowed = cascade.shortlist(self, X)
        emb = self._embed(X)
        with _STATE_LOCK:
            return self._scores(emb, allowed=allowed)[0].cpu().numpy()

    def similarity(self, X: object) -> np.ndarray:
        """Best cosine similarity of each input to the stored classes ``(n,)``."""
        self._check_fitted()
        allowed = cascade.shortlist(self, X)
        emb = self._embed(X)
        with _STATE_LOCK:
            return self._scores(emb, proba=False, allowed=allowed)[1].cpu().numpy()

    def predict(self, X: object) -> np.ndarray:
        """The most likely label of each input, or ``unknown_label`` when rejected.

        With a ``first_pass``: the cascade's answer (:func:`siamtext.classify.cascade.predict`).
        """
        self._check_fitted()
        if self.first_pass is not None:
            return cascade.predict(self, X)
        emb = self._embed(X)
        with _STATE_LOCK:
            _, best, pred = self._scores(emb, proba=False)
            return self._decide(pred.cpu().numpy(), best.cpu().numpy())

    def _decide(self, idx: np.ndarray, best: np.ndarray) -> np.ndarray:
        labels = self.classes_[idx]
        threshold = self.decision_threshold
        if threshold is None:
            return labels
        rejected = best < threshold
        if not rejected.any():
            return labels
        out = labels.astype(object)
        out[rejected] = self.unknown_label
        same_type = all(type(v) is type(self.unknown_label) for v in self.classes_.tolist())
        return np.asarray(out.tolist()) if same_type else out

    def top_k(self, X: object, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most likely labels of each input and their probabilities.

        Returns:
            ``labels`` ``(n, k)`` and ``probabilities`` ``(n, k)``, best first.
        """
        check_positive_int(k, "k")
        self._check_fitted()
        allowed = cascade.shortlist(self, X)
        emb = self._embed(X)
        with _STATE_LOCK:
            proba = self._scores(emb, allowed=allowed)[0]
            classes = self.classes_
        vals, idx = torch.topk(proba, min(k, proba.shape[1]), dim=1)
        return classes[idx.cpu().numpy()], vals.cpu().numpy()

    def _answer_block(self, texts: list[str], emb: torch.Tensor, k: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`predict`, :meth:`similarity` and :meth:`top_k` of ``texts`` whose model
        embeddings ``emb`` are already made, from one scoring of one state (the rows of
        :func:`siamtext.corpus.classify_file`). With a ``first_pass``, the labels are the
        cascade's and the scores are among its shortlist, as those methods give them.

        Returns:
            ``labels (n,)``, ``similarity (n,)``, ``top labels (n, k)``, ``top
            probabilities (n, k)``.
        """
        emb = self._embed(emb)
        allowed = cascade.shortlist(self, texts)
        queries = None
        if self.first_pass is not None:  # the static embeddings, made once
            queries = allowed if allowed is not None else cascade.static_queries(self, texts)
        with _STATE_LOCK:
            proba, best, pred = self._scores(emb, allowed=allowed)
            idx, sims = pred.cpu().numpy(), best.cpu().numpy()
            if queries is not None:
                labels = self._decide(*cascade.gated(self, queries, idx, sims))
            else:
                labels = self._decide(idx, sims)
            classes = self.classes_
        vals, top = torch.topk(proba, min(k, proba.shape[1]), dim=1)
        return labels, sims, classes[top.cpu().numpy()], vals.cpu().numpy()

    # ------------------------------------------------------------------ rejection
    def fit_threshold(self, X: object, y: object = None, *,
                      target_recall: float | None = None) -> IntentClassifier:
        """Fit the out-of-scope threshold on validation data (not the stored examples).

        Two ways:

        * ``target_recall`` given: the highest threshold that still accepts at least that
          share of the in-scope inputs (``y`` optional; entries equal to ``unknown_label``
          are ignored).
        * otherwise ``y`` must include ``unknown_label`` examples: the threshold maximises
          accuracy, where an in-scope input counts as right when it is accepted and
          classified correctly and an out-of-scope one when it is rejected.

        Returns:
            self, with ``threshold_`` and ``threshold_info_`` set. Nothing changes on error.
        """
        self._check_fitted()
        if target_recall is not None and (isinstance(target_recall, bool) or not isinstance(
                target_recall, (int, float)) or not 0.0 < target_recall <= 1.0):
            raise ValueError(f"target_recall must be a number in (0, 1], got {target_recall!r}")
        if target_recall is None and y is None:
            raise ValueError("fit_threshold needs labels y that include unknown_label "
                             "examples, or target_recall=...")
        allowed = cascade.shortlist(self, X)
        emb = self._embed(X)
        if emb.shape[0] == 0:
            raise ValueError("X must hold at least one validation example, got none")
        labels = None if y is None else self._labels(y, emb.shape[0])
        oos = (np.zeros(emb.shape[0], dtype=bool) if labels is None
               else np.array([v == self.unknown_label for v in labels]))
        if labels is not None:
            known = set(self.classes_.tolist())
            strange = sorted({v for v in labels if v != self.unknown_label and v not in known},
                             key=str)
            if strange:
                raise ValueError(f"y has labels that are neither stored classes nor "
                                 f"unknown_label={self.unknown_label!r} (removed with "
                                 f"remove_class, or never added?): {strange[:5]}")
        with _STATE_LOCK:
            _, best_t, pred_t = self._scores(emb, proba=False, allowed=allowed)
            classes = self.classes_
        best = best_t.cpu().numpy().astype(np.float64)
        if target_recall is not None:
            if oos.all():
                raise ValueError("target_recall needs in-scope examples in X, got none")
            t, recall = rejection.threshold_for_recall(best[~oos], target_recall)
            info = {"method": "target_recall", "target_recall": float(target_recall),
                    "in_scope_recall": recall}
        else:
            if not oos.any() or oos.all():
                raise ValueError("y must include both in-scope examples and out-of-scope ones "
                                 f"labelled unknown_label={self.unknown_label!r}")
            pred = classes[pred_t.cpu().numpy()]
            right = np.array([not o and p == v for o, p, v in zip(oos, pred.tolist(), labels)])
            t, accuracy = rejection.threshold_for_accuracy(best, right, oos)
            info = {"method": "accuracy", "accuracy": accuracy}
        self.threshold_ = t
        self.threshold_info_ = info
        return self

    def fit_first_pass(self, X: object, y: object = None, *,
                       max_disagreement: float = 0.005) -> IntentClassifier:
        """Fit the first pass's confidence gate on validation data (not the stored examples,
        nor the data you report on).

        ``first_pass_margin_`` becomes the smallest static margin at which the static answers
        it lets through disagree with the transformer's (its full decision, out-of-scope
        rejection included) on at most ``max_disagreement`` of the validation queries. Fit
        it after :meth:`fit_threshold`.

        Args:
            X: Validation texts.
            y: Their labels (optional): only adds accuracies to ``first_pass_info_``.
            max_disagreement: Share of ``X`` the gate may answer differently from the
                transformer, in [0, 1).

        Returns:
            self, with ``first_pass_margin_`` and ``first_pass_info_`` (``static_share``: the
            share of ``X`` answered by the static model alone) set.
        """
        self._check_fitted()
        return cascade.fit_gate(self, X, y, max_disagreement)

    # ------------------------------------------------------------------ editing
    def add_examples(self, X: object, label: str | int) -> IntentClassifier:
        """Add examples to a class, or a new class, at once; nothing is retrained.

        Args:
            X: Texts (a string or a list) or ``(n, dim)`` embeddings.
            label: An existing or new label.

        Returns:
            self. Nothing changes on error.
        """
        label = storage.json_label(label, "label")
        if label == self.unknown_label:
            raise ValueError(f"label must differ from unknown_label={self.unknown_label!r}")
        fitted = hasattr(self, "examples_")
        if not fitted:
            self._check_params()
        elif type(label) is not type(self.classes_.tolist()[0]):
            raise TypeError(f"label must be a {type(self.classes_.tolist()[0]).__name__} like "
                            f"the stored classes, got {type(label).__name__} {label!r}")
        emb = self._embed(X)
        if emb.shape[0] == 0:
            raise ValueError("X must hold at least one example, got none")
        static = cascade.embed_examples(self, X, append=fitted)
        with _STATE_LOCK:
            return self._add_embedded(emb, label, static)

    def _add_embedded(self, emb: torch.Tensor, label: str | int, static: object
                      ) -> IntentClassifier:
        """Store embedded examples under ``label``; the caller holds ``_STATE_LOCK``."""
        fitted = hasattr(self, "examples_")
        if not fitted:
            classes = np.asarray([label])
            owners = torch.zeros(emb.shape[0], dtype=torch.long, device=emb.device)
            self._set_state(classes, emb, owners, head=self._refit_head(classes, emb, owners))
            cascade.store_examples(self, static)
            return self
        classes = self.classes_.tolist()
        examples = torch.cat([self.examples_, emb])
        if label in classes:
            c = classes.index(label)
            new_classes = self.classes_
            prototypes = self.prototypes_.clone()
        else:
            c = len(classes)
            new_classes = np.asarray(classes + [label])
            prototypes = torch.cat([self.prototypes_, emb[:1]])
        example_classes = torch.cat([self.example_classes_, torch.full(
            (emb.shape[0],), c, dtype=torch.long, device=emb.device)])
        # only this class's prototype changes
        prototypes[c] = F.normalize(examples[example_classes == c].sum(dim=0), p=2, dim=-1)
        head = self._refit_head(new_classes, examples, example_classes)
        self._set_state(new_classes, examples, example_classes, prototypes, head=head)
        cascade.store_examples(self, static, append=True)
        return self

    def remove_class(self, label: str | int) -> IntentClassifier:
        """Forget a class and its examples.

        Raises:
            ValueError: If ``label`` is not a stored class, or is the only one.
        """
        self._check_fitted()
        with _STATE_LOCK:
            return self._remove_class(label)

    def _remove_class(self, label: str | int) -> IntentClassifier:
        classes = self.classes_.tolist()
        if label not in classes:
            raise ValueError(f"label {label!r} is not a stored class ({len(classes)} classes, "
                             f"e.g. {classes[:5]})")
        if len(classes) == 1:
            raise ValueError(f"cannot remove {label!r}: it is the only class")
        c = classes.index(label)
        keep = self.example_classes_ != c
        example_classes = self.example_classes_[keep]
        example_classes = example_classes - (example_classes > c).long()
        new_classes = np.asarray(classes[:c] + classes[c + 1 :])
        examples = self.examples_[keep]
        head = self._refit_head(new_classes, examples, example_classes)
        self._set_state(new_classes, examples, example_classes, head=head)
        cascade.store_examples(self, None, keep=keep)
        return self

    # ------------------------------------------------------------------ plot
    def plot_confusions(self, texts: object, labels: object, top: int = 20,
                        **kwargs: object) -> Figure:
        """The ``top`` most confused ``true -> predicted`` class pairs on labelled data, as
        bars. Directions count apart (an ``a`` taken for ``b`` is not a ``b`` taken for
        ``a``); rejected inputs count as taken for ``unknown_label``. Needs
        ``pip install 'siamtext[plot]'``.

        Args:
            texts: Texts (or embeddings), as for :meth:`predict`.
            labels: Their true labels.
            top: How many pairs to show.
            **kwargs: Passed to :func:`siamtext.plot.confusion_pairs_figure` (``title``,
                ``figsize``, ``dpi``).

        Returns:
            A matplotlib ``Figure``.
        """
        from siamtext.plot import confusion_pairs, confusion_pairs_figure, require_matplotlib

        check_positive_int(top, "top")
        self._check_fitted()
        require_matplotlib("IntentClassifier.plot_confusions()")
        gold = self._labels(labels, len(texts), "labels")
        pairs, counts = confusion_pairs(gold, self.predict(texts))
        return confusion_pairs_figure(pairs, counts, top=top, **kwargs)

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> Path:
        """Write a self-contained folder: ``encoder/``, the examples in safetensors and the
        labels, settings and threshold in JSON. An existing folder is replaced only once
        the new one is complete."""
        from safetensors.torch import save_file

        import siamtext

        self._check_fitted()
        with _STATE_LOCK:  # the classes, the examples and the head of one state
            classes, examples, example_classes = (self.classes_, self.examples_,
                                                  self.example_classes_)
            head = getattr(self, "head_", None) if self.mode == "logistic" else None
        payload = {
            "kind": "IntentClassifier", "format_version": storage.FORMAT_VERSION,
            "siamtext_version": siamtext.__version__,
            "params": {"mode": self.mode, "n_neighbors": self.n_neighbors,
                       "temperature": self.temperature, "threshold": self.threshold,
                       "unknown_label": self.unknown_label, "batch_size": self.batch_size,
                       "C": self.C, "class_weight": self.class_weight},
            "classes": classes.tolist(),
            "threshold_": getattr(self, "threshold_", None),
            "threshold_info_": getattr(self, "threshold_info_", None),
        }
        tensors = {"examples": examples.detach().cpu().contiguous(),
                   "example_classes": example_classes.detach().cpu().contiguous()}
        if head is not None:
            payload["head_"] = {"C": head.C, "info": head.info}
            tensors.update(logistic.tensors(head))
        first_pass, first_pass_tensors = cascade.state(self)  # a static model beside
        payload.update(first_pass)
        tensors.update(first_pass_tensors)

        def write(tmp: Path) -> None:
            storage.save_encoder(self.model, tmp, kind="IntentClassifier", usage=_USAGE)
            cascade.save(self, tmp)
            save_file(tensors, str(tmp / TENSORS_NAME))
            storage.write_json(tmp / CONFIG_NAME, payload)

        return storage.save_folder(folder, write)

    @classmethod
    def load(cls, folder: str | Path, **model_kwargs) -> IntentClassifier:
        """Load a folder written by :meth:`save`; ``model_kwargs`` go to ``SiamText``."""
        payload = storage.read_json(folder, CONFIG_NAME, "IntentClassifier")
        path = Path(folder) / TENSORS_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not a saved IntentClassifier: "
                                    f"{TENSORS_NAME} is missing")
        tensors = storage.load_tensors(path)
        _check_tensors(path, payload, tensors)
        # a folder saved before class_weight existed was fitted without weights
        params = {"class_weight": None, **payload["params"]}
        clf = cls(storage.load_encoder(folder, **model_kwargs), **params)
        if clf.model is not None and tensors["examples"].shape[1] != clf.model.embedding_dim:
            raise ValueError(f"{path}: the examples have dimension "
                             f"{tensors['examples'].shape[1]}, the encoder in "
                             f"{Path(folder) / storage.ENCODER_DIR} embeds in "
                             f"{clf.model.embedding_dim}")
        device = clf.device
        head = None
        if clf.mode == "logistic":
            stored = payload.get("head_")
            if not isinstance(stored, dict) or not isinstance(stored.get("C"), (int, float)):
                raise ValueError(f"{Path(folder) / CONFIG_NAME}: a logistic classifier needs "
                                 "'head_': {'C': <number>, ...}")
            head = logistic.from_tensors(path, tensors, len(payload["classes"]),
                                         tensors["examples"].shape[1], stored["C"],
                                         stored.get("info"), device)
        clf._set_state(np.asarray(payload["classes"]), tensors["examples"].to(device),
                       tensors["example_classes"].to(device), head=head)
        if payload.get("threshold_") is not None:
            clf.threshold_ = float(payload["threshold_"])
            clf.threshold_info_ = payload.get("threshold_info_")
        cascade.restore(clf, folder, payload, tensors)
        return clf


def _check_tensors(path: Path, payload: dict, tensors: dict[str, torch.Tensor]) -> None:
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
