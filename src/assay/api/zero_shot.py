"""POST /zero_shot: classify texts into labels chosen per request, with an NLI model of the named group.

Every text is paired with one hypothesis per candidate label ("This example is {label}.") and all pairs go
through the group's queue in one request; scores are those of the transformers zero-shot-classification pipeline.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from assay.api.responses import JSONResponse
from assay.api.schemas import ERROR_RESPONSES, json_body, parse_body
from assay.api.scoring import request_timeout, score
from assay.api.state import ServerState
from assay.config import DEFAULT_CONSUMER_GROUP
from assay.models.adapter import InputKind, Inputs
from assay.models.zero_shot import DEFAULT_HYPOTHESIS_TEMPLATE, ZeroShotOptions


class ZeroShotRequest(BaseModel):
    """Texts and the labels to choose from, as the transformers zero-shot-classification pipeline takes them."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"text": "One day I will see the world.", "candidate_labels": ["travel", "cooking", "dancing"],
                 "consumer_group": "nli"},
                {"text": ["I love football.", "Stocks fell."], "candidate_labels": "sports, finance",
                 "hypothesis_template": "This text is about {}.", "multi_label": True, "consumer_group": "nli"},
            ]
        },
    )

    text: str | list[str] = Field(
        description="One text (the result is one object) or a non-empty list of texts (a list of objects)."
    )
    candidate_labels: str | list[str] = Field(
        description="The labels to score, as a list or as one comma-separated string (split as the pipeline does)."
    )
    hypothesis_template: str = Field(
        DEFAULT_HYPOTHESIS_TEMPLATE, description="The hypothesis for each label; '{}' is replaced by the label."
    )
    multi_label: bool = Field(
        False,
        description="false: labels compete, scores sum to 1 (softmax of the entailment logits across labels). "
        "true: each label scored on its own (softmax of its contradiction and entailment logits).",
    )
    consumer_group: str | None = Field(
        DEFAULT_CONSUMER_GROUP,
        description="The group to serve the request: its model must have an 'entailment' label; absent: primary.",
    )

    @field_validator("text")
    @classmethod
    def _check_text(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("must not be an empty list")
        return value

    @field_validator("candidate_labels")
    @classmethod
    def _check_labels(cls, value: str | list[str]) -> list[str]:
        labels = [label.strip() for label in value.split(",") if label.strip()] if isinstance(value, str) else value
        if not labels:
            raise ValueError("must name at least one label")
        return labels

    @field_validator("hypothesis_template")
    @classmethod
    def _check_template(cls, value: str) -> str:
        try:
            filled = value.format("x")
        except (IndexError, KeyError, ValueError):
            filled = value
        if filled == value:
            raise ValueError("must be a format string with one '{}' where the label goes")
        return value

    @property
    def group(self) -> str:
        return self.consumer_group or DEFAULT_CONSUMER_GROUP

    def inputs(self) -> Inputs:
        texts = [self.text] if isinstance(self.text, str) else self.text
        options = ZeroShotOptions(
            candidate_labels=tuple(self.candidate_labels),
            hypothesis_template=self.hypothesis_template,
            multi_label=self.multi_label,
        )
        return Inputs(kind=InputKind.SINGLE, items=list(texts), options=options)


class ZeroShotResult(BaseModel):
    sequence: str = Field(description="The text.")
    labels: list[str] = Field(description="The candidate labels, best first.")
    scores: list[float] = Field(description="Each label's score, in the order of labels.")


class ZeroShotResponse(BaseModel):
    result: ZeroShotResult | list[ZeroShotResult] = Field(
        description="One object for a string text, a list in text order for a list (as the pipeline returns)."
    )


def zero_shot_router(state: ServerState) -> APIRouter:
    router = APIRouter()

    @router.post(
        "/zero_shot",
        response_model=ZeroShotResponse,
        responses={**ERROR_RESPONSES},
        summary="Zero-shot classification with an NLI model",
        openapi_extra=json_body(ZeroShotRequest),
    )
    async def zero_shot(request: Request, timeout: float | None = Depends(request_timeout)) -> JSONResponse:
        """Score candidate labels for each text. A group whose model has no 'entailment' label gets 422."""
        body = parse_body(await request.body(), ZeroShotRequest)
        inputs = body.inputs()
        sequences = len(inputs.items) * len(body.candidate_labels)
        scored, headers = await score(request, state, body.group, inputs, timeout, sequences=sequences)
        result: Any = scored.results[0] if isinstance(body.text, str) else scored.results
        return JSONResponse({"result": result}, headers=headers)

    return router
