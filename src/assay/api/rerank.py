"""POST /rerank, /v1/rerank and /v2/rerank: one query against many documents, in the shapes of Cohere, Jina and
text-embeddings-inference (TEI), so that their clients work with only the base URL changed.

The body says which shape to answer in: ``documents`` (Cohere, Jina) gets ``{"id", "results": [...], "meta"}``,
Cohere's v1 shape on /rerank and /v1/rerank and its v2 shape on /v2/rerank; ``texts`` (TEI) gets TEI's bare list
``[{"index", "score", "text"?}]``. Every (query, document) pair goes through the group's queue like /classify,
scored by a cross-encoder or, in an embedding group, by the cosine of the two embeddings.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from assay.api.errors import request_id
from assay.api.responses import JSONResponse
from assay.api.schemas import ERROR_RESPONSES, json_body, parse_body
from assay.api.scoring import request_timeout, score
from assay.api.state import ServerState
from assay.config import DEFAULT_CONSUMER_GROUP
from assay.errors import InvalidInput, TooLarge
from assay.models.adapter import InputKind, Inputs
from assay.models.rerank import RerankOptions


class RerankStyle(str, Enum):
    """Whose response shape to answer in."""

    COHERE_V1 = "cohere-v1"
    COHERE_V2 = "cohere-v2"
    TEI = "tei"


class RerankDocument(BaseModel):
    """A document as an object (Cohere v1, Jina): ``text`` is ranked, every other key comes back untouched."""

    model_config = ConfigDict(extra="allow")

    text: str = Field(description="The text ranked against the query.")


class RerankRequest(BaseModel):
    """Cohere / Jina (``documents``) or text-embeddings-inference (``texts``) rerank body."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"model": "rerank", "query": "What colour is the dog?", "top_n": 2, "return_documents": True,
                 "documents": ["The puppy is light blue.", "Space is very big.", {"text": "Dogs bark."}]},
                {"query": "What colour is the dog?", "texts": ["The puppy is light blue.", "Space is very big."],
                 "raw_scores": False, "return_text": True, "consumer_group": "rerank"},
            ]
        },
    )

    query: str = Field(description="The query every document is scored against.")
    documents: list[str | RerankDocument] | None = Field(
        None, min_length=1, description="Cohere / Jina: the documents, as strings or objects with a 'text' key."
    )
    texts: list[str] | None = Field(
        None, min_length=1, description="text-embeddings-inference: the documents as strings (answer: a bare list)."
    )
    model: str | None = Field(
        None, description="The consumer group to serve the request (Cohere's and Jina's model field); absent: primary."
    )
    consumer_group: str | None = Field(None, description="Same as model; send one of them.")
    top_n: int | None = Field(None, ge=1, description="Return only the n best documents (absent: all of them).")
    return_documents: bool | None = Field(
        None, description="With documents: include each document in its result, as sent (default false)."
    )
    return_text: bool | None = Field(None, description="With texts: include each text in its result (default false).")
    raw_scores: bool = Field(
        False,
        description="Return the model's raw logit instead of its sigmoid in [0, 1] (relevance_score / score). No "
        "effect on an embedding group, whose score is a cosine.",
    )
    truncate: bool | None = Field(
        None,
        description="Cut pairs longer than the model's maximum length (named in X-Assay-Truncated). Default: true "
        "with documents (as Cohere and Jina do), false with texts (as TEI does: a too long pair is a 413).",
    )
    chunking: bool = Field(
        False,
        description="Split documents longer than the model's window into overlapping chunks, each scored with the "
        "whole query; a document's score is its best chunk's. Nothing is truncated.",
    )

    def style(self, version: int | None) -> RerankStyle:
        """Which API shape this body speaks, refusing fields of the other shape."""
        if (self.documents is None) == (self.texts is None):
            raise InvalidInput("send the documents either as 'documents' (Cohere, Jina) or as 'texts' (TEI)")
        if self.model and self.consumer_group and self.model != self.consumer_group:
            raise InvalidInput("'model' and 'consumer_group' name different groups; send one of them")
        if self.texts is not None:
            if self.return_documents is not None:
                raise InvalidInput("'return_documents' goes with 'documents'; with 'texts' use 'return_text'")
            return RerankStyle.TEI
        if self.return_text is not None:
            raise InvalidInput("'return_text' goes with 'texts'; with 'documents' use 'return_documents'")
        return RerankStyle.COHERE_V2 if version == 2 else RerankStyle.COHERE_V1

    @property
    def group(self) -> str:
        return self.model or self.consumer_group or DEFAULT_CONSUMER_GROUP

    def document_texts(self) -> list[str]:
        if self.texts is not None:
            return self.texts
        return [doc if isinstance(doc, str) else doc.text for doc in self.documents or []]


class RerankedDocument(BaseModel):
    index: int = Field(description="The document's position in the request.")
    relevance_score: float = Field(
        description="Cross-encoder: sigmoid of the model's logit, in [0, 1] (the logit with raw_scores). Embedding "
        "model: cosine of the query's and the document's embeddings, in [-1, 1]."
    )
    document: dict[str, Any] | None = Field(
        None, description="With return_documents: the document as sent ({'text': ...} for a string)."
    )


class RerankMeta(BaseModel):
    api_version: dict[str, str] = Field(description="{'version': '1'} or {'version': '2'}, as Cohere answers.")


class RerankResponse(BaseModel):
    """Cohere's rerank response (v1 and v2 differ only in meta.api_version); Jina's clients read it too."""

    id: str = Field(description="The request id (also in X-Request-Id).")
    model: str = Field(description="The consumer group that scored the documents.")
    results: list[RerankedDocument] = Field(description="Best first, cut to top_n.")
    meta: RerankMeta


class TEIRank(BaseModel):
    """One entry of text-embeddings-inference's bare-list answer."""

    index: int = Field(description="The text's position in the request.")
    score: float = Field(
        description="Cross-encoder: sigmoid of the model's logit, in [0, 1] (the logit with raw_scores). Embedding "
        "model: cosine of the query's and the text's embeddings, in [-1, 1]."
    )
    text: str | None = Field(None, description="With return_text: the text.")


def ranked(body: RerankRequest, style: RerankStyle, scores: list[float], rid: str) -> Any:
    """The response body: documents best first (ties keep request order), cut to top_n, in the style's shape."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])[: body.top_n]
    if style is RerankStyle.TEI:
        texts = body.texts or []
        return [
            {"index": i, "score": scores[i], **({"text": texts[i]} if body.return_text else {})} for i in order
        ]
    documents = body.documents or []
    results = []
    for i in order:
        result: dict[str, Any] = {"index": i, "relevance_score": scores[i]}
        if body.return_documents:
            doc = documents[i]
            result["document"] = {"text": doc} if isinstance(doc, str) else doc.model_dump()
        results.append(result)
    version = "2" if style is RerankStyle.COHERE_V2 else "1"
    return {"id": rid, "model": body.group, "results": results, "meta": {"api_version": {"version": version}}}


def rerank_router(state: ServerState) -> APIRouter:
    router = APIRouter()

    async def rerank(request: Request, version: int | None, timeout: float | None) -> JSONResponse:
        body = parse_body(await request.body(), RerankRequest)
        style = body.style(version)
        truncate = body.truncate if body.truncate is not None else style is not RerankStyle.TEI
        inputs = Inputs(
            kind=InputKind.PAIRS,
            items=[(body.query, doc) for doc in body.document_texts()],
            options=RerankOptions(raw_scores=body.raw_scores, chunked=body.chunking),
        )
        scored, headers = await score(request, state, body.group, inputs, timeout)
        if scored.truncated and not truncate:
            raise TooLarge(
                f"documents {', '.join(str(i) for i in scored.truncated)} are longer than the model's maximum "
                "length together with the query; send truncate: true or chunking: true"
            )
        return JSONResponse(ranked(body, style, scored.results, request_id(request)), headers=headers)

    common: dict[str, Any] = {
        "responses": {**ERROR_RESPONSES},
        "openapi_extra": json_body(RerankRequest),
        "response_model": RerankResponse | list[TEIRank],
    }
    def route_for(version: int | None) -> Any:
        async def route(request: Request, timeout: float | None = Depends(request_timeout)) -> JSONResponse:
            return await rerank(request, version, timeout)

        shape = "Cohere v2" if version == 2 else "Cohere v1 / Jina"
        route.__doc__ = (
            f"Rank documents by relevance to a query. A body with 'documents' gets the {shape} response; a body "
            "with 'texts' gets text-embeddings-inference's bare list. A cross-encoder scores by the sigmoid of its "
            "logit, an embedding model by the cosine of the query's and the document's embeddings; any other model "
            "(question answering, several labels) is refused with 422."
        )
        return route

    for path, version in {"/rerank": None, "/v1/rerank": 1, "/v2/rerank": 2}.items():
        router.add_api_route(
            path, route_for(version), methods=["POST"], operation_id=f"rerank_{version or 'default'}",
            summary="Rerank documents" + (" (Cohere v2 shape)" if version == 2 else ""), **common,
        )
    return router
