"""Duplicates over the index: check texts against it, store items, delete them.

``POST /duplicates/check`` embeds the texts through the batcher and searches the index:
each text gets its ``k`` nearest stored items with their cosine scores, and ``duplicates``,
those at or above the threshold. ``POST /duplicates`` stores items; the index makes them
durable before it returns, so a 201 means they survive a crash. Writes run one at a time.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from siamtext.serve.embed import embed_texts
from siamtext.serve.errors import ApiError
from siamtext.serve.routes.embeddings import service_of
from siamtext.serve.security import check_k, check_request_texts, require

router = APIRouter(tags=["duplicates"])
_INT64 = 2**63 - 1

Scalar = StrictStr | StrictInt | float | bool | None


class CheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: StrictStr | list[StrictStr]
    k: int = Field(5, ge=1, description="Nearest stored items returned per text")
    threshold: float | None = Field(None, ge=-1, le=1,
                                    description="Duplicate at or above this cosine "
                                                "(default: the server's)")
    where: dict[str, Scalar | list[Scalar]] | None = Field(
        None, description="Only items whose label or metadata fields have these values")


class HitOut(BaseModel):
    id: int
    score: float
    text: str | None = None
    label: StrictStr | StrictInt | None = None
    metadata: dict[str, Any] | None = None


class CheckResult(BaseModel):
    text: str
    is_duplicate: bool
    duplicates: list[HitOut]
    nearest: list[HitOut]


class CheckResponse(BaseModel):
    threshold: float
    results: list[CheckResult]


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: StrictStr
    id: int | None = Field(None, ge=-_INT64 - 1, le=_INT64)
    label: StrictStr | StrictInt | None = None
    metadata: dict[str, Any] | None = None


class AddRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[ItemIn]


class AddResponse(BaseModel):
    ids: list[int]
    items: int


class DeleteResponse(BaseModel):
    deleted: int
    items: int


def _encoder(service, index):
    return index.model if index.model is not None else service.model


@router.post("/duplicates/check", response_model=CheckResponse,
             dependencies=[Depends(require("read"))])
async def check(body: CheckRequest, request: Request) -> CheckResponse:
    """The stored items nearest each text, and those at or above the threshold."""
    service = service_of(request)
    s = service.settings
    texts = check_request_texts(body.texts, "texts", s.max_texts, s.max_chars)
    check_k(body.k, s.max_k)
    index = service.require_index()
    threshold = s.duplicate_threshold if body.threshold is None else body.threshold
    emb, _ = await embed_texts(service, _encoder(service, index), texts,
                               request=request)
    if service.index_readonly:  # catch up with what the writing process stored
        await service.offload(index.refresh)
    try:
        hits = await service.offload(index.search, emb, body.k, None, body.where)
    except (TypeError, ValueError) as err:
        raise ApiError(422, f"where: {err}", "where") from None
    results = []
    for text, row in zip(texts, hits):
        nearest = [HitOut(**h.to_dict()) for h in row]
        dup = [h for h in nearest if h.score >= threshold]
        results.append(CheckResult(text=text, is_duplicate=bool(dup), duplicates=dup,
                                   nearest=nearest))
    return CheckResponse(threshold=threshold, results=results)


@router.post("/duplicates", response_model=AddResponse, status_code=201,
             dependencies=[Depends(require("write"))])
async def add(body: AddRequest, request: Request) -> AddResponse:
    """Store items; they are durable and searchable when this answers 201."""
    service = service_of(request)
    s = service.settings
    texts = check_request_texts([i.text for i in body.items], "items", s.max_texts, s.max_chars)
    given = [i.id is not None for i in body.items]
    if any(given) and not all(given):
        raise ApiError(422, "items: give an id to every item or to none", "items")
    ids = [i.id for i in body.items] if all(given) else None
    index = service.require_index()
    emb, _ = await embed_texts(service, _encoder(service, index), texts,
                               request=request)
    labels = [i.label for i in body.items]
    metadata = [i.metadata for i in body.items]
    async with service.write_lock:
        try:
            out = await service.offload(index.add, texts, embeddings=emb, ids=ids,
                                          labels=labels, metadata=metadata)
        except ValueError as err:
            status = 409 if "already stored" in str(err) or "repeated" in str(err) else 422
            raise ApiError(status, str(err), "items") from None
        except TypeError as err:
            raise ApiError(422, str(err), "items") from None
        except PermissionError:
            raise ApiError(403, "this server's index is read-only") from None
    return AddResponse(ids=out, items=service.index_items())


@router.get("/duplicates/{item_id}", response_model=HitOut,
            dependencies=[Depends(require("read"))])
async def get(request: Request,
              item_id: int = Path(ge=-_INT64 - 1, le=_INT64)) -> HitOut:
    """One stored item (its score is 1)."""
    service = service_of(request)
    index = service.require_index()
    try:
        item = await service.offload(index.get, item_id)
    except KeyError:
        raise ApiError(404, f"no item has id {item_id}", "item_id") from None
    return HitOut(id=item.id, score=1.0, text=item.text, label=item.label,
                  metadata=item.metadata)


@router.delete("/duplicates/{item_id}", response_model=DeleteResponse,
               dependencies=[Depends(require("write"))])
async def delete(request: Request,
                 item_id: int = Path(ge=-_INT64 - 1, le=_INT64)) -> DeleteResponse:
    """Delete a stored item; 404 if there is none with this id."""
    service = service_of(request)
    index = service.require_index()
    async with service.write_lock:
        try:
            await service.offload(index.remove, item_id)
        except KeyError:
            raise ApiError(404, f"no item has id {item_id}", "item_id") from None
        except PermissionError:
            raise ApiError(403, "this server's index is read-only") from None
    return DeleteResponse(deleted=item_id, items=service.index_items())
