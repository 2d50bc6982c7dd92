"""``siamtext index create|add|search|check|remove|info PATH``: a persistent collection.

Thin over :class:`siamtext.index.Index`. Files are read as ``siamtext encode`` reads them
(.txt one text per line, .csv/.tsv/.jsonl/.parquet with ``--column``), a chunk at a time:
each chunk is one ``add`` (durable when it returns), so memory stays flat and an interrupted
``add`` keeps every chunk before the one it was in. The encoder of ``add``/``search``/
``check`` is the one the collection was made with, reloaded from the path in its fingerprint
(``--model`` gives another place to load it from; its fingerprint must still match).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from siamtext.cli.backend import add_backend_options

_ACTIONS = ("create", "add", "search", "check", "remove", "info")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "index", help="a persistent collection of embedded texts: create, add, search...",
        description="Create a collection at PATH, add texts to it from a file, search it, "
                    "check new texts against it (duplicates above a threshold), remove "
                    "items, or describe it. PATH is a folder (the local engine) or, for "
                    "engine milvus, a Milvus URI or a Milvus Lite .db file.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    create = actions.add_parser("create", help="create an empty collection")
    _common(create, encoder=True)
    group = create.add_mutually_exclusive_group(required=True)
    group.add_argument("--model", help="encoder: a model folder or Hub id (its path is "
                                       "stored, and reloaded by add/search/check)")
    group.add_argument("--dim", type=int, help="vector size of a pure-embeddings collection "
                                               "(no encoder: add with --embeddings)")
    create.add_argument("--exist-ok", action="store_true",
                        help="open the collection instead if one is at PATH")

    add = actions.add_parser("add", help="add the texts of a file, a chunk at a time")
    _common(add, encoder=True, model_option=True)
    add.add_argument("file", nargs="?", metavar="FILE",
                     help="texts: .txt, .csv, .tsv, .jsonl or .parquet (or a Hub dataset id)")
    add.add_argument("--column", default="text", help="text column (default: text)")
    add.add_argument("--id-column", help="column of int64 ids (default: ids given out)")
    add.add_argument("--label-column", help="column of labels (strings or integers)")
    add.add_argument("--embeddings", help="vectors to store instead of embedding the texts "
                                          "(.npy, .safetensors or .parquet, as written by "
                                          "siamtext encode; one row per text)")
    add.add_argument("--upsert", action="store_true",
                     help="replace items whose id is stored (default: refuse them)")
    add.add_argument("--split", default="train", help="split of a Hub dataset")
    add.add_argument("--config", default=None, help="configuration of a Hub dataset")
    _chunked(add)

    search = actions.add_parser("search", help="the nearest stored items of each query")
    _common(search, encoder=True, model_option=True)
    search.add_argument("queries", nargs="+", metavar="QUERY")
    _search_options(search, threshold_required=False)
    search.add_argument("--json", action="store_true",
                        help="one JSON line per query ({query, hits}) instead of a table")

    check = actions.add_parser("check", help="stored items at or above a threshold for each "
                                             "text of a file (JSON lines)")
    _common(check, encoder=True, model_option=True)
    check.add_argument("file", metavar="FILE",
                       help="new texts: .txt, .csv, .tsv, .jsonl or .parquet")
    check.add_argument("--column", default="text", help="text column (default: text)")
    _search_options(check, threshold_required=True)
    check.add_argument("-o", "--output", help="write the JSON lines here (default: stdout)")
    _chunked(check)

    remove = actions.add_parser("remove", help="delete items by id")
    _common(remove)
    remove.add_argument("ids", nargs="+", type=int, metavar="ID")
    remove.add_argument("--missing-ok", action="store_true",
                        help="skip unknown ids (default: refuse, removing nothing)")

    info = actions.add_parser("info", help="size, dimension, encoder and engine (JSON)")
    _common(info)
    return parser


def _common(parser: argparse.ArgumentParser, encoder: bool = False,
            model_option: bool = False) -> None:
    parser.add_argument("path", metavar="PATH", help="the collection")
    parser.add_argument("--engine", choices=["auto", "local", "milvus"], default="auto",
                        help="auto: milvus for a .db file or a http(s):// URI, else local")
    parser.add_argument("--collection", default=None,
                        help="Milvus collection name (engine milvus; default: siamtext)")
    if model_option:
        parser.add_argument("--model", default=None,
                            help="where to load the collection's encoder from (default: the "
                                 "path stored in its fingerprint)")
    if encoder:
        parser.add_argument("--batch-size", type=int, default=32)
        parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: auto)")
        add_backend_options(parser)


def _chunked(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--chunk-size", type=int, default=1000,
                        help="texts read, embedded and written at a time (default 1000)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _search_options(parser: argparse.ArgumentParser, threshold_required: bool) -> None:
    parser.add_argument("-k", type=int, default=10, help="most hits per query (default 10)")
    parser.add_argument("--threshold", type=float, required=threshold_required,
                        help="keep hits at or above this cosine similarity")
    parser.add_argument("--where", default=None,
                        help='JSON filter, e.g. \'{"label": "billing"}\' or '
                             '\'{"lang": ["en", "de"]}\'')


# --------------------------------------------------------------------------- run
def run(args: argparse.Namespace) -> int:
    from siamtext.index import IndexLockedError

    try:
        return globals()[f"_{args.action}"](args)
    except (KeyError, IndexLockedError) as err:  # unknown ids; another writer
        message = err.args[0] if err.args else str(err)
        print(f"siamtext index: error: {message}", file=sys.stderr)
        return 2


def _create(args: argparse.Namespace) -> int:
    from siamtext.index import Index
    from siamtext.validation import check_positive_int

    engine, options = _engine(args)
    model = None
    if args.dim is not None:
        check_positive_int(args.dim, "--dim")
    else:
        model = _load_model(_model_location(args.model), args, {})
    try:
        idx = Index.create(_path(args.path, engine), model, dim=args.dim, engine=engine,
                           exist_ok=args.exist_ok, **options)
    except FileExistsError as err:
        raise FileExistsError(f"{err} (siamtext index create --exist-ok opens it)") from None
    with idx:
        print(json.dumps(_jsonable(idx.info())))
    return 0


def _add(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from siamtext.corpus import open_source, read_embeddings
    from siamtext.validation import check_positive_int

    check_positive_int(args.chunk_size, "--chunk-size")
    if args.file is None and args.embeddings is None:
        raise ValueError("add needs FILE (texts), --embeddings, or both")
    if args.file is None and (args.id_column or args.label_column):
        raise ValueError("--id-column and --label-column are columns of FILE: pass FILE")
    source = open_source(args.file, args.column, args.split, args.config) if args.file \
        else None
    extra = [c for c in (args.id_column, args.label_column) if c]
    if extra and getattr(source, "format", None) not in ("csv", "tsv", "jsonl", "parquet"):
        raise ValueError("--id-column and --label-column need a .csv, .tsv, .jsonl or "
                         f".parquet FILE, got {args.file!r}")
    vectors = read_embeddings(args.embeddings) if args.embeddings else None
    total = len(source) if source is not None else len(vectors)
    if vectors is not None and len(vectors) != total:
        raise ValueError(f"--embeddings has {len(vectors)} rows but {args.file} has {total}")
    idx = _open(args, writable=True, need_model=vectors is None)
    added = 0
    try:
        rows = _records(source, args, extra) if source is not None else \
            ({"text": None} for _ in range(total))
        write = idx.upsert if args.upsert else idx.add
        with tqdm(total=total, unit="row", unit_scale=True, desc="Adding",
                  disable=args.no_progress) as bar:
            for start, chunk in _chunks(rows, args.chunk_size):
                texts = [r["text"] for r in chunk]
                write(None if texts[0] is None else texts,
                      embeddings=None if vectors is None else
                      vectors[start:start + len(chunk)],
                      ids=[r["id"] for r in chunk] if args.id_column else None,
                      labels=[r["label"] for r in chunk] if args.label_column else None,
                      show_progress=False)
                added += len(chunk)
                bar.update(len(chunk))
        print(f"{args.file or args.embeddings} -> {args.path}: {added} items "
              f"{'upserted' if args.upsert else 'added'}, {len(idx)} stored", file=sys.stderr)
    except BaseException:
        if added:
            print(f"siamtext index add: the first {added} rows were stored before the error",
                  file=sys.stderr)
        raise
    finally:
        idx.close()
    return 0


def _search(args: argparse.Namespace) -> int:
    from siamtext.validation import check_positive_int

    check_positive_int(args.k, "-k")
    _check_threshold(args.threshold)
    where = _where(args.where)
    idx = _open(args, writable=False, need_model=True)
    try:
        results = idx.search(list(args.queries), k=args.k, threshold=args.threshold,
                             where=where)
    finally:
        idx.close()
    for query, hits in zip(args.queries, results):
        if args.json:
            print(json.dumps({"query": query, "hits": [h.to_dict() for h in hits]},
                             ensure_ascii=False))
            continue
        print(f"# {query}")
        for h in hits:
            label = "" if h.label is None else f"\t[{h.label}]"
            print(f"{h.score:.4f}\t{h.id}\t{h.text if h.text is not None else ''}{label}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from siamtext.corpus import open_source
    from siamtext.validation import check_positive_int

    check_positive_int(args.k, "-k")
    check_positive_int(args.chunk_size, "--chunk-size")
    _check_threshold(args.threshold)
    where = _where(args.where)
    source = open_source(args.file, args.column)
    if args.output and Path(args.output).exists():
        raise FileExistsError(f"output {args.output} exists; remove it or choose another")
    idx = _open(args, writable=False, need_model=True)
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        with tqdm(total=len(source), unit="row", unit_scale=True, desc="Checking",
                  disable=args.no_progress) as bar:
            for start, texts in _chunks(iter(source), args.chunk_size):
                hits = idx.search(texts, k=args.k, threshold=args.threshold, where=where)
                for row, (text, found) in enumerate(zip(texts, hits), start):
                    out.write(json.dumps({"row": row, "text": text,
                                          "matches": [h.to_dict() for h in found]},
                                         ensure_ascii=False) + "\n")
                out.flush()
                bar.update(len(texts))
    finally:
        idx.close()
        if out is not sys.stdout:
            out.close()
    return 0


def _remove(args: argparse.Namespace) -> int:
    idx = _open(args, writable=True, need_model=False)
    try:
        removed = idx.remove(args.ids, missing_ok=args.missing_ok)
        print(json.dumps({"removed": removed, "items": len(idx)}))
    finally:
        idx.close()
    return 0


def _info(args: argparse.Namespace) -> int:
    idx = _open(args, writable=False, need_model=False)
    try:
        print(json.dumps(_jsonable(idx.info()), ensure_ascii=False))
    finally:
        idx.close()
    return 0


# --------------------------------------------------------------------------- helpers
def _engine(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    engine = args.engine
    if engine == "auto":
        milvus = args.path.endswith(".db") or args.path.startswith(("http://", "https://"))
        engine = "milvus" if milvus else "local"
    if args.collection is not None and engine != "milvus":
        raise ValueError("--collection names a Milvus collection: it needs --engine milvus "
                         "(or a .db / http:// PATH)")
    return engine, ({"collection": args.collection} if args.collection else {})


def _path(path: str, engine: str) -> str | Path:
    return Path(path) if engine == "local" else path


def _open(args: argparse.Namespace, writable: bool, need_model: bool):
    """The collection at ``args.path`` with its encoder attached when ``need_model``."""
    from siamtext.index import Index
    from siamtext.index import fingerprint as fp

    engine, options = _engine(args)
    if need_model:
        from siamtext.validation import check_positive_int

        check_positive_int(args.batch_size, "--batch-size")
    idx = Index.open(_path(args.path, engine), None, readonly=not writable, engine=engine,
                     **options)
    if not need_model:
        return idx
    try:
        stored = idx.fingerprint
        if stored is None:
            raise ValueError(f"{args.path} holds vectors given by the user (it was created "
                             "with --dim): add them with --embeddings, search it from Python")
        location = _model_location(args.model) if args.model else stored.get("model")
        model = _load_model(location, args, stored)
        diff = fp.differences(stored, fp.fingerprint(model, idx.precision))
        if diff:
            raise ValueError(f"{args.path} was filled by encoder {stored.get('model')!r}, "
                             f"not by the one at {location!r}: {'; '.join(diff)}")
        idx.model, idx.batch_size = model, args.batch_size
        return idx
    except BaseException:
        idx.close()
        raise


def _model_location(model: str) -> str:
    """A local folder as an absolute path (so it reloads from any directory), else as given
    (a Hub id)."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


def _load_model(location: str, args: argparse.Namespace, stored: dict[str, Any]):
    from siamtext.cli.backend import model_kwargs
    from siamtext.model import SiamText

    if args.backend == "torch" and args.file_name is None and stored.get("backend") not in \
            (None, "torch"):  # reload an exported model the way it was used
        args.backend, args.file_name = stored["backend"], stored.get("file_name")
    return SiamText(location, **model_kwargs(args))


def _records(source: Any, args: argparse.Namespace, extra: list[str]) -> Iterator[dict]:
    """``{"text", "id", "label"}`` per row of ``source``; ``id``/``label`` from their columns
    (read with their JSON or parquet types: a csv cell is a string)."""
    if not extra:
        yield from ({"text": t, "id": None, "label": None} for t in source)
        return
    for n, row in enumerate(_raw_rows(source, [args.column, *extra])):
        text = row.get(args.column)
        yield {"text": text if isinstance(text, str) else "",
               "id": _id(row.get(args.id_column), n) if args.id_column else None,
               "label": _label(row.get(args.label_column), n) if args.label_column else None}


def _raw_rows(source: Any, columns: list[str]) -> Iterator[dict]:
    import csv

    path = Path(source.path)
    for column in columns:
        if column != source.column:
            type(source)(path, column)  # the same check as the text column: named, early
    if source.format in ("csv", "tsv"):
        with path.open(encoding="utf-8", errors="replace", newline="") as f:
            yield from csv.DictReader(f, delimiter="\t" if source.format == "tsv" else ",")
    elif source.format == "jsonl":
        with path.open("rb") as f:
            for line in f:
                if line.strip():
                    try:
                        row = json.loads(line)
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        row = None  # as TextSource reads it: a row with no values
                    yield row if isinstance(row, dict) else {}
    else:
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=8192, columns=columns):
            yield from batch.to_pylist()


def _id(value: object, row: int) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"row {row}: the id column holds {value!r}, not an integer")


def _label(value: object, row: int) -> str | int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"row {row}: the label column holds {value!r}; labels are strings "
                         "or integers")
    return value


def _chunks(rows: Iterator[Any], size: int) -> Iterator[tuple[int, list]]:
    chunk: list = []
    start = 0
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield start, chunk
            start, chunk = start + size, []
    if chunk:
        yield start, chunk


def _check_threshold(threshold: float | None) -> None:
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        raise ValueError(f"--threshold must be a cosine similarity in [-1, 1], got {threshold}")


def _where(text: str | None) -> dict | None:
    if text is None:
        return None
    try:
        where = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"--where must be a JSON object, got {text!r}: {err}") from None
    if not isinstance(where, dict):
        raise ValueError(f"--where must be a JSON object, got {text!r}")
    return where


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
