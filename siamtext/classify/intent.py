"""Intent classification over many classes by similarity to stored examples.

Each class is kept as the embeddings of its examples. A query batch is scored against every
class with one matrix product (prototype mode: the normalised mean of each class; k-NN mode:
every example; logistic mode: a logistic-regression head fitted on the examples), so classes
can number in the tens of thousands, have one example each, and be added or removed without
retraining the encoder.

The estimator composes parts that know nothing of it: the stored classes are a
:class:`~siamtext.classify.examples.ClassState` snapshot, scored by
:mod:`~siamtext.classify.scoring`, rejected by :mod:`~siamtext.classify.rejection`, shortlisted
and gated by :mod:`~siamtext.classify.first_pass` (a cascade), and saved by
:mod:`~siamtext.classify.intent_folder`. Its query methods (predict, fit_threshold...) live in
:mod:`~siamtext.classify.intent_answers`, keeping the examples in a collection in
:mod:`~siamtext.classify.intent_index`; this module has the parameters, fitting, editing and
persistence.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin

from siamtext.classify import attach, inputs, intent_folder, intent_index, logistic, storage
from siamtext.classify import examples as ex
from siamtext.classify import first_pass as fp
from siamtext.classify.intent_answers import IntentAnswers
from siamtext.classify.intent_folder import CONFIG_NAME, TENSORS_NAME  # noqa: F401
from siamtext.classify.intent_index import LiveExamples
from siamtext.classify.scoring import Mode
from siamtext.classify.threshold import check_similarity_threshold
from siamtext.hub import HubMixin
from siamtext.validation import check_choice, check_positive_int

if TYPE_CHECKING:
    from siamtext.index import Index
    from siamtext.model import SiamText
    from siamtext.static import StaticEncoder

_EDIT_LOCK = ex.EDIT_LOCK


class IntentClassifier(IntentAnswers, LiveExamples, HubMixin, ClassifierMixin,
                       BaseEstimator):
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
        index: Where the examples live. ``None`` (default): in memory (:meth:`save` writes
            them to a folder). A path, or an open :class:`siamtext.index.Index`: in that
            collection, one item per example with its class as the item's label
            (:mod:`siamtext.classify.intent_index`); :meth:`fit`, :meth:`add_examples` and
            :meth:`remove_class` are then durable increments, a collection at the path is
            continued (or created on the first write), and :meth:`open` / :meth:`refresh`
            read it back, in this process or another. The collection keeps examples, not
            settings: give the same arguments when reopening; logistic mode then needs
            ``C``, so that a reopen refits the same head.

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
        first_pass_examples_: With ``first_pass``: ``(n_examples, static_dim)`` static
            embeddings of the examples (``first_pass_prototypes_``: their class means).
        state_: The :class:`~siamtext.classify.examples.ClassState` all of the above are read
            from: one immutable snapshot, replaced whole by every edit, so a query is scored
            against one state even while another thread edits.
        index_: With ``index``: the open :class:`siamtext.index.Index`.

    Examples:
        >>> clf = IntentClassifier(SiamText()).fit(texts, labels)
        >>> clf.add_examples(["Where is my parcel?", "my package hasn't arrived"], "delivery")
        >>> clf.predict(["when will my package come"]).tolist()
        ['delivery']

        Live intents, kept in a collection and read by other processes:

        >>> clf = IntentClassifier(model, mode="knn", index="intents.idx").fit(texts, labels)
        >>> clf.add_examples(["where is my parcel"], "delivery")  # durable when it returns
        >>> reader = IntentClassifier.open("intents.idx", model, mode="knn", readonly=True)
        >>> reader.refresh()  # sees classes added since it opened
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
        index: str | Path | Index | None = None,
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
        self.index = index

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
        fp.check_params(self.first_pass, self.rerank_top, self.first_pass_margin)
        attach.check_index(self.index)
        if self.index is not None and self.mode == "logistic" and self.C is None:
            raise ValueError("mode='logistic' with an index needs C=... (e.g. C=10): the index "
                             "keeps the examples, not the C cross-validation would choose, so a "
                             "reopen must be told it to refit the same head")

    # the fitted attributes of scikit-learn's contract, read from the snapshot (NotFittedError
    # is an AttributeError: hasattr() is False before fit)
    classes_ = property(lambda self: self._state().classes)
    examples_ = property(lambda self: self._state().examples)
    example_classes_ = property(lambda self: self._state().example_classes)
    prototypes_ = property(lambda self: self._state().prototypes)
    n_features_in_ = property(lambda self: self._state().dim)

    @property
    def head_(self) -> logistic.LogisticHead:
        head = self._state().head
        if head is None:
            raise AttributeError("head_: only a logistic-mode classifier has a head")
        return head

    @property
    def C_(self) -> float:
        return self.head_.C

    @property
    def first_pass_examples_(self) -> torch.Tensor:
        return self._static_state().examples

    @property
    def first_pass_prototypes_(self) -> torch.Tensor:
        return self._static_state().prototypes

    def _static_state(self) -> ex.StaticExamples:
        static = self._state().static
        if static is None:
            raise AttributeError("this IntentClassifier keeps no static embeddings (it was "
                                 "fitted without a first_pass)")
        return static

    def _static_examples(self, X: object, append: bool) -> torch.Tensor | None:
        """Static embeddings of new examples (``None`` without a first pass); checks that
        appending them is possible, before anything changes."""
        if self.first_pass is None:
            return None
        fp.check_first_pass(self.first_pass, self.rerank_top)
        if append and self._state().static is None:
            raise ValueError("this IntentClassifier was fitted without its first_pass, so the "
                             "static embeddings of its examples are missing: call fit(texts, "
                             "labels) again")
        return fp.embed(self.first_pass, fp.texts_of(X, "fit"))

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
        if inputs.is_empty(X):
            raise ValueError("X must hold at least one example, got none")
        emb = inputs.embed(X, self.model, batch_size=self.batch_size, device=self.device)
        labels = self._labels(y, emb.shape[0])
        if self.unknown_label in labels:
            raise ValueError(f"y contains unknown_label={self.unknown_label!r}; out-of-scope "
                             "examples belong in fit_threshold, not fit")
        static = self._static_examples(X, append=False)
        with _EDIT_LOCK:
            if self.index is None:
                state = ex.from_labels(emb, labels, static=static)
            else:
                state = self._write_fit(X, emb, labels, static)
            head = (logistic.fit_head(state.examples, state.example_classes, state.classes,
                                      C=self.C, class_weight=self.class_weight)
                    if self.mode == "logistic" else None)
            self.state_ = state.with_head(head)
            for name in ("threshold_", "threshold_info_", "first_pass_margin_",
                         "first_pass_info_"):
                self.__dict__.pop(name, None)
        return self

    def _write_fit(self, X: object, emb: torch.Tensor, labels: list,
                   static: torch.Tensor | None) -> ex.ClassState:
        """Replace the collection's items by these examples: the new rows are written
        first (grouped by class, classes sorted, as :meth:`fit` orders them in memory), then
        the old ones removed; two transactions, so a reader refreshing between them sees
        both sets for a moment, never none."""
        index = self._attach(emb.shape[1])
        order = np.argsort(np.asarray(labels), kind="stable")
        texts = intent_index.texts_or_none(X)
        old = [item.id for item in index.items()]
        ids, stored = intent_index.add(
            index, emb[torch.as_tensor(order, device=emb.device)],
            [labels[i] for i in order], None if texts is None else [texts[i] for i in order])
        if old:
            index.remove(old, missing_ok=True)
        return ex.from_rows(stored, [labels[i] for i in order],
                            static=None if static is None else static[order], ids=ids)

    def _with_head(self, state: ex.ClassState) -> ex.ClassState:
        """Logistic mode: ``state`` with its head refitted by the ``C`` in use (the fitted
        one, else ``C``, else :data:`~siamtext.classify.logistic.DEFAULT_C`)."""
        if self.mode != "logistic":
            return state
        current = self.__dict__.get("state_")
        head = None if current is None else current.head
        C = head.C if head is not None else (self.C or logistic.DEFAULT_C)
        return state.with_head(logistic.fit_head(state.examples, state.example_classes,
                                                 state.classes, C=C,
                                                 class_weight=self.class_weight))

    # ------------------------------------------------------------------ editing
    def add_examples(self, X: object, label: str | int) -> IntentClassifier:
        """Add examples to a class, or a new class, at once; nothing is retrained (logistic
        mode refits its head with the ``C`` in use).

        Args:
            X: Texts (a string or a list) or ``(n, dim)`` embeddings.
            label: An existing or new label.

        Returns:
            self. Nothing changes on error.
        """
        label = storage.json_label(label, "label")
        if label == self.unknown_label:
            raise ValueError(f"label must differ from unknown_label={self.unknown_label!r}")
        if self.index is not None:
            self._check_params()
            self._attach(None)  # an existing collection: continue its classes
        state = self.__dict__.get("state_")
        if state is None:
            self._check_params()
        elif type(label) is not type(state.labels[0]):
            raise TypeError(f"label must be a {type(state.labels[0]).__name__} like "
                            f"the stored classes, got {type(label).__name__} {label!r}")
        emb = self._embed(X)
        if emb.shape[0] == 0:
            raise ValueError("X must hold at least one example, got none")
        static = self._static_examples(X, append=state is not None)
        with _EDIT_LOCK:
            current, ids = self.__dict__.get("state_"), None
            if self.index is not None:  # durable first; the vectors as stored
                ids, emb = intent_index.add(self._attach(emb.shape[1]), emb, label,
                                            intent_index.texts_or_none(X))
            self.state_ = self._with_head(ex.with_examples(current, emb, label, static=static,
                                                           ids=ids))
        return self

    def remove_class(self, label: str | int) -> IntentClassifier:
        """Forget a class and its examples (logistic mode refits its head).

        Raises:
            ValueError: If ``label`` is not a stored class, or is the only one.
        """
        self._check_fitted()
        with _EDIT_LOCK:
            state = self._state()
            new = self._with_head(ex.without_class(state, label))  # checks label first
            if state.ids is not None:
                self.index_.remove(ex.class_ids(state, label).tolist())
            self.state_ = new
        return self

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> Path:
        """Write a self-contained folder: ``encoder/``, the examples in safetensors and the
        labels, settings and threshold in JSON (:mod:`siamtext.classify.intent_folder`). An
        existing folder is replaced only once the new one is complete. A classifier with an
        ``index`` writes a copy of its examples (it loads as an in-memory one)."""
        state = self._state()  # the classes, the examples and the head of one snapshot
        fitted = {name: getattr(self, name, None) for name in (
            "threshold_", "threshold_info_", "first_pass_margin_", "first_pass_info_")}
        return intent_folder.save(folder, model=self.model, first_pass=self.first_pass,
                                  params=self.get_params(deep=False), state=state,
                                  fitted=fitted)

    @classmethod
    def load(cls, folder: str | Path, **model_kwargs) -> IntentClassifier:
        """Load a folder written by :meth:`save`; ``model_kwargs`` go to ``SiamText``."""
        saved = intent_folder.load(folder, **model_kwargs)
        clf = cls(saved.model, **saved.params)
        clf.state_ = saved.state
        for name, value in saved.fitted.items():
            setattr(clf, name, value)
        return clf
