"""Persistent collections of embedded items: online duplicate checks and live intents.

:class:`Index` is the collection (create or open it at a path, ``add`` / ``upsert`` /
``remove`` / ``get`` / ``search``); the engine under it is a :class:`Store`:
:class:`~siamtext.index.local.LocalStore` (embedded: SQLite rows, a faiss search structure
snapshotted beside them) by default, or a Milvus server through ``pymilvus``
(``engine="milvus"``, :mod:`siamtext.index.milvus`).
"""

from __future__ import annotations

from siamtext.index.base import Hit, IndexLockedError, Item, Store
from siamtext.index.collection import FORMAT_VERSION, Index

__all__ = ["FORMAT_VERSION", "Hit", "Index", "IndexLockedError", "Item", "Store"]
