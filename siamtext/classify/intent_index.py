"""An intent classifier's examples kept in a :class:`siamtext.index.Index` (live intents).

Each stored example is one item of the collection: its embedding, its text (when it was given
as text) and its class as the item's ``label``. Adding examples adds items and removing a
class removes that class's items, each one durable transaction: nothing else is rewritten.
The in-memory :class:`~siamtext.classify.examples.ClassState` is read back from the items in
id order (:func:`read_state`), so the class order, the examples and every score derived from
them are the same in the writer, after a reopen and in a reader process. The vectors the
writer keeps are those the collection stored (read back after each write), never its own
copy, so the floats agree to the bit.

The collection holds examples, not settings: the mode, ``C``, the threshold and the gate are
the classifier's arguments, given again when it is reopened.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from siamtext.classify import examples as ex
from siamtext.classify import first_pass as fp
from siamtext.classify.attach import open_index

if TYPE_CHECKING:
    from siamtext.index import Index
    from siamtext.model import SiamText
    from siamtext.static import StaticEncoder

#: One SELECT for every row: a read is one consistent view of the collection.
_ALL = 1 << 62


def read_state(index: Index, device: torch.device, first_pass: StaticEncoder | None = None
               ) -> ex.ClassState | None:
    """The snapshot of every item, in id order (``None`` for an empty collection).

    A reader re-reads when a write landed while it read, so the state is one the writer had.

    Raises:
        ValueError: If an item has no label, or a ``first_pass`` needs texts that are missing.
    """
    while True:
        items = list(index.items(with_embeddings=True, batch_size=_ALL))
        if index.store.writable or index.refresh() == 0:
            break
    if not items:
        return None
    unlabelled = [it.id for it in items if it.label is None]
    if unlabelled:
        raise ValueError(f"items {unlabelled[:5]} of the collection have no label: it does not "
                         "hold an intent classifier's examples")
    vectors = torch.from_numpy(np.stack([it.embedding for it in items])).to(device)
    static = None
    if first_pass is not None:
        missing = [it.id for it in items if it.text is None]
        if missing:
            raise ValueError(f"first_pass needs the examples' texts, but items {missing[:5]} "
                             "were stored as vectors: build the classifier without first_pass")
        static = fp.embed(first_pass, [it.text for it in items])
    return ex.from_rows(vectors, [it.label for it in items], static=static,
                        ids=np.asarray([it.id for it in items], dtype=np.int64))


def add(index: Index, emb: torch.Tensor, labels: Any, texts: list[str] | None
        ) -> tuple[np.ndarray, torch.Tensor]:
    """Store rows in one transaction; their ids and the vectors as stored.

    Args:
        index: The collection (open for writing).
        emb: ``(n, dim)`` normalised embeddings.
        labels: One label for all rows, or one per row.
        texts: The rows' texts, or ``None`` (given as vectors).

    Returns:
        ``ids`` ``(n,)`` and the stored ``(n, dim)`` vectors, on ``emb``'s device.
    """
    ids = index.add(texts, embeddings=emb.detach().cpu().numpy(), labels=labels)
    stored = index.get(ids, with_embeddings=True)
    vectors = torch.from_numpy(np.stack([it.embedding for it in stored])).to(emb.device)
    return np.asarray(ids, dtype=np.int64), vectors


def texts_or_none(X: object) -> list[str] | None:
    """``X`` as a list of texts, or ``None`` when it is vectors."""
    if isinstance(X, str):
        return [X]
    if isinstance(X, np.ndarray):
        return X.tolist() if X.dtype.kind in "UO" else None
    if isinstance(X, torch.Tensor):
        return None
    return list(X)


class LiveExamples:
    """The collection side of :class:`~siamtext.classify.IntentClassifier` (a mixin):
    opening the ``index`` it names, reading its examples back, catching up and closing. The
    estimator's edits write through :func:`add` and ``index_.remove``."""

    def _attach(self, dim: int | None) -> Index | None:
        """The open collection of ``index`` (opened, or created once ``dim`` is known, on
        first use; its examples become the state). ``None`` while there is none yet."""
        with ex.EDIT_LOCK:  # two threads' first use open it once
            index = self.__dict__.get("index_")
            if index is not None:
                return index
            if isinstance(self.index, (str, Path)) and dim is None and \
                    not Path(self.index).exists():
                return None
            index, owned = open_index(self.index, self.model, dim)
            self._take(index, owned)
            return index

    def _take(self, index: Index, owned: bool) -> None:
        """Hold ``index`` and read its examples; a collection opened here that cannot be
        read is closed again (its writer lock released)."""
        self.index_ = index
        self.__dict__["_index_owned"] = owned
        try:
            self._read()
        except BaseException:
            self.close()
            raise

    def _read(self) -> None:
        state = read_state(self.index_, self.device, self.first_pass)
        with ex.EDIT_LOCK:
            if state is None:
                self.__dict__.pop("state_", None)
            else:
                self.state_ = self._with_head(state)

    @classmethod
    def open(cls, index: str | Path | Index, model: SiamText | None = None, *,
             readonly: bool = False, **params: object) -> LiveExamples:
        """A classifier over the examples stored in a collection (see ``index``).

        Args:
            index: The collection's path, or an open :class:`siamtext.index.Index`.
            model: The encoder that filled it (``None`` for one filled with vectors).
            readonly: Open it for reading only: any number of processes may, beside the one
                that writes; :meth:`refresh` catches up with its writes.
            **params: The other constructor arguments (``mode``, ``threshold``, ``C``...),
                as the classifier that wrote it had them.

        Returns:
            The classifier, fitted on the stored examples (unfitted for an empty collection).

        Raises:
            FileNotFoundError: If there is no collection at ``index``.
            ValueError: For another encoder than the one that filled it (both named).
            IndexLockedError: If not ``readonly`` and another process writes to it.
        """
        clf = cls(model, index=index, **params)
        clf._check_params()
        clf._take(*open_index(index, model, None, readonly=readonly))
        return clf

    def refresh(self) -> int:
        """Catch up with what another process wrote to the collection since this one read
        it (classes added or removed): the next answers come from the new examples.

        Returns:
            The number of changes the collection reported (0: nothing new).
        """
        index = self.__dict__.get("index_")
        if index is None:
            raise ValueError("refresh needs a classifier opened on an index: use "
                             "IntentClassifier.open(path, model) or IntentClassifier(..., "
                             "index=path)")
        changes = index.refresh()
        if changes:
            self._read()
        return changes

    def close(self) -> None:
        """Release the collection (when this classifier opened it); the fitted state stays
        usable in memory."""
        index = self.__dict__.pop("index_", None)
        if index is not None and self.__dict__.pop("_index_owned", False):
            index.close()

    def __enter__(self) -> LiveExamples:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
