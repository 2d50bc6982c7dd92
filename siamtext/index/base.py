"""The items of a collection and the interface every storage engine implements.

A :class:`Store` holds rows of ``(id, vector, text, label, metadata)`` and answers nearest
neighbour queries by cosine similarity. It knows nothing of models: vectors arrive
L2-normalised and float32, checked by :class:`siamtext.index.Index`, which embeds texts and
validates input before any store is touched. Engines: :mod:`siamtext.index.local` (SQLite
rows and a faiss snapshot, the embedded default) and :mod:`siamtext.index.milvus` (a Milvus
server, or Milvus Lite, through ``pymilvus``).
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: What a label may be: a string or an integer (as in the classifiers).
Label = str | int

#: The fields of an item besides its metadata that ``where`` may name.
ITEM_FIELDS = ("label",)
#: The format this siamtext writes; a collection of a newer format is refused.
FORMAT_VERSION = 1
KIND = "siamtext.Index"


class IndexLockedError(RuntimeError):
    """A second writer tried to open a collection that another process is writing to."""


@dataclass
class Item:
    """One stored item.

    Attributes:
        id: Its id (an int64).
        text: The text it was embedded from, or ``None`` for an item given as a vector.
        label: Its label (a class for intents), or ``None``.
        metadata: A JSON object of your own, or ``None``.
        embedding: Its ``(dim,)`` float32 unit vector, when asked for.
    """

    id: int
    text: str | None = None
    label: Label | None = None
    metadata: dict[str, Any] | None = None
    embedding: np.ndarray | None = field(default=None, repr=False)


@dataclass
class Hit:
    """One search result: a stored item and its cosine similarity to the query."""

    id: int
    score: float
    text: str | None = None
    label: Label | None = None
    metadata: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``score`` rounded to 6 places)."""
        return {"id": self.id, "score": round(self.score, 6), "text": self.text,
                "label": self.label, "metadata": self.metadata}


class Store(ABC):
    """A persistent set of unit vectors with their rows, searched by inner product.

    Implementations guarantee: a write that returned is durable; a reader sees the
    collection before a write or after it, never half of it; one writer at a time.
    """

    #: Dimension of the vectors.
    dim: int
    #: Whether this handle may write.
    writable: bool

    @classmethod
    @abstractmethod
    def create(cls, location: str, meta: dict[str, Any], **options: Any) -> Store:
        """Create a new, empty collection at ``location`` holding ``meta`` (which has at
        least ``dim``) and open it for writing.

        Raises:
            FileExistsError: If a collection is already there.
        """

    @classmethod
    @abstractmethod
    def exists(cls, location: str, **options: Any) -> bool:
        """Whether a collection is at ``location``."""

    @classmethod
    @abstractmethod
    def open(cls, location: str, writable: bool = True, **options: Any) -> Store:
        """Open the collection at ``location``.

        Raises:
            FileNotFoundError: If there is none.
            IndexLockedError: If ``writable`` and another process writes to it.
        """

    @abstractmethod
    def meta(self) -> dict[str, Any]:
        """The settings stored with the collection (``format_version``, ``dim``,
        ``fingerprint``, ``siamtext_version``...)."""

    @abstractmethod
    def write(self, ids: np.ndarray, vectors: np.ndarray, texts: Sequence[str | None],
              labels: Sequence[Label | None], metadata: Sequence[dict | None]) -> None:
        """Insert or replace rows, all in one transaction. ``ids`` are unique (checked by
        the caller); existing ids are replaced."""

    @abstractmethod
    def delete(self, ids: np.ndarray) -> None:
        """Delete rows, in one transaction (the ids exist: checked by the caller)."""

    @abstractmethod
    def existing(self, ids: np.ndarray) -> np.ndarray:
        """The subset of ``ids`` that is stored (any order)."""

    @abstractmethod
    def get(self, ids: np.ndarray, with_embeddings: bool = False) -> list[Item]:
        """The stored items of ``ids`` in the order given (the ids exist)."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int, threshold: float | None,
               where: dict[str, Any] | None) -> list[list[Hit]]:
        """The ``k`` nearest items of each ``(m, dim)`` query, best first, only those at or
        above ``threshold`` and matching ``where`` (see :func:`check_where`)."""

    @abstractmethod
    def count(self) -> int:
        """Number of stored items."""

    @abstractmethod
    def iter_items(self, batch_size: int = 1024, with_embeddings: bool = False,
                   where: dict[str, Any] | None = None) -> Iterator[Item]:
        """Every item in id order (matching ``where``)."""

    @abstractmethod
    def next_ids(self, n: int) -> np.ndarray:
        """``n`` fresh ids, above every id stored so far."""

    @abstractmethod
    def refresh(self) -> int:
        """Catch up with what other processes wrote; returns the number of changes."""

    def optimize(self) -> None:  # noqa: B027 - optional for engines that manage themselves
        """Rebuild the search structure for the current size (on demand; engines that
        manage their own index do nothing)."""

    def stats(self) -> dict[str, Any]:
        """Engine facts for ``Index.info()`` (mode, search depth, pending changes...)."""
        return {}

    @abstractmethod
    def close(self) -> None:
        """Flush what is pending and release the collection."""


# --------------------------------------------------------------------------- checks
def check_meta(meta: dict[str, Any], where: str) -> None:
    """Refuse a collection this siamtext cannot read, naming it.

    Raises:
        ValueError: If ``meta`` is not a siamtext collection's, or of a newer format.
    """
    if not isinstance(meta, dict) or meta.get("kind") != KIND:
        kind = meta.get("kind") if isinstance(meta, dict) else meta
        raise ValueError(f"{where} is not a siamtext collection (kind {kind!r})")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"{where}: format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(f"{where} was written by a newer siamtext "
                         f"({meta.get('siamtext_version')}, format {version}; this one reads "
                         f"format {FORMAT_VERSION}): upgrade siamtext to open it")
    dim = meta.get("dim")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
        raise ValueError(f"{where}: dim must be a positive integer, got {dim!r}")


def check_where(where: object) -> dict[str, Any] | None:
    """Validate a ``where`` filter: ``{field: value}`` or ``{field: [values]}``, all
    conditions joined by AND. ``field`` is ``"label"`` or a top-level metadata key; a value
    is a string, an int, a float, a bool or ``None`` (missing); a list means "any of".

    Raises:
        TypeError: Naming the field and what it held.
    """
    if where is None:
        return None
    if not isinstance(where, dict):
        raise TypeError(f"where must be a dict of field -> value, got {type(where).__name__}")
    out: dict[str, Any] = {}
    for key, value in where.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"where keys must be non-empty strings, got {key!r}")
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not value:
            raise ValueError(f"where[{key!r}] is an empty list: nothing could match")
        for v in values:
            if v is not None and not isinstance(v, (str, int, float, bool)):
                raise TypeError(f"where[{key!r}] must hold strings, numbers, booleans or "
                                f"None, got {type(v).__name__}: {v!r:.60}")
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"where[{key!r}] holds a non-finite number: {v!r}")
        out[key] = value
    return out


def check_metadata(metadata: object, name: str = "metadata") -> dict[str, Any] | None:
    """A metadata object, or ``None``; it must be a JSON object (string keys)."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise TypeError(f"{name} must be a dict (a JSON object) or None, got "
                        f"{type(metadata).__name__}")
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} is not JSON-serialisable: {err}") from None
    if not all(isinstance(k, str) for k in metadata):
        raise TypeError(f"{name} keys must be strings")
    return metadata


def matches(item_label: object, item_metadata: dict | None, where: dict[str, Any]) -> bool:
    """Whether one item passes a checked ``where`` filter (engines that filter in Python)."""
    for key, value in where.items():
        have = item_label if key in ITEM_FIELDS else (item_metadata or {}).get(key)
        wanted = value if isinstance(value, list) else [value]
        if not any(_same(have, w) for w in wanted):
            return False
    return True


def _same(a: object, b: object) -> bool:
    # True == 1 in Python; a stored bool matches only a bool
    return (a == b) and (isinstance(a, bool) == isinstance(b, bool))
