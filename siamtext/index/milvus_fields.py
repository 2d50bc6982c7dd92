"""How siamtext items are stored in a Milvus collection: labels JSON-encoded, rows read back
as :class:`~siamtext.index.base.Item` and :class:`~siamtext.index.base.Hit`, and ``where``
filters written as Milvus boolean expressions (used by :mod:`siamtext.index.milvus`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from siamtext.index.base import ITEM_FIELDS, Hit, Item, Label


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
        return encode_label(int(value)) if value.is_integer() else _IMPOSSIBLE
    return encode_label(value)


def _literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _string(value)
    return repr(value)  # int, or a finite float (checked by check_where)


def _string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def encode_label(label: Label | None) -> str | None:
    return None if label is None else json.dumps(label, ensure_ascii=False)


def decode_label(stored: str | None) -> Label | None:
    return None if stored is None else json.loads(stored)


def to_item(row: dict, with_embeddings: bool) -> Item:
    vector = None
    if with_embeddings:
        vector = np.asarray(row["vector"], dtype=np.float32)
    return Item(id=int(row["id"]), text=row.get("text"), label=decode_label(row.get("label")),
                metadata=row.get("metadata"), embedding=vector)


def to_hit(h: Any) -> Hit:
    entity = h.get("entity", {}) if isinstance(h, dict) else h.entity
    get = entity.get if isinstance(entity, dict) else (lambda k: getattr(entity, k, None))
    return Hit(id=int(h["id"]), score=float(h["distance"]), text=get("text"),
               label=decode_label(get("label")), metadata=get("metadata"))


def int_list(ids: list[int]) -> str:
    return "[" + ", ".join(str(int(i)) for i in ids) + "]"


def chunks(values: list, size: int) -> Iterator[list]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def check_size(value: str | None, most: int, name: str, item_id: int) -> None:
    if value is not None and len(value.encode("utf-8")) > most:
        raise ValueError(f"item {item_id}: its {name} is {len(value.encode('utf-8'))} bytes, "
                         f"above Milvus's limit of {most}: nothing was written")
