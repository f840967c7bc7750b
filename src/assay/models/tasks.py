"""Pick the adapter for a loaded model's task."""

from __future__ import annotations

from assay.models.adapter import TaskAdapter
from assay.models.classification import ClassificationAdapter
from assay.models.embedding import EmbeddingAdapter
from assay.models.loading import LoadedModel, Task, load_model
from assay.models.question_answering import QuestionAnsweringAdapter


def adapter_for(loaded: LoadedModel) -> TaskAdapter:
    """The adapter that serves this model's task."""
    if loaded.task is Task.QUESTION_ANSWERING:
        return QuestionAnsweringAdapter(loaded)
    if loaded.task is Task.EMBEDDING:
        return EmbeddingAdapter(loaded)
    return ClassificationAdapter(loaded)


def open_adapter(model_name: str, *, device: str, dtype: str, max_sequence_length: int | None) -> TaskAdapter:
    """Load a model and wrap it in its task's adapter."""
    return adapter_for(
        load_model(model_name, device=device, dtype=dtype, max_sequence_length=max_sequence_length)
    )
