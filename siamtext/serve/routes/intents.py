"""Live intents: predict, add a class or examples, remove a class, list the classes.

Predictions embed through the batcher and score with the classifier's public methods
(``top_k``, ``similarity``, ``decision_threshold``); an input whose best similarity is under
the decision threshold is out of scope and gets the classifier's ``unknown_label``. Changes
(``add_examples``, ``remove_class``) are live for the next request and durable before the
answer, so a 2xx survives a crash: a classifier kept in a collection of examples stores each
change as an increment; one loaded from a saved folder is written back to it (``save``,
which replaces the folder only once the new one is whole; slower: it copies the encoder).
Changes run one at a time.
"""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from siamtext.serve.embed import embed_texts
from siamtext.serve.errors import ApiError
from siamtext.serve.routes.embeddings import service_of
from siamtext.serve.security import check_k, check_request_texts, require
from siamtext.serve.service import Service

router = APIRouter(tags=["intents"])


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: StrictStr | list[StrictStr]
    k: int = Field(3, ge=1, description="Most likely classes returned per text")


class Candidate(BaseModel):
    label: str | int
    probability: float


class Prediction(BaseModel):
    text: str
    label: str | int
    score: float = Field(description="Best cosine similarity to the stored classes")
    out_of_scope: bool
    top: list[Candidate]


class PredictResponse(BaseModel):
    threshold: float | None
    unknown_label: str | int
    results: list[Prediction]


class ExamplesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: StrictStr | list[StrictStr]


class ClassesResponse(BaseModel):
    classes: list[str | int]
    counts: list[int]
    threshold: float | None
    unknown_label: str | int


class ChangeResponse(BaseModel):
    label: str | int
    added: int = 0
    classes: int


def _encoder(service: Service):
    clf = service.intents
    return clf.model if clf.model is not None else service.model


def _label(service: Service, label: str) -> str | int:
    """The path's label as the classifier's type (int classes take digits)."""
    clf = service.intents
    if hasattr(clf, "classes_") and len(clf.classes_) and isinstance(
            clf.classes_.tolist()[0], int):
        try:
            return int(label)
        except ValueError:
            raise ApiError(404, f"no class {label!r}: this classifier's labels are integers",
                           "label") from None
    return label


@router.get("/intents", response_model=ClassesResponse, dependencies=[Depends(require("read"))])
async def classes(request: Request) -> ClassesResponse:
    """The classes and how many examples each holds."""
    service = service_of(request)
    clf = service.require_intents()
    if not hasattr(clf, "classes_"):
        names, counts = [], []
    else:
        names = clf.classes_.tolist()
        counts = np.bincount(clf.example_classes_.cpu().numpy(),
                             minlength=len(names)).tolist()
    return ClassesResponse(classes=names, counts=counts, threshold=clf.decision_threshold,
                           unknown_label=clf.unknown_label)


@router.post("/intents/predict", response_model=PredictResponse,
             dependencies=[Depends(require("read"))])
async def predict(body: PredictRequest, request: Request) -> PredictResponse:
    """Each text's intent, its score, the top-``k`` classes and whether it is out of scope."""
    service = service_of(request)
    s = service.settings
    texts = check_request_texts(body.texts, "texts", s.max_texts, s.max_chars)
    check_k(body.k, s.max_k)
    clf = service.require_intents()
    if not hasattr(clf, "classes_"):
        raise ApiError(409, "the classifier has no class yet: add one with "
                            "POST /intents/{label}/examples")
    if clf.first_pass is not None:  # a cascade needs the texts themselves
        X: object = texts
    else:
        X, _ = await embed_texts(service, _encoder(service), texts, request=request)

    def score() -> tuple:
        labels, probas = clf.top_k(X, body.k)
        return labels, probas, clf.similarity(X), clf.decision_threshold

    labels, probas, best, threshold = await service.offload(score)
    results = []
    for i, text in enumerate(texts):
        out = threshold is not None and float(best[i]) < threshold
        top = [Candidate(label=lab, probability=float(p))
               for lab, p in zip(labels[i].tolist(), probas[i].tolist())]
        results.append(Prediction(text=text, label=clf.unknown_label if out else top[0].label,
                                  score=float(best[i]), out_of_scope=out, top=top))
    return PredictResponse(threshold=threshold, unknown_label=clf.unknown_label,
                           results=results)


@router.post("/intents/{label}/examples", response_model=ChangeResponse, status_code=201,
             dependencies=[Depends(require("write"))])
async def add_examples(body: ExamplesRequest, request: Request,
                       label: str = PathParam(min_length=1, max_length=200)) -> ChangeResponse:
    """Add examples to a class, or a new class; live at once, durable before the answer."""
    service = service_of(request)
    s = service.settings
    texts = check_request_texts(body.texts, "texts", s.max_texts, s.max_chars)
    clf = service.require_intents()
    value = _label(service, label)
    if value == clf.unknown_label:
        raise ApiError(422, f"label: {label!r} is the label of out-of-scope answers", "label")
    emb, _ = await embed_texts(service, _encoder(service), texts, request=request)
    X = texts if clf.first_pass is not None else emb
    async with service.write_lock:
        try:
            await service.offload(_change, service, lambda: clf.add_examples(X, value))
        except (TypeError, ValueError) as err:
            raise ApiError(422, f"label: {err}", "label") from None
    return ChangeResponse(label=value, added=len(texts), classes=service.intent_classes())


@router.delete("/intents/{label}", response_model=ChangeResponse,
               dependencies=[Depends(require("write"))])
async def remove_class(request: Request, label: str = PathParam(min_length=1)
                       ) -> ChangeResponse:
    """Forget a class and its examples; 404 for a class that is not stored."""
    service = service_of(request)
    clf = service.require_intents()
    value = _label(service, label)
    names = clf.classes_.tolist() if hasattr(clf, "classes_") else []
    if value not in names:
        raise ApiError(404, f"no class {label!r} ({len(names)} classes)", "label")
    if len(names) == 1:
        raise ApiError(409, f"{label!r} is the only class: add another before removing it",
                       "label")
    async with service.write_lock:
        try:
            await service.offload(_change, service, lambda: clf.remove_class(value))
        except ValueError as err:
            raise ApiError(404, str(err), "label") from None
    return ChangeResponse(label=value, classes=service.intent_classes())


def _change(service: Service, change) -> None:
    """Apply a change to the classifier and write it to its folder (if it has one)."""
    change()
    if service.intents_path is not None:
        service.intents.save(service.intents_path)
