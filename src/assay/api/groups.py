"""GET /groups: the consumer groups of the inference port, read-only, with what each model can be asked for.

What a client (the playground) needs to offer the right form per group; no reader ids and nothing to manage,
which stays on the management port.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from assay.api.state import ServerState
from assay.engine.group import GroupSummary


class GroupInfo(BaseModel):
    """One consumer group: its model, task and precision, whether it serves, and what it accepts."""

    name: str = Field(description="The group's name: what requests send as consumer_group (or model for /rerank).")
    model_name: str = Field(description="The model the group serves (folder or hub id).")
    task: str | None = Field(
        description="classification or question_answering (embedding where served); null until the model is loaded."
    )
    dtype: str = Field(description="The precision the group runs in (float32, bfloat16, float16).")
    status: str = Field(
        description="ready when a reader serves; else its readers' best status: loading, stopping, dead, failed, "
        "stopped."
    )
    readers: int = Field(description="Readers in the group.")
    ready_readers: int = Field(description="Readers of the group that serve.")
    max_sequence_length: int | None = Field(description="Longest sequence in tokens; null until loaded if unset.")
    error: str | None = Field(description="Why the group cannot serve (a reader's load or crash error), if it cannot.")
    num_labels: int | None = Field(description="Classification models: how many labels the head has.")
    labels: list[str] | None = Field(description="Classification models: the label names, in id order (id2label).")
    reranker: bool = Field(description="One output logit: a cross-encoder that /rerank accepts.")
    zero_shot: bool = Field(description="An entailment label: an NLI model that /zero_shot accepts.")

    @classmethod
    def of(cls, summary: GroupSummary) -> GroupInfo:
        capabilities = summary.capabilities
        return cls(
            name=summary.name,
            model_name=summary.model_name,
            task=summary.task,
            dtype=summary.dtype,
            status=summary.status,
            readers=summary.readers,
            ready_readers=summary.ready_readers,
            max_sequence_length=summary.max_sequence_length,
            error=summary.error,
            num_labels=capabilities.num_labels,
            labels=list(capabilities.labels) if capabilities.labels is not None else None,
            reranker=capabilities.reranker,
            zero_shot=capabilities.zero_shot,
        )


class GroupsResponse(BaseModel):
    groups: list[GroupInfo] = Field(description="Every consumer group with a reader, by name.")


def groups_router(state: ServerState) -> APIRouter:
    router = APIRouter()

    @router.get("/groups", response_model=GroupsResponse, summary="Consumer groups and what their models do")
    async def groups() -> GroupsResponse:
        """Each group's model, task, dtype and status, and for classification models their labels and whether
        /rerank (one logit) and /zero_shot (an entailment label) accept them. Read-only."""
        return GroupsResponse(groups=[GroupInfo.of(summary) for summary in state.registry.group_summaries()])

    return router
