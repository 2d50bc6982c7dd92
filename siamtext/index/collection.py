"""A persistent collection of texts and their embeddings, searched by cosine similarity.

:class:`Index` ties a storage engine (:class:`~siamtext.index.base.Store`) to one encoder.
It checks every input before any work starts, embeds texts in batches, and hands the engine
unit vectors; the engine makes them durable and searchable. Items are
``(id, text, embedding, label, metadata)``; ids are int64, chosen by you or given out in
increasing order.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from siamtext.index import fingerprint as fp
from siamtext.index.base import (
    FORMAT_VERSION,
    KIND,
    Hit,
    Item,
    Label,
    Store,
    check_meta,
    check_where,
)
from siamtext.index.inputs import (
    as_matrix,
    check_ids,
    check_labels,
    check_metadata_list,
    check_model,
    check_threshold,
    few,
    to_numpy,
)
from siamtext.validation import check_choice, check_positive_int, check_texts

if TYPE_CHECKING:
    from siamtext.model import SiamText

logger = logging.getLogger(__name__)

#: engine name -> "module:Class"
ENGINES = {"local": "siamtext.index.local:LocalStore",
           "milvus": "siamtext.index.milvus:MilvusStore"}
Engine = Literal["local", "milvus"]


def _engine_class(engine: str) -> type[Store]:
    check_choice(engine, tuple(ENGINES), "engine")
    module, name = ENGINES[engine].split(":")
    return getattr(importlib.import_module(module), name)


class Index:
    """A collection of items that grows while it is searched, kept on disk.

    Build one with :meth:`create` or :meth:`open`, never the constructor. Every write
    (:meth:`add`, :meth:`upsert`, :meth:`remove`) is one transaction: it is durable when it
    returns, and a reader sees the collection before it or after it, never half of it. New
    items are searchable as soon as :meth:`add` returns. One process writes at a time;
    any number of processes may read (``readonly=True``) and catch up with :meth:`refresh`.

    Args:
        store: The engine holding the items (from :meth:`create` / :meth:`open`).
        model: The encoder, or ``None`` for a pure-embeddings collection (you pass vectors).
        batch_size: Texts per encoding batch.
        precision: The precision texts are embedded at (part of the fingerprint).

    Examples:
        >>> index = Index.create("questions.idx", SiamText())
        >>> index.add(["How do I reset my password?", "Where is my parcel?"])
        [0, 1]
        >>> index.search("I forgot my password", k=1)[0].id
        0
    """

    def __init__(self, store: Store, model: SiamText | None = None, *, batch_size: int = 64,
                 precision: str = "fp32") -> None:
        self.store = store
        self.model = model
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.precision = precision

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, path: str | Path, model: SiamText | None = None, *, dim: int | None = None,
               engine: Engine = "local", exist_ok: bool = False, batch_size: int = 64,
               precision: Literal["fp32", "bf16", "fp16"] = "fp32", **options: Any) -> Index:
        """Create a collection at ``path`` and open it for writing.

        Args:
            path: A folder for ``engine="local"`` (must not exist, or be empty); a Milvus URI
                for ``engine="milvus"`` (``"http://host:19530"``, or a ``.db`` file for
                Milvus Lite) with ``collection=NAME`` in ``options``.
            model: The encoder whose embeddings the collection holds; ``None`` for a
                pure-embeddings collection, which then needs ``dim``.
            dim: Vector dimension (taken from ``model`` when there is one; must agree).
            engine: ``"local"`` (SQLite rows and a faiss index, embedded, no server) or
                ``"milvus"`` (``pip install 'siamtext[milvus]'``).
            exist_ok: Open the collection instead when one is already at ``path`` (its
                fingerprint is then checked against ``model``).
            batch_size: Texts per encoding batch.
            precision: Precision of the embeddings (``model.encode(precision=...)``).
            **options: Engine settings (:class:`siamtext.index.local.LocalStore`).

        Returns:
            The open :class:`Index`.

        Raises:
            FileExistsError: If a collection is at ``path`` and not ``exist_ok``.
            ValueError: For a ``dim`` that is missing, not positive or not the model's.
        """
        check_choice(precision, ("fp32", "bf16", "fp16"), "precision")
        if model is not None:
            if dim is not None and dim != model.embedding_dim:
                raise ValueError(f"dim={dim} but the model embeds in {model.embedding_dim}")
            dim = model.embedding_dim
        elif dim is None:
            raise ValueError("a collection without a model needs dim=... (the vector size)")
        check_positive_int(dim, "dim")
        store_cls = _engine_class(engine)
        if exist_ok and store_cls.exists(str(path), **options):
            return cls.open(path, model, engine=engine, batch_size=batch_size,
                            precision=precision, **options)
        import siamtext

        meta = {"kind": KIND, "format_version": FORMAT_VERSION,
                "siamtext_version": siamtext.__version__, "dim": int(dim), "metric": "cosine",
                "fingerprint": None if model is None else fp.fingerprint(model, precision)}
        store = store_cls.create(str(path), meta, **options)
        return cls(store, model, batch_size=batch_size, precision=precision)

    @classmethod
    def open(cls, path: str | Path, model: SiamText | None = None, *, readonly: bool = False,
             engine: Engine = "local", batch_size: int = 64,
             precision: Literal["fp32", "bf16", "fp16"] | None = None,
             **options: Any) -> Index:
        """Open the collection at ``path``.

        Args:
            path: As for :meth:`create`.
            model: The encoder that filled the collection (its fingerprint must match the
                stored one), or ``None`` to search and add by vectors only.
            readonly: Open for reading: no lock is taken, any number of readers may share
                the collection with one writer; :meth:`refresh` catches up with its writes.
            engine: As for :meth:`create`.
            batch_size: As for :meth:`create`.
            **options: As for :meth:`create`.
            precision: ``None``: the stored one.

        Raises:
            FileNotFoundError: If there is no collection at ``path``.
            ValueError: If ``model`` is not the encoder the collection was made with (both
                named), or the collection was written by a newer siamtext.
            IndexLockedError: If not ``readonly`` and another process is writing.
        """
        store = _engine_class(engine).open(str(path), writable=not readonly, **options)
        try:
            meta = store.meta()
            check_meta(meta, str(path))  # engines check it too, before loading anything
            stored = meta.get("fingerprint")
            if precision is None:
                precision = (stored or {}).get("precision", "fp32")
            check_choice(precision, ("fp32", "bf16", "fp16"), "precision")
            if model is not None:
                check_model(stored, model, precision, str(path))
        except BaseException:
            store.close()
            raise
        return cls(store, model, batch_size=batch_size, precision=precision)

    # ------------------------------------------------------------------ facts
    @property
    def dim(self) -> int:
        """Vector dimension."""
        return self.store.dim

    @property
    def fingerprint(self) -> dict[str, Any] | None:
        """The stored encoder's fingerprint (``None`` for a pure-embeddings collection)."""
        return self.store.meta().get("fingerprint")

    def __len__(self) -> int:
        return self.store.count()

    def __contains__(self, item_id: object) -> bool:
        if isinstance(item_id, bool) or not isinstance(item_id, (int, np.integer)):
            return False
        return len(self.store.existing(np.asarray([item_id], dtype=np.int64))) == 1

    def __iter__(self) -> Iterator[Item]:
        return self.store.iter_items()

    def items(self, where: dict[str, Any] | None = None, with_embeddings: bool = False,
              batch_size: int = 1024) -> Iterator[Item]:
        """Every item in id order, or those matching ``where`` (see :meth:`search`), all read
        in one read transaction: writes made meanwhile are not seen, half or whole."""
        check_positive_int(batch_size, "batch_size")
        return self.store.iter_items(batch_size, with_embeddings, check_where(where))

    def info(self) -> dict[str, Any]:
        """Size, dimension, fingerprint and the engine's own facts."""
        meta = self.store.meta()
        return {"items": len(self), "dim": self.dim, "writable": self.store.writable,
                "format_version": meta.get("format_version"),
                "siamtext_version": meta.get("siamtext_version"),
                "fingerprint": meta.get("fingerprint"), **self.store.stats()}

    # ------------------------------------------------------------------ writing
    def add(self, texts: Sequence[str] | None = None, *, embeddings: object = None,
            ids: Sequence[int] | None = None, labels: Label | Sequence[Label | None] | None = None,
            metadata: Sequence[dict | None] | None = None,
            show_progress: bool | None = None) -> list[int]:
        """Store new items, in one transaction; they are searchable when this returns.

        Args:
            texts: Texts to embed (and store). May be left out when ``embeddings`` are given.
            embeddings: ``(n, dim)`` vectors (numpy or torch) instead of embedding ``texts``;
                with ``texts`` too, the texts are stored beside the given vectors.
            ids: One int64 id per item; ``None`` gives out ids above every id so far.
            labels: One label for all items, or one per item (``None`` for none).
            metadata: One JSON object (or ``None``) per item.
            show_progress: Progress bar while embedding.

        Returns:
            The ids, in input order.

        Raises:
            ValueError: For ids repeated in the call or already stored (named), lengths that
                disagree, vectors of the wrong dimension or with NaN, infinity or zero norm;
                nothing is written.
        """
        return self._write(texts, embeddings, ids, labels, metadata, show_progress,
                           replace=False)

    def upsert(self, texts: Sequence[str] | None = None, *, embeddings: object = None,
               ids: Sequence[int] | None = None,
               labels: Label | Sequence[Label | None] | None = None,
               metadata: Sequence[dict | None] | None = None,
               show_progress: bool | None = None) -> list[int]:
        """Like :meth:`add`, but an id that is stored already is replaced (text, vector,
        label and metadata together), as an edit."""
        return self._write(texts, embeddings, ids, labels, metadata, show_progress,
                           replace=True)

    def remove(self, ids: int | Sequence[int], *, missing_ok: bool = False) -> list[int]:
        """Delete items, in one transaction.

        Args:
            ids: An id or a list of them.
            missing_ok: Remove the ids that are stored and skip the others; by default an
                unknown id is an error and nothing is removed.

        Returns:
            The ids removed.

        Raises:
            KeyError: Naming the unknown ids (unless ``missing_ok``); nothing changes.
        """
        self._require_writable("remove")
        arr = check_ids(ids if not isinstance(ids, (int, np.integer)) else [ids], "ids")
        arr = np.unique(arr)
        found = set(self.store.existing(arr).tolist())
        missing = [i for i in arr.tolist() if i not in found]
        if missing and not missing_ok:
            raise KeyError(f"no item has id {few(missing)}: nothing was removed")
        keep = np.asarray([i for i in arr.tolist() if i in found], dtype=np.int64)
        if len(keep):
            self.store.delete(keep)
        return keep.tolist()

    def refresh(self) -> int:
        """Catch up with what another process wrote since this one opened or last
        refreshed (readers call it; a writer is always current). Returns the changes seen."""
        return self.store.refresh()

    def optimize(self) -> None:
        """Rebuild the approximate search structure for the current size (an IVF index is
        retrained as the collection grows), and write its snapshot. Searches go on."""
        self._require_writable("optimize")
        self.store.optimize()

    def close(self) -> None:
        """Write what is pending (the search snapshot) and release the collection."""
        self.store.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reading
    def get(self, ids: int | Sequence[int], *, with_embeddings: bool = False
            ) -> Item | list[Item]:
        """The stored items of ``ids`` (one :class:`Item` for one id).

        Raises:
            KeyError: Naming the ids that are not stored.
        """
        single = isinstance(ids, (int, np.integer)) and not isinstance(ids, bool)
        arr = check_ids([ids] if single else ids, "ids")
        found = set(self.store.existing(arr).tolist())
        missing = [i for i in arr.tolist() if i not in found]
        if missing:
            raise KeyError(f"no item has id {few(missing)}")
        items = self.store.get(arr, with_embeddings)
        return items[0] if single else items

    def search(self, queries: str | Sequence[str] | object, k: int = 10,
               threshold: float | None = None, where: dict[str, Any] | None = None
               ) -> list[Hit] | list[list[Hit]]:
        """The stored items nearest each query by cosine similarity.

        Args:
            queries: A text, a list of texts, or ``(dim,)`` / ``(m, dim)`` vectors.
            k: Most hits per query.
            threshold: Keep only hits at or above this cosine, in [-1, 1].
            where: Keep only items whose fields equal the given values:
                ``{"label": "billing"}``, ``{"lang": ["en", "de"]}`` (metadata keys; a list
                means any of them; all conditions must hold).

        Returns:
            For one text or one vector, its hits (best first); else one list per query.

        Raises:
            ValueError: For a bad ``k``/``threshold``, or vectors of the wrong dimension.
        """
        check_positive_int(k, "k")
        if threshold is not None:
            threshold = check_threshold(threshold)
        where = check_where(where)
        single, q = self._queries(queries)
        hits = self.store.search(q, k, threshold, where) if len(q) else []
        return hits[0] if single else hits

    # ------------------------------------------------------------------ helpers
    def embed(self, texts: Sequence[str], show_progress: bool | None = None) -> np.ndarray:
        """``(n, dim)`` unit vectors of ``texts`` by the collection's encoder."""
        if self.model is None:
            raise ValueError("this collection was opened without a model: pass embeddings, "
                             "or open it with the model that filled it")
        return np.asarray(self.model.encode(list(texts), batch_size=self.batch_size,
                                            normalize=True, show_progress=show_progress,
                                            precision=self.precision), dtype=np.float32)

    def _queries(self, queries: object) -> tuple[bool, np.ndarray]:
        if isinstance(queries, str) or (isinstance(queries, (list, tuple)) and queries
                                        and isinstance(queries[0], str)):
            texts = check_texts(queries, "queries")
            return isinstance(queries, str), self.embed(texts)
        if isinstance(queries, (list, tuple)) and not queries:
            return False, np.zeros((0, self.dim), dtype=np.float32)
        arr = as_matrix(queries, self.dim, "queries")
        single = np.ndim(to_numpy(queries)) == 1
        return single, arr

    def _require_writable(self, what: str) -> None:
        if not self.store.writable:
            raise PermissionError(f"{what}: this collection was opened readonly=True")

    def _write(self, texts: object, embeddings: object, ids: object, labels: object,
               metadata: object, show_progress: bool | None, replace: bool) -> list[int]:
        self._require_writable("upsert" if replace else "add")
        if texts is None and embeddings is None:
            raise ValueError("pass texts, embeddings, or both")
        text_list = check_texts(texts, "texts") if texts is not None else None
        vectors = as_matrix(embeddings, self.dim, "embeddings") if embeddings is not None \
            else None
        n = len(text_list) if text_list is not None else len(vectors)
        if text_list is not None and vectors is not None and len(vectors) != n:
            raise ValueError(f"texts has {n} items but embeddings has {len(vectors)} rows")
        if vectors is None and self.model is None:
            raise ValueError("this collection was opened without a model: pass embeddings=")
        label_list = check_labels(labels, n)
        meta_list = check_metadata_list(metadata, n)
        if ids is None:
            id_arr = None
        else:
            id_arr = check_ids(ids, "ids")
            if len(id_arr) != n:
                raise ValueError(f"ids has {len(id_arr)} items for {n} items")
            uniq, counts = np.unique(id_arr, return_counts=True)
            if (counts > 1).any():
                raise ValueError(f"ids repeated in one call: {few(uniq[counts > 1].tolist())}")
            if not replace:
                stored = self.store.existing(id_arr)
                if len(stored):
                    raise ValueError(f"ids already stored: {few(sorted(stored.tolist()))} "
                                     "(use upsert to replace them)")
        if n == 0:
            return []
        if vectors is None:
            vectors = self.embed(text_list, show_progress)
        if id_arr is None:
            id_arr = self.store.next_ids(n)
        texts_out = text_list if text_list is not None else [None] * n
        self.store.write(id_arr, vectors, texts_out, label_list, meta_list)
        return id_arr.tolist()
