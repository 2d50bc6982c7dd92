"""A collection kept in Milvus, for collections that outgrow one machine.

:class:`MilvusStore` is the :class:`~siamtext.index.base.Store` of ``engine="milvus"``: the
rows live in one Milvus collection reached through the official client ``pymilvus``
(``MilvusClient``), either a Milvus server or cluster (``"http://host:19530"``) or Milvus
Lite (a local ``.db`` folder, the same client API, one process at a time). Install it with
``pip install 'siamtext[milvus]'``.

The collection's schema: ``id`` INT64 primary key (ids are ours, not Milvus's ``auto_id``),
``vector`` FLOAT_VECTOR searched by inner product (``IP``: the vectors are unit-normalised,
so this is the cosine), ``text`` and ``label`` VARCHAR (nullable; a label is stored
JSON-encoded so that ``1`` and ``"1"`` stay distinct), ``metadata`` JSON (nullable). The
collection's settings (:meth:`MilvusStore.meta`) are a JSON string in its properties
(``siamtext.meta``), written in the same ``create_collection`` call as the schema, beside
two counters: ``siamtext.next_id`` (above every id ever written: ids are not reused after a
removal) and ``siamtext.writes`` (bumped after every write, so :meth:`MilvusStore.refresh`
can tell a reader that something changed). Every read runs at ``Strong`` consistency: it
sees every write acknowledged before it started.

What Milvus does not give, and so this store does not either: a writer lock (several
processes may write one collection; siamtext does not serialise them: run one writer), and
transactions across requests (one ``write`` is one ``upsert`` request unless it exceeds
:data:`REQUEST_BYTES`, then it is sent in parts, each atomic on its own). Milvus Lite's own
file lock refuses a second process, which this store reports as
:class:`~siamtext.index.base.IndexLockedError`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from siamtext.index.base import Hit, Item, Label, Store, check_meta, matches
from siamtext.index.milvus_connect import (
    connect,
    disconnect,
    parse_location,
    parse_options,
    pymilvus_module,
    redact,
)
from siamtext.index.milvus_fields import (
    check_size,
    chunks,
    encode_label,
    int_list,
    milvus_filter,
    to_hit,
    to_item,
)

logger = logging.getLogger(__name__)

#: Properties of the collection that hold siamtext's state.
META_KEY, NEXT_ID_KEY, WRITES_KEY = "siamtext.meta", "siamtext.next_id", "siamtext.writes"
#: Milvus's own bounds: longest VARCHAR / JSON value (bytes), most results of one search
#: (``topk``) or one page of a query, most query vectors in one request.
MAX_VARCHAR, MAX_JSON, MAX_TOPK, MAX_NQ = 65_535, 65_536, 16_384, 1_024
#: Largest upsert request sent at once (Milvus refuses gRPC messages above 64 MiB).
REQUEST_BYTES = 16 * 2**20
#: Ids per ``id in [...]`` query.
IDS_PER_QUERY = 1_000
CONSISTENCY = "Strong"
_OUTPUT = ["id", "text", "label", "metadata"]


class MilvusStore(Store):
    """Items in one Milvus collection, searched by inner product of unit vectors.

    Build it with :meth:`create` or :meth:`open` (through :class:`siamtext.index.Index`
    with ``engine="milvus"``), never the constructor.

    Options (``**options`` of :meth:`create` / :meth:`open`, and of ``Index.create`` /
    ``Index.open``):
        collection: The Milvus collection's name (default ``"siamtext"``).
        token, user, password, db_name, timeout: Passed to ``pymilvus.MilvusClient``.
        index_type: The vector index Milvus builds at :meth:`create`: ``"AUTOINDEX"`` (the
            default: Milvus chooses; HNSW on Milvus Lite), ``"FLAT"`` (exact), ``"HNSW"``,
            ``"IVF_FLAT"``...
        index_params: Build parameters of that index (``{"M": 16, "efConstruction": 200}``).
        search_params: Search parameters (``{"ef": 64}`` for HNSW, ``{"nprobe": 16}`` for
            IVF).

    Examples:
        >>> index = Index.create("items.db", dim=384, engine="milvus", collection="faq")
    """

    def __init__(self, client: Any, uri: str, collection: str, writable: bool,
                 search_params: dict[str, Any] | None, lite_path: str | None) -> None:
        self._client = client
        self.uri = uri
        self.collection = collection
        self.writable = writable
        self._search_params = dict(search_params or {})
        self._lite_path = lite_path
        props = self._properties()
        try:
            self._meta = json.loads(props.get(META_KEY) or "{}")
        except json.JSONDecodeError:
            self._meta = {}
        check_meta(self._meta, f"{redact(uri)} (Milvus collection {collection!r})")
        self.dim = int(self._meta["dim"])
        self._writes_seen = int(props.get(WRITES_KEY) or 0)

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, location: str, meta: dict[str, Any], **options: Any) -> MilvusStore:
        """Create the collection ``collection`` at the Milvus ``location`` (a URI, or a
        ``.db`` path for Milvus Lite) holding ``meta``, and open it for writing.

        Raises:
            FileExistsError: If that collection is already there.
            ValueError: For a bad location, collection name, index type or ``meta``.
        """
        pymilvus = pymilvus_module()
        name, client_opts, index_type, index_params, search_params = parse_options(
            options, creating=True)
        dim = meta.get("dim")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"meta['dim'] must be a positive integer, got {dim!r}")
        uri, lite = parse_location(location, creating=True)
        client = connect(uri, lite, client_opts)
        try:
            if client.has_collection(name):
                raise FileExistsError(f"{location} already has a Milvus collection {name!r}")
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            dt = pymilvus.DataType
            schema.add_field("id", dt.INT64, is_primary=True)
            schema.add_field("vector", dt.FLOAT_VECTOR, dim=dim)
            schema.add_field("text", dt.VARCHAR, max_length=MAX_VARCHAR, nullable=True)
            schema.add_field("label", dt.VARCHAR, max_length=MAX_VARCHAR, nullable=True)
            schema.add_field("metadata", dt.JSON, nullable=True)
            params = client.prepare_index_params()
            params.add_index(field_name="vector", index_type=index_type, metric_type="IP",
                             params=index_params)
            client.create_collection(
                name, schema=schema, index_params=params, consistency_level=CONSISTENCY,
                properties={META_KEY: json.dumps(meta, sort_keys=True), NEXT_ID_KEY: "0",
                            WRITES_KEY: "0"})
            client.load_collection(name)
            return cls(client, uri, name, True, search_params, lite)
        except BaseException:
            disconnect(client, lite)
            raise

    @classmethod
    def exists(cls, location: str, **options: Any) -> bool:
        """Whether the collection ``collection`` is at the Milvus ``location``."""
        name, client_opts, *_ = parse_options(options, creating=False)
        uri, lite = parse_location(location, creating=False)
        if lite is not None and not os.path.isdir(lite):
            return False  # connecting would create an empty Milvus Lite folder
        pymilvus_module()
        client = connect(uri, lite, client_opts)
        try:
            return bool(client.has_collection(name))
        finally:
            disconnect(client, lite)

    @classmethod
    def open(cls, location: str, writable: bool = True, **options: Any) -> MilvusStore:
        """Open the collection ``collection`` at the Milvus ``location``.

        Raises:
            FileNotFoundError: If there is none.
            IndexLockedError: For a Milvus Lite file another process has open (Milvus Lite
                serves one process; several need a Milvus server).
        """
        name, client_opts, _, _, search_params = parse_options(options, creating=False)
        uri, lite = parse_location(location, creating=False)
        if lite is not None and not os.path.isdir(lite):
            raise FileNotFoundError(f"no Milvus Lite database at {location}")
        pymilvus_module()
        client = connect(uri, lite, client_opts)
        try:
            if not client.has_collection(name):
                raise FileNotFoundError(f"{location} has no Milvus collection {name!r}")
            client.load_collection(name)
            return cls(client, uri, name, writable, search_params, lite)
        except BaseException:
            disconnect(client, lite)
            raise

    def meta(self) -> dict[str, Any]:
        """The settings stored with the collection (a copy)."""
        return json.loads(json.dumps(self._meta))

    # ------------------------------------------------------------------ writing
    def write(self, ids: np.ndarray, vectors: np.ndarray, texts: Sequence[str | None],
              labels: Sequence[Label | None], metadata: Sequence[dict | None]) -> None:
        """Upsert rows (one request when they fit :data:`REQUEST_BYTES`)."""
        self._require_writable()
        rows, sizes = [], []
        for i, item_id in enumerate(ids.tolist()):
            text, label, meta = texts[i], encode_label(labels[i]), metadata[i]
            check_size(text, MAX_VARCHAR, "text", item_id)
            check_size(label, MAX_VARCHAR, "label", item_id)
            if meta is not None:
                check_size(json.dumps(meta, ensure_ascii=False), MAX_JSON, "metadata", item_id)
            rows.append({"id": int(item_id), "vector": vectors[i].tolist(), "text": text,
                         "label": label, "metadata": meta})
            sizes.append(16 * self.dim + len(text or "") * 4 + len(label or "") + 64
                         + (len(json.dumps(meta)) if meta is not None else 0))
        if not rows:
            return
        top = int(ids.max()) + 1
        if top > self._next_id():  # ids beyond the mark: raise it first, so it covers them
            self._set_properties({NEXT_ID_KEY: str(top)})
        start, used = 0, 0
        for end, size in enumerate(sizes):
            if used and used + size > REQUEST_BYTES:
                self._client.upsert(self.collection, rows[start:end])
                start, used = end, 0
            used += size
        self._client.upsert(self.collection, rows[start:])
        self._bump_writes()

    def delete(self, ids: np.ndarray) -> None:
        """Delete rows (their ids stay used: :meth:`next_ids` never gives them again)."""
        self._require_writable()
        if not len(ids):
            return
        for part in chunks(ids.tolist(), IDS_PER_QUERY):
            self._client.delete(self.collection, ids=[int(i) for i in part])
        self._bump_writes()

    def next_ids(self, n: int) -> np.ndarray:
        """``n`` fresh ids from the collection's ``siamtext.next_id`` mark, which is raised
        before they are returned. The mark is above every id ever written through siamtext,
        removed ones included. It is read from the server at each call, so a writer that
        starts after another stopped carries on above it; two processes reserving at the
        same moment could be given the same ids (Milvus has no compare-and-set)."""
        self._require_writable()
        start = self._next_id()
        self._set_properties({NEXT_ID_KEY: str(start + n)})
        return np.arange(start, start + n, dtype=np.int64)

    # ------------------------------------------------------------------ reading
    def existing(self, ids: np.ndarray) -> np.ndarray:
        found: list[int] = []
        for part in chunks(np.unique(ids).tolist(), IDS_PER_QUERY):
            rows = self._query(f"id in {int_list(part)}", ["id"])
            found.extend(int(r["id"]) for r in rows)
        return np.asarray(found, dtype=np.int64)

    def get(self, ids: np.ndarray, with_embeddings: bool = False) -> list[Item]:
        fields = _OUTPUT + (["vector"] if with_embeddings else [])
        by_id: dict[int, Item] = {}
        for part in chunks(np.unique(ids).tolist(), IDS_PER_QUERY):
            for row in self._query(f"id in {int_list(part)}", fields):
                by_id[int(row["id"])] = to_item(row, with_embeddings)
        return [by_id[int(i)] for i in ids.tolist()]

    def search(self, queries: np.ndarray, k: int, threshold: float | None,
               where: dict[str, Any] | None) -> list[list[Hit]]:
        """The ``k`` nearest items of each query (``k`` at most 16,384, Milvus's ``topk``).

        ``where`` becomes a Milvus filter expression (:func:`milvus_filter`); the hits are
        checked again here against the exact rule of :func:`siamtext.index.base.matches`
        (Milvus compares JSON ``true`` equal to ``1``), asking for more while some were
        dropped, so the result is the same as the local engine's."""
        if where is not None and milvus_filter(where) is None:
            return [[] for _ in range(len(queries))]
        expr = milvus_filter(where) if where else ""
        limit = min(int(k), MAX_TOPK)
        out: list[list[Hit]] = []
        for start in range(0, len(queries), MAX_NQ):
            block = queries[start:start + MAX_NQ]
            out.extend(self._search_block(block, limit, threshold, where, expr))
        return out

    def count(self) -> int:
        rows = self._query("", ["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def iter_items(self, batch_size: int = 1024, with_embeddings: bool = False,
                   where: dict[str, Any] | None = None) -> Iterator[Item]:
        """Every item in id order, by ``query_iterator`` (whose pages Milvus returns in
        primary-key order, each after the last id of the one before)."""
        if where is not None and milvus_filter(where) is None:
            return
        fields = _OUTPUT + (["vector"] if with_embeddings else [])
        iterator = self._client.query_iterator(
            self.collection, batch_size=min(int(batch_size), MAX_TOPK),
            filter=milvus_filter(where) if where else "", output_fields=fields,
            consistency_level=CONSISTENCY)
        last = None
        try:
            while True:
                page = iterator.next()
                if not page:
                    return
                for row in sorted(page, key=lambda r: int(r["id"])):
                    item = to_item(row, with_embeddings)
                    if last is not None and item.id <= last:
                        raise RuntimeError("Milvus returned the query pages out of id order "
                                           f"({item.id} after {last})")
                    last = item.id
                    if where is None or matches(item.label, item.metadata, where):
                        yield item
        finally:
            iterator.close()

    def refresh(self) -> int:
        """Reads are already ``Strong`` (they see every acknowledged write), so there is
        nothing to catch up: this returns how many writes were made (by any process) since
        this handle opened or last refreshed, read from ``siamtext.writes``."""
        now = int(self._properties().get(WRITES_KEY) or 0)
        changes, self._writes_seen = max(0, now - self._writes_seen), now
        return changes

    def stats(self) -> dict[str, Any]:
        index = {}
        try:
            described = self._client.describe_index(self.collection, "vector")
            index = {"index_type": described.get("index_type"),
                     "metric": described.get("metric_type")}
        except Exception as err:  # noqa: BLE001 - facts only; never fail info() for them
            logger.debug("describe_index failed: %s", err)
        return {"engine": "milvus", "uri": redact(self.uri), "collection": self.collection,
                "consistency": CONSISTENCY, "lite": self._lite_path is not None,
                "search_params": self._search_params, **index}

    def close(self) -> None:
        """Release the client (and the Milvus Lite server this store started)."""
        client, self._client = self._client, None
        if client is not None:
            disconnect(client, self._lite_path)

    # ------------------------------------------------------------------ helpers
    def _require_writable(self) -> None:
        if not self.writable:
            raise PermissionError("this Milvus collection was opened read-only")

    def _query(self, expr: str, fields: list[str]) -> list[dict]:
        return self._client.query(self.collection, filter=expr, output_fields=fields,
                                  consistency_level=CONSISTENCY)

    def _search_block(self, block: np.ndarray, limit: int, threshold: float | None,
                      where: dict[str, Any] | None, expr: str) -> list[list[Hit]]:
        result: list[list[Hit] | None] = [None] * len(block)
        todo, ask = list(range(len(block))), limit
        while todo:
            raw = self._client.search(
                self.collection, data=[block[i].tolist() for i in todo], limit=ask,
                filter=expr, output_fields=["text", "label", "metadata"],
                search_params={"metric_type": "IP", "params": self._search_params},
                anns_field="vector", consistency_level=CONSISTENCY)
            again = []
            for row, hits in zip(todo, raw):
                got = [to_hit(h) for h in hits]
                kept = [h for h in got if where is None
                        or matches(h.label, h.metadata, where)]
                if len(kept) < min(len(got), limit) and len(got) == ask and ask < MAX_TOPK:
                    again.append(row)  # some dropped: the next ones may be further down
                    continue
                kept.sort(key=lambda h: (-h.score, h.id))
                if threshold is not None:
                    kept = [h for h in kept if h.score >= threshold]
                result[row] = kept[:limit]
            todo, ask = again, min(ask * 4, MAX_TOPK)
        return [r or [] for r in result]

    def _properties(self) -> dict[str, str]:
        return dict(self._client.describe_collection(self.collection).get("properties") or {})

    def _set_properties(self, props: dict[str, str]) -> None:
        self._client.alter_collection_properties(self.collection, properties=props)

    def _next_id(self) -> int:
        return int(self._properties().get(NEXT_ID_KEY) or 0)

    def _bump_writes(self) -> None:
        writes = int(self._properties().get(WRITES_KEY) or 0) + 1
        self._set_properties({WRITES_KEY: str(writes)})
        self._writes_seen += 1  # our own writes are not news to us
