"""The stored classes of an intent classifier: its examples and what is derived from them.

A :class:`ClassState` is one immutable snapshot: the labels, the normalised example
embeddings, the class of each example, the class prototypes, the logistic head fitted on them
(logistic mode) and, for a cascade, the static embeddings of the same examples. An edit
(:func:`with_examples`, :func:`without_class`) builds a new snapshot and leaves the old one as
it was, so a query that took a snapshot is scored against one state from start to end, while
another thread replaces it: readers need no lock, and writers swap one reference.

The class order is the order of first appearance (:func:`from_labels` sorts the labels of a
fit first, as ``np.unique`` did): a new class goes last, and a class removed leaves the order
of the others unchanged. :func:`from_rows` builds a snapshot from rows in that order, which is
how a classifier reads its examples back from a :class:`siamtext.index.Index`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from siamtext.classify.logistic import LogisticHead

#: Held while an edit (fit, add_examples, remove_class, a refresh) builds the next snapshot
#: from the current one and swaps it in, so two edits never lose one another. Queries take no
#: lock: they score the snapshot they took. One lock for every classifier (an estimator holds
#: no lock of its own: it is cloned and copied).
EDIT_LOCK = threading.RLock()


def class_means(examples: torch.Tensor, owners: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``(n_classes, dim)`` normalised sums of each class's rows (its prototype)."""
    sums = torch.zeros((n_classes, examples.shape[1]), device=examples.device,
                       dtype=examples.dtype)
    sums.index_add_(0, owners, examples)
    return F.normalize(sums, p=2, dim=-1)


@dataclass(frozen=True)
class StaticExamples:
    """The static (first pass) embeddings of the stored examples, on the CPU.

    Attributes:
        examples: ``(n_examples, static_dim)``, one row per stored example, aligned with
            :attr:`ClassState.example_classes`.
        prototypes: ``(n_classes, static_dim)`` normalised class means.
    """

    examples: torch.Tensor
    prototypes: torch.Tensor

    @classmethod
    def of(cls, examples: torch.Tensor, owners: torch.Tensor, n_classes: int
           ) -> StaticExamples:
        examples = examples.float().cpu()
        return cls(examples, class_means(examples, owners.cpu(), n_classes))


@dataclass(frozen=True)
class ClassState:
    """One snapshot of the stored classes.

    Attributes:
        classes: ``(n_classes,)`` labels, in the order of the probability columns.
        examples: ``(n_examples, dim)`` normalised example embeddings.
        example_classes: ``(n_examples,)`` int64 index into ``classes`` of each example.
        prototypes: ``(n_classes, dim)`` normalised class means.
        head: The logistic head fitted on these examples, or ``None``.
        static: The static embeddings of the examples (a cascade's), or ``None``.
        ids: ``(n_examples,)`` int64 ids of the examples in an index, or ``None`` in memory.
    """

    classes: np.ndarray
    examples: torch.Tensor
    example_classes: torch.Tensor
    prototypes: torch.Tensor
    head: LogisticHead | None = None
    static: StaticExamples | None = None
    ids: np.ndarray | None = None

    @property
    def labels(self) -> list:
        """The labels as Python values."""
        return self.classes.tolist()

    @property
    def dim(self) -> int:
        return int(self.examples.shape[1])

    def with_head(self, head: LogisticHead | None) -> ClassState:
        """The same examples with another head."""
        return replace(self, head=head)


def build(classes: np.ndarray, examples: torch.Tensor, example_classes: torch.Tensor, *,
          head: LogisticHead | None = None, static: torch.Tensor | None = None,
          ids: np.ndarray | None = None) -> ClassState:
    """A snapshot from its parts; the prototypes (and the static ones) are computed here.

    Args:
        classes: The labels.
        examples: ``(n, dim)`` normalised embeddings.
        example_classes: ``(n,)`` class index of each row.
        head: The logistic head, if any.
        static: ``(n, static_dim)`` static embeddings of the same rows, if any.
        ids: ``(n,)`` index ids of the rows, if they live in an index.
    """
    classes = np.asarray(classes)
    fixed = None if static is None else StaticExamples.of(static, example_classes,
                                                          len(classes))
    return ClassState(classes, examples, example_classes,
                      class_means(examples, example_classes, len(classes)), head, fixed,
                      None if ids is None else np.asarray(ids, dtype=np.int64))


def from_labels(examples: torch.Tensor, labels: list, *, static: torch.Tensor | None = None
                ) -> ClassState:
    """A snapshot of a fit: the classes sorted (``np.unique``), rows kept in input order."""
    classes, inverse = np.unique(np.asarray(labels), return_inverse=True)
    owners = torch.as_tensor(inverse, device=examples.device, dtype=torch.long)
    return build(classes, examples, owners, static=static)


def from_rows(examples: torch.Tensor, labels: list, *, static: torch.Tensor | None = None,
              ids: np.ndarray | None = None) -> ClassState:
    """A snapshot of rows in their stored order: classes in order of first appearance.

    Args:
        examples: ``(n, dim)`` normalised embeddings, ``n >= 1``.
        labels: One label per row.
        static: Static embeddings of the rows, if any.
        ids: Index ids of the rows, if any.
    """
    order: dict = {}
    owners = [order.setdefault(label, len(order)) for label in labels]
    classes = np.asarray(list(order))
    return build(classes, examples, torch.as_tensor(owners, dtype=torch.long,
                                                    device=examples.device),
                 static=static, ids=ids)


def with_examples(state: ClassState | None, examples: torch.Tensor, label: object, *,
                  static: torch.Tensor | None = None, ids: np.ndarray | None = None
                  ) -> ClassState:
    """``state`` with rows added to class ``label`` (a new class goes last); no head.

    Args:
        state: The current snapshot, or ``None`` for the first class.
        examples: ``(m, dim)`` normalised embeddings of the new rows.
        label: Their label.
        static: ``(m, static_dim)`` static embeddings of the new rows (needed when the
            state keeps static embeddings).
        ids: ``(m,)`` index ids of the new rows (needed when the state keeps ids).
    """
    new = torch.full((examples.shape[0],), 0, dtype=torch.long, device=examples.device)
    if state is None:
        return build(np.asarray([label]), examples, new, static=static, ids=ids)
    labels = state.labels
    if label in labels:
        c, classes = labels.index(label), state.classes
    else:
        c, classes = len(labels), np.asarray(labels + [label])
    owners = torch.cat([state.example_classes, new + c])
    rows = torch.cat([state.examples, examples])
    statics = None if state.static is None or static is None else torch.cat(
        [state.static.examples, static.float().cpu()])
    all_ids = None if state.ids is None or ids is None else np.concatenate(
        [state.ids, np.asarray(ids, dtype=np.int64)])
    return build(classes, rows, owners, static=statics, ids=all_ids)


def without_class(state: ClassState, label: object) -> ClassState:
    """``state`` without class ``label`` and its rows; no head.

    Raises:
        ValueError: If ``label`` is not a stored class, or is the only one.
    """
    labels = state.labels
    if label not in labels:
        raise ValueError(f"label {label!r} is not a stored class ({len(labels)} classes, "
                         f"e.g. {labels[:5]})")
    if len(labels) == 1:
        raise ValueError(f"cannot remove {label!r}: it is the only class")
    c = labels.index(label)
    keep = state.example_classes != c
    owners = state.example_classes[keep]
    owners = owners - (owners > c).long()
    statics = None if state.static is None else state.static.examples[keep.cpu()]
    ids = None if state.ids is None else state.ids[keep.cpu().numpy()]
    return build(np.asarray(labels[:c] + labels[c + 1 :]), state.examples[keep], owners,
                 static=statics, ids=ids)


def class_ids(state: ClassState, label: object) -> np.ndarray:
    """The index ids of class ``label``'s rows (the state must keep ids)."""
    if state.ids is None:
        raise ValueError("this state keeps no index ids")
    c = state.labels.index(label)
    return state.ids[(state.example_classes == c).cpu().numpy()]
