"""Embeddings: ``POST /v1/embeddings`` (OpenAI), ``POST /embed`` (TEI), ``POST /similarity``.

``/v1/embeddings`` takes and answers what OpenAI's API does, so its clients work with
``base_url`` pointed here: ``input`` a string or a list of strings (token arrays are
refused), ``encoding_format`` ``"float"`` or ``"base64"`` (little-endian float32, what the
``openai`` package asks for by default), ``usage.prompt_tokens`` the tokens embedded
(special tokens included, after truncation). ``model`` is accepted and ignored: the answer
names the model served.
"""

from __future__ import annotations

import base64
from typing import Literal

import numpy as np
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from siamtext.serve.embed import embed_texts
from siamtext.serve.errors import ApiError
from siamtext.serve.security import check_request_texts, require
from siamtext.serve.service import Service

router = APIRouter(dependencies=[Depends(require("read"))], tags=["embeddings"])


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: StrictStr | list[StrictStr] = Field(description="A text or a list of texts")
    model: StrictStr | None = Field(None, description="Accepted and ignored")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, description="Must be the model's dimension if given")
    user: StrictStr | None = None


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: Usage


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: StrictStr | list[StrictStr]
    normalize: StrictBool = True
    truncate: StrictBool = True


class SimilarityInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source_sentence: StrictStr
    sentences: list[StrictStr]


class SimilarityRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: SimilarityInputs


def service_of(request: Request) -> Service:
    return request.app.state.service


async def embed_request(request: Request, texts: object, field: str,
                        normalize: bool = True) -> tuple[list[str], np.ndarray, int]:
    """Check ``texts`` against the limits and embed them with the served model."""
    service = service_of(request)
    s = service.settings
    texts = check_request_texts(texts, field, s.max_texts, s.max_chars)
    service.require_ready()
    emb, tokens = await embed_texts(service, service.model, texts, normalize=normalize,
                                    request=request)
    return texts, emb, tokens


@router.post("/v1/embeddings", response_model=EmbeddingsResponse)
async def openai_embeddings(body: EmbeddingsRequest, request: Request) -> EmbeddingsResponse:
    """Embed texts, answered as OpenAI's embeddings API answers."""
    service = service_of(request)
    if body.dimensions is not None and service.model is not None \
            and body.dimensions != service.model.embedding_dim:
        raise ApiError(422, f"dimensions: this model embeds in {service.model.embedding_dim} "
                            f"dimensions, got {body.dimensions}", "dimensions")
    _, emb, tokens = await embed_request(request, body.input, "input",
                                         normalize=bool(service.model.config.normalize)
                                         if service.model is not None else True)
    if body.encoding_format == "base64":
        rows = [base64.b64encode(np.ascontiguousarray(row, dtype="<f4").tobytes()).decode()
                for row in emb]
    else:
        rows = emb.tolist()
    return EmbeddingsResponse(
        data=[EmbeddingData(index=i, embedding=row) for i, row in enumerate(rows)],
        model=service.model_name, usage=Usage(prompt_tokens=tokens, total_tokens=tokens))


@router.post("/embed", response_model=list[list[float]])
async def tei_embed(body: EmbedRequest, request: Request) -> list[list[float]]:
    """Embed texts, answered as text-embeddings-inference does: one row per text."""
    _, emb, _ = await embed_request(request, body.inputs, "inputs", normalize=body.normalize)
    return emb.tolist()


@router.post("/similarity", response_model=list[float])
async def tei_similarity(body: SimilarityRequest, request: Request) -> list[float]:
    """Cosine similarity of ``source_sentence`` to each of ``sentences`` (TEI's route)."""
    service = service_of(request)
    s = service.settings
    check_request_texts(body.inputs.source_sentence, "inputs.source_sentence", 1, s.max_chars)
    check_request_texts(body.inputs.sentences, "inputs.sentences", max(s.max_texts - 1, 1),
                        s.max_chars)
    _, emb, _ = await embed_request(
        request, [body.inputs.source_sentence, *body.inputs.sentences], "inputs")
    return (emb[1:] @ emb[0]).astype(float).tolist()
