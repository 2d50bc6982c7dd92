"""How a fitted :class:`~siamtext.classify.IntentClassifier` answers: the query side.

:class:`IntentAnswers` holds the methods that read the stored classes and never change them:
scoring (:meth:`~IntentAnswers.predict`, :meth:`~IntentAnswers.predict_proba`,
:meth:`~IntentAnswers.similarity`, :meth:`~IntentAnswers.top_k`), the cascade's answer with a
``first_pass``, and fitting the two decision settings on validation data (the out-of-scope
threshold, the first pass's gate). Every call takes the classifier's current
:class:`~siamtext.classify.examples.ClassState` snapshot once and answers from it alone, so an
edit in another thread never mixes two states into one answer, and no lock is taken.

It reads the estimator's parameters (``model``, ``mode``, ``n_neighbors``, ``temperature``,
``threshold``, ``unknown_label``, ``batch_size``, ``first_pass``, ``rerank_top``,
``first_pass_margin``) and its ``state_``; the estimator in :mod:`siamtext.classify.intent`
adds fitting, editing and persistence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from sklearn.exceptions import NotFittedError

from siamtext.classify import examples as ex
from siamtext.classify import first_pass as fp
from siamtext.classify import inputs, rejection, scoring
from siamtext.validation import check_positive_int

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_QUERY_CHUNK = 1024


class IntentAnswers:
    """The query methods of :class:`~siamtext.classify.IntentClassifier` (a mixin)."""

    def _state(self) -> ex.ClassState:
        """The current snapshot (read once per call: every answer comes from it)."""
        state = self.__dict__.get("state_")
        if state is None:
            hint = ("" if getattr(self, "index", None) is None else
                    ", or read the stored examples with IntentClassifier.open(index, model)")
            raise NotFittedError("This IntentClassifier is not fitted yet; call fit(texts, "
                                 f"labels) or add_examples(texts, label) first{hint}.")
        return state

    def _check_fitted(self) -> None:
        self._state()

    @property
    def device(self) -> torch.device:
        return self.model.device if self.model is not None else torch.device("cpu")

    def _embed(self, X: object, name: str = "X") -> torch.Tensor:
        """Normalised ``(n, dim)`` embeddings of texts or of precomputed vectors."""
        state = self.__dict__.get("state_")
        return inputs.embed(X, self.model, batch_size=self.batch_size, device=self.device,
                            dim=None if state is None else state.dim, name=name)

    def _labels(self, y: object, n: int, name: str = "y") -> list[str | int]:
        return inputs.labels(y, n, name)

    # ------------------------------------------------------------------ scoring
    def _scores(self, emb: torch.Tensor, proba: bool = True,
                allowed: torch.Tensor | fp.StaticQueries | None = None,
                state: ex.ClassState | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Scores of normalised query embeddings against ``state`` (the current snapshot by
        default), in chunks of queries, only among the classes ``allowed`` ``(n, n_classes)``
        marks when given (static queries are shortlisted here, against the snapshot
        scored). Each chunk is scored by :func:`siamtext.classify.scoring.score`.

        Returns:
            ``proba`` ``(n, n_classes)`` (empty when ``proba=False``), the best similarity
            ``(n,)`` and the predicted class index ``(n,)``.
        """
        state = self._state() if state is None else state
        probas, bests, preds = [], [], []
        t = float(self.temperature)
        n_classes = len(state.classes)
        allowed = fp.resolve_shortlist(state, allowed, self.mode, self.rerank_top)
        with torch.inference_mode():
            for a in range(0, emb.shape[0], _QUERY_CHUNK):
                ok = None if allowed is None else allowed[a : a + _QUERY_CHUNK]
                p, best, pred = scoring.score(
                    self.mode, emb[a : a + _QUERY_CHUNK], n_classes=n_classes,
                    prototypes=state.prototypes, examples=state.examples,
                    example_classes=state.example_classes,
                    head=state.head if self.mode == "logistic" else None,
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

    def _static_queries(self, X: object) -> fp.StaticQueries:
        """Queries embedded by the first pass (after checking it can score them)."""
        fp.check_first_pass(self.first_pass, self.rerank_top)
        fp.check_state(self._state(), self.first_pass)
        return fp.StaticQueries(fp.embed(self.first_pass, fp.texts_of(X, "prediction")))

    def _shortlist(self, X: object) -> fp.StaticQueries | None:
        """What scoring needs for the ``rerank_top`` shortlist: the static query embeddings,
        or ``None`` (every class allowed)."""
        if self.first_pass is None or self.rerank_top is None:
            return None
        return self._static_queries(X)

    def predict_proba(self, X: object) -> np.ndarray:
        """Class probabilities ``(n, n_classes)``, columns in ``classes_`` order (no
        out-of-scope column: rejection is a threshold on :meth:`similarity`)."""
        self._check_fitted()
        allowed = self._shortlist(X)
        return self._scores(self._embed(X), allowed=allowed)[0].cpu().numpy()

    def similarity(self, X: object) -> np.ndarray:
        """Best cosine similarity of each input to the stored classes ``(n,)``."""
        self._check_fitted()
        allowed = self._shortlist(X)
        return self._scores(self._embed(X), proba=False, allowed=allowed)[1].cpu().numpy()

    def predict(self, X: object) -> np.ndarray:
        """The most likely label of each input, or ``unknown_label`` when rejected.

        With a ``first_pass``: the cascade's answer (:meth:`_predict_cascade`).
        """
        self._check_fitted()
        if self.first_pass is not None:
            return self._predict_cascade(X)
        emb = self._embed(X)
        state = self._state()
        _, best, pred = self._scores(emb, proba=False, state=state)
        return self._decide(pred.cpu().numpy(), best.cpu().numpy(), state)

    def _predict_cascade(self, X: object) -> np.ndarray:
        """Labels by the cascade: the static answer where its margin clears the gate, else
        the transformer's among the shortlist (and the out-of-scope threshold on its
        similarity; answers the gate accepts are never rejected).

        The texts the gate leaves are embedded by the transformer before the snapshot that
        answers is taken: a class added meanwhile may move a query past the gate that was
        checked before, never mix two states.
        """
        texts = fp.texts_of(X, "prediction")
        queries = self._static_queries(texts)
        _, margin, _ = fp.static_view(self._state(), queries.embeddings, self.mode, None)
        took = fp.accepted(margin, self.first_pass_gate)
        rest = np.flatnonzero(~took)
        emb = self._embed([texts[i] for i in rest.tolist()]) if len(rest) else None
        state = self._state()
        idx = np.zeros(len(texts), dtype=np.int64)
        best = np.full(len(texts), np.inf, dtype=np.float32)
        if emb is not None:
            sub = queries[rest] if self.rerank_top is not None else None
            _, b, p = self._scores(emb, proba=False, allowed=sub, state=state)
            idx[rest], best[rest] = p.cpu().numpy(), b.cpu().numpy()
        idx, best = fp.gated(state, queries, idx, best, self.mode, self.first_pass_gate, took)
        return self._decide(idx, best, state)

    def _decide(self, idx: np.ndarray, best: np.ndarray,
                state: ex.ClassState | None = None) -> np.ndarray:
        """Labels of class indices ``idx`` into ``state``, ``unknown_label`` where ``best``
        is under the rejection threshold."""
        classes = (self._state() if state is None else state).classes
        labels = classes[idx]
        threshold = self.decision_threshold
        if threshold is None:
            return labels
        rejected = best < threshold
        if not rejected.any():
            return labels
        out = labels.astype(object)
        out[rejected] = self.unknown_label
        same_type = all(type(v) is type(self.unknown_label) for v in classes.tolist())
        return np.asarray(out.tolist()) if same_type else out

    def top_k(self, X: object, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most likely labels of each input and their probabilities.

        Returns:
            ``labels`` ``(n, k)`` and ``probabilities`` ``(n, k)``, best first.
        """
        check_positive_int(k, "k")
        self._check_fitted()
        allowed = self._shortlist(X)
        emb = self._embed(X)
        state = self._state()
        proba = self._scores(emb, allowed=allowed, state=state)[0]
        vals, idx = torch.topk(proba, min(k, proba.shape[1]), dim=1)
        return state.classes[idx.cpu().numpy()], vals.cpu().numpy()

    def _answer_block(self, texts: list[str], emb: torch.Tensor, k: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`predict`, :meth:`similarity` and :meth:`top_k` of ``texts`` whose model
        embeddings ``emb`` are already made, from one scoring of one snapshot (the rows of
        :func:`siamtext.corpus.classify_file`). With a ``first_pass``, the labels are the
        cascade's and the scores are among its shortlist, as those methods give them.

        Returns:
            ``labels (n,)``, ``similarity (n,)``, ``top labels (n, k)``, ``top
            probabilities (n, k)``.
        """
        emb = self._embed(emb)
        allowed = self._shortlist(texts)
        queries = None
        if self.first_pass is not None:  # the static embeddings, made once
            queries = allowed if allowed is not None else self._static_queries(texts)
        state = self._state()
        proba, best, pred = self._scores(emb, allowed=allowed, state=state)
        idx, sims = pred.cpu().numpy(), best.cpu().numpy()
        if queries is not None:
            idx, sims_gated = fp.gated(state, queries, idx, sims, self.mode,
                                       self.first_pass_gate)
            labels = self._decide(idx, sims_gated, state)
        else:
            labels = self._decide(idx, sims, state)
        vals, top = torch.topk(proba, min(k, proba.shape[1]), dim=1)
        return labels, sims, state.classes[top.cpu().numpy()], vals.cpu().numpy()

    # ------------------------------------------------------------------ rejection
    def fit_threshold(self, X: object, y: object = None, *,
                      target_recall: float | None = None) -> IntentAnswers:
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
        allowed = self._shortlist(X)
        emb = self._embed(X)
        if emb.shape[0] == 0:
            raise ValueError("X must hold at least one validation example, got none")
        labels = None if y is None else self._labels(y, emb.shape[0])
        oos = (np.zeros(emb.shape[0], dtype=bool) if labels is None
               else np.array([v == self.unknown_label for v in labels]))
        state = self._state()
        if labels is not None:
            known = set(state.labels)
            strange = sorted({v for v in labels if v != self.unknown_label and v not in known},
                             key=str)
            if strange:
                raise ValueError(f"y has labels that are neither stored classes nor "
                                 f"unknown_label={self.unknown_label!r} (removed with "
                                 f"remove_class, or never added?): {strange[:5]}")
        if target_recall is None and (not oos.any() or oos.all()):
            raise ValueError("y must include both in-scope examples and out-of-scope ones "
                             f"labelled unknown_label={self.unknown_label!r}")
        _, best_t, pred_t = self._scores(emb, proba=False, allowed=allowed, state=state)
        best = best_t.cpu().numpy().astype(np.float64)
        right = None
        if target_recall is None:
            pred = state.classes[pred_t.cpu().numpy()]
            right = np.array([not o and p == v for o, p, v in zip(oos, pred.tolist(), labels)])
        self.threshold_, self.threshold_info_ = rejection.fit_rejection(best, oos, right,
                                                                        target_recall)
        return self

    def fit_first_pass(self, X: object, y: object = None, *,
                       max_disagreement: float = 0.005) -> IntentAnswers:
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
        if isinstance(max_disagreement, bool) or not isinstance(
                max_disagreement, (int, float)) or not 0.0 <= max_disagreement < 1.0:
            raise ValueError(f"max_disagreement must be a number in [0, 1), got "
                             f"{max_disagreement!r}")
        if self.first_pass is None:
            raise ValueError("fit_first_pass needs a first_pass: build the classifier with "
                             "IntentClassifier(model, first_pass=model.distill_static())")
        texts = fp.texts_of(X, "fit_first_pass")
        if not texts:
            raise ValueError("X must hold at least one validation example, got none")
        labels = None if y is None else self._labels(y, len(texts))
        queries = self._static_queries(texts)
        emb = self._embed(texts)
        state = self._state()
        answer, margin, allowed = fp.static_view(state, queries.embeddings, self.mode,
                                                 self.rerank_top)
        _, best, pred = self._scores(emb, proba=False, allowed=allowed, state=state)
        transformer = self._decide(pred.cpu().numpy(), best.cpu().numpy(), state).tolist()
        static = state.classes[answer].tolist()
        self.first_pass_margin_, self.first_pass_info_ = fp.fit_margin(
            margin, static, transformer, labels, max_disagreement)
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

