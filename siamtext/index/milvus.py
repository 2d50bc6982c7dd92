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
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from siamtext.extras import require
from siamtext.index.base import (
    ITEM_FIELDS,
    Hit,
    IndexLockedError,
    Item,
    Label,
    Store,
    check_meta,
    matches,
)

logger = logging.getLogger(__name__)

#: The Milvus collection used when ``collection=`` is not given.
DEFAULT_COLLECTION = "siamtext"
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
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_CLIENT_OPTIONS = ("token", "user", "password", "db_name", "timeout")
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
        check_meta(self._meta, f"{_redact(uri)} (Milvus collection {collection!r})")
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
        pymilvus = _pymilvus()
        name, client_opts, index_type, index_params, search_params = _options(
            options, creating=True)
        dim = meta.get("dim")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"meta['dim'] must be a positive integer, got {dim!r}")
        uri, lite = _location(location, creating=True)
        client = _connect(uri, lite, client_opts)
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
            _disconnect(client, lite)
            raise

    @classmethod
    def exists(cls, location: str, **options: Any) -> bool:
        """Whether the collection ``collection`` is at the Milvus ``location``."""
        name, client_opts, *_ = _options(options, creating=False)
        uri, lite = _location(location, creating=False)
        if lite is not None and not os.path.isdir(lite):
            return False  # connecting would create an empty Milvus Lite folder
        _pymilvus()
        client = _connect(uri, lite, client_opts)
        try:
            return bool(client.has_collection(name))
        finally:
            _disconnect(client, lite)

    @classmethod
    def open(cls, location: str, writable: bool = True, **options: Any) -> MilvusStore:
        """Open the collection ``collection`` at the Milvus ``location``.

        Raises:
            FileNotFoundError: If there is none.
            IndexLockedError: For a Milvus Lite file another process has open (Milvus Lite
                serves one process; several need a Milvus server).
        """
        name, client_opts, _, _, search_params = _options(options, creating=False)
        uri, lite = _location(location, creating=False)
        if lite is not None and not os.path.isdir(lite):
            raise FileNotFoundError(f"no Milvus Lite database at {location}")
        _pymilvus()
        client = _connect(uri, lite, client_opts)
        try:
            if not client.has_collection(name):
                raise FileNotFoundError(f"{location} has no Milvus collection {name!r}")
            client.load_collection(name)
            return cls(client, uri, name, writable, search_params, lite)
        except BaseException:
            _disconnect(client, lite)
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
            text, label, meta = texts[i], _encode_label(labels[i]), metadata[i]
            _check_size(text, MAX_VARCHAR, "text", item_id)
            _check_size(label, MAX_VARCHAR, "label", item_id)
            if meta is not None:
                _check_size(json.dumps(meta, ensure_ascii=False), MAX_JSON, "metadata", item_id)
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
        for part in _chunks(ids.tolist(), IDS_PER_QUERY):
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
        for part in _chunks(np.unique(ids).tolist(), IDS_PER_QUERY):
            rows = self._query(f"id in {_int_list(part)}", ["id"])
            found.extend(int(r["id"]) for r in rows)
        return np.asarray(found, dtype=np.int64)

    def get(self, ids: np.ndarray, with_embeddings: bool = False) -> list[Item]:
        fields = _OUTPUT + (["vector"] if with_embeddings else [])
        by_id: dict[int, Item] = {}
        for part in _chunks(np.unique(ids).tolist(), IDS_PER_QUERY):
            for row in self._query(f"id in {_int_list(part)}", fields):
                by_id[int(row["id"])] = _item(row, with_embeddings)
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
                    item = _item(row, with_embeddings)
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
        return {"engine": "milvus", "uri": _redact(self.uri), "collection": self.collection,
                "consistency": CONSISTENCY, "lite": self._lite_path is not None,
                "search_params": self._search_params, **index}

    def close(self) -> None:
        """Release the client (and the Milvus Lite server this store started)."""
        client, self._client = self._client, None
        if client is not None:
            _disconnect(client, self._lite_path)

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
                got = [_hit(h) for h in hits]
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


# --------------------------------------------------------------------------- filters
def milvus_filter(where: dict[str, Any]) -> str | None:
    """A checked ``where`` (:func:`siamtext.index.base.check_where`) as a Milvus boolean
    expression, or ``None`` when nothing can match (a label that is a bool or a fraction).

    ``{"label": "x"}`` -> ``label == "\\"x\\""`` (labels are stored JSON-encoded, so the
    string ``"1"`` and the integer ``1`` differ); ``{"lang": ["en", "de"]}`` ->
    ``(metadata["lang"] == "en" or metadata["lang"] == "de")``; ``None`` -> ``is null``
    (the key missing or null, or no metadata). Conditions are joined by ``and``. Strings are
    JSON string literals, which Milvus's parser reads with the same escapes.
    """
    parts = []
    for key, value in where.items():
        values = value if isinstance(value, list) else [value]
        if key in ITEM_FIELDS:
            encoded = [_label_literal(v) for v in values]
            terms = ["label is null" if v is None else f"label == {_string(v)}"
                     for v in encoded if v is not _IMPOSSIBLE]
        else:
            ref = f"metadata[{_string(key)}]"
            terms = [f"{ref} is null" if v is None else f"{ref} == {_literal(v)}"
                     for v in values]
        if not terms:
            return None
        parts.append(terms[0] if len(terms) == 1 else "(" + " or ".join(terms) + ")")
    return " and ".join(parts)


_IMPOSSIBLE = object()


def _label_literal(value: object) -> object:
    """The stored (JSON) form of a label a ``where`` names; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return _IMPOSSIBLE  # labels are str or int, and a bool never equals an int here
    if isinstance(value, float):
        return _encode_label(int(value)) if value.is_integer() else _IMPOSSIBLE
    return _encode_label(value)


def _literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _string(value)
    return repr(value)  # int, or a finite float (checked by check_where)


def _string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _encode_label(label: Label | None) -> str | None:
    return None if label is None else json.dumps(label, ensure_ascii=False)


def _decode_label(stored: str | None) -> Label | None:
    return None if stored is None else json.loads(stored)


def _item(row: dict, with_embeddings: bool) -> Item:
    vector = None
    if with_embeddings:
        vector = np.asarray(row["vector"], dtype=np.float32)
    return Item(id=int(row["id"]), text=row.get("text"), label=_decode_label(row.get("label")),
                metadata=row.get("metadata"), embedding=vector)


def _hit(h: Any) -> Hit:
    entity = h.get("entity", {}) if isinstance(h, dict) else h.entity
    get = entity.get if isinstance(entity, dict) else (lambda k: getattr(entity, k, None))
    return Hit(id=int(h["id"]), score=float(h["distance"]), text=get("text"),
               label=_decode_label(get("label")), metadata=get("metadata"))


def _int_list(ids: list[int]) -> str:
    return "[" + ", ".join(str(int(i)) for i in ids) + "]"


def _chunks(values: list, size: int) -> Iterator[list]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _check_size(value: str | None, most: int, name: str, item_id: int) -> None:
    if value is not None and len(value.encode("utf-8")) > most:
        raise ValueError(f"item {item_id}: its {name} is {len(value.encode('utf-8'))} bytes, "
                         f"above Milvus's limit of {most}: nothing was written")


# --------------------------------------------------------------------------- connecting
def _pymilvus() -> Any:
    return require("pymilvus", "milvus", "engine='milvus'")


def _options(options: dict[str, Any], creating: bool
             ) -> tuple[str, dict[str, Any], str, dict[str, Any], dict[str, Any] | None]:
    opts = dict(options)
    name = opts.pop("collection", DEFAULT_COLLECTION)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError("collection must be a Milvus collection name (a letter or _, then "
                         f"letters, digits or _; at most 255), got {name!r}")
    index_type = opts.pop("index_type", "AUTOINDEX")
    if not isinstance(index_type, str) or not index_type:
        raise ValueError(f"index_type must be a Milvus index type name, got {index_type!r}")
    index_params = opts.pop("index_params", None) or {}
    search_params = opts.pop("search_params", None)
    for key, value in (("index_params", index_params), ("search_params", search_params)):
        if value is not None and not isinstance(value, dict):
            raise TypeError(f"{key} must be a dict, got {type(value).__name__}")
    client = {k: opts.pop(k) for k in _CLIENT_OPTIONS if k in opts}
    if opts:
        raise TypeError(f"unknown option(s) for engine='milvus': {', '.join(sorted(opts))} "
                        f"(known: collection, index_type, index_params, search_params, "
                        f"{', '.join(_CLIENT_OPTIONS)})")
    return name, client, index_type, index_params, search_params


def _location(location: str, creating: bool) -> tuple[str, str | None]:
    """``(uri, lite folder or None)``: a server URI, or a Milvus Lite ``.db`` path."""
    if not isinstance(location, str) or not location:
        raise ValueError(f"a Milvus location must be a URI or a .db path, got {location!r}")
    if re.match(r"^(https?|tcp|unix)://", location) or location.startswith("unix:"):
        return location, None
    if not location.endswith(".db"):
        raise ValueError(f"a Milvus location must be a server URI (http://host:19530) or a "
                         f"Milvus Lite file ending in .db, got {location!r}")
    path = os.path.abspath(location)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{location} is a file, not a Milvus Lite database (a folder)")
    if creating and not os.path.isdir(os.path.dirname(path)):
        raise FileNotFoundError(f"the folder of {location} does not exist")
    return path, path


def _lite_servers() -> dict | None:
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:
        return None
    return getattr(server_manager_instance, "_servers", None)


#: Milvus Lite folders whose server a store here started -> open stores on it.
_LITE_OWNED: dict[str, int] = {}


def _connect(uri: str, lite: str | None, client_opts: dict[str, Any]) -> Any:
    from pymilvus import MilvusClient

    if lite is None:
        return MilvusClient(uri=uri, **client_opts)
    servers = _lite_servers()
    started_here = servers is not None and lite not in servers
    if started_here and os.path.isdir(lite):
        _check_lite_lock(lite)
    try:
        client = MilvusClient(uri=lite, **client_opts)
    except Exception as err:
        if os.path.isdir(lite):
            _check_lite_lock(lite)
        raise ConnectionError(f"could not open Milvus Lite at {lite}: {err}") from err
    if started_here or lite in _LITE_OWNED:
        _LITE_OWNED[lite] = _LITE_OWNED.get(lite, 0) + 1
    return client


def _check_lite_lock(folder: str) -> None:
    """Refuse a Milvus Lite folder another process holds (its ``LOCK`` file's flock)."""
    lock = os.path.join(folder, "LOCK")
    if not os.path.exists(lock):
        return
    try:
        import fcntl
    except ImportError:  # Windows: let Milvus Lite report it
        return
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError:
        raise IndexLockedError(f"{folder} is open in another process: Milvus Lite serves "
                               "one process at a time (use a Milvus server for several)"
                               ) from None
    finally:
        os.close(fd)


def _disconnect(client: Any, lite: str | None) -> None:
    try:
        client.close()
    finally:
        if lite is not None and lite in _LITE_OWNED:
            _LITE_OWNED[lite] -= 1
            if _LITE_OWNED[lite] <= 0:
                del _LITE_OWNED[lite]
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(lite)  # frees its file lock


def _redact(uri: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", uri)
