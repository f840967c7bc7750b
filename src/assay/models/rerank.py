"""Reranking: one relevance score per (query, document) pair.

With a cross-encoder the score is the sigmoid of the model's single logit (what Cohere, Jina and
text-embeddings-inference return as relevance), or the raw logit on request; with an embedding model it is the
cosine of the two embeddings (models/embedding.py). Long documents can be split into overlapping chunks, each
scored with the query; a document then scores as its best chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from assay.errors import InvalidInput
from assay.models.labels import sigmoid

#: Tokens shared by neighbouring chunks of a long document, so that no passage is only ever seen cut in two.
CHUNK_OVERLAP = 64


@dataclass(frozen=True)
class RerankOptions:
    """How to score (query, document) pairs."""

    #: What these options ask for, in words (for the error a task that cannot do it raises).
    purpose: ClassVar[str] = "rerank documents"
    #: Return the logit itself instead of its sigmoid (cross-encoders; an embedding model's cosine is never squashed).
    raw_scores: bool = False
    #: Split documents longer than the window into overlapping chunks and keep the best chunk's score.
    chunked: bool = False


def is_reranker(num_labels: int) -> bool:
    """Only one-logit heads are rerankers: a softmax head's columns are not a relevance."""
    return num_labels == 1


def check_reranker(num_labels: int) -> None:
    """InvalidInput, naming the model's label count, unless it is a reranker."""
    if not is_reranker(num_labels):
        raise InvalidInput(
            f"reranking needs a cross-encoder with one output logit; this group's model has {num_labels} labels "
            "(use /classify for it)"
        )


def relevance(chunk_logits: list[np.ndarray], options: RerankOptions) -> float:
    """The best chunk's logit (one chunk unless chunked), as a sigmoid unless raw scores were asked for."""
    best = max(float(logits[0]) for logits in chunk_logits)
    return best if options.raw_scores else float(sigmoid(np.float64(best)))
