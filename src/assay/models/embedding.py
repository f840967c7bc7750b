"""Sentence embeddings: texts in, one pooled (and, as the model says, normalized) vector per text out.

The same model scores pairs: both sides are embedded like any other text, batched with the rest, and a pair's
score is the cosine of its two vectors. /classify answers that cosine as a one-value row and /rerank as the
relevance, so an embedding group works as a reranker wherever pairs are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from assay.errors import InvalidInput
from assay.models.adapter import Capabilities, Features, InputKind, Inputs, PaddedBatch, model_inputs
from assay.models.loading import LoadedModel
from assay.models.pooling import sentence_vectors
from assay.models.rerank import CHUNK_OVERLAP, RerankOptions


@dataclass(frozen=True)
class EmbedOptions:
    """Ask for the vectors themselves (/embed, /v1/embeddings); only an embedding model can answer."""

    #: What these options ask for, in words (for the error a task that cannot do it raises).
    purpose: ClassVar[str] = (
        "embed texts (/embed and /v1/embeddings need an embedding model; send this group's inputs to /classify)"
    )
    #: The vector size the client expects (OpenAI's ``dimensions``); None takes the model's own.
    dimensions: int | None = None


@dataclass
class Comparisons:
    """Which features decoding compares: one row per pair, or per (pair, chunk of its document) when chunked.

    A text that occurs several times in a request (a rerank query) is one feature shared by every pair holding
    it; its ``Features.owner`` is the first of them.
    """

    #: The input (pair) each comparison belongs to.
    owner: np.ndarray
    #: Feature index of the pair's first text.
    first: np.ndarray
    #: Feature index of the pair's second text, or of one chunk of it.
    second: np.ndarray


class EmbeddingAdapter:
    """Pools the encoder's token vectors in the forward pass, so every output row is already one vector."""

    task_name = "embedding"

    def __init__(self, loaded: LoadedModel) -> None:
        assert loaded.sentence is not None, "an embedding model is loaded with its sentence config"
        self.loaded = loaded
        self.sentence = loaded.sentence
        self.tokenizer = loaded.tokenizer
        self.pad_token_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.uses_token_types = "token_type_ids" in self.tokenizer.model_input_names
        #: Length of every vector: the hidden size once per pooling mode.
        self.dimensions: int = loaded.config.hidden_size * len(self.sentence.pooling.modes)

    def capabilities(self) -> Capabilities:
        """Pairs score by cosine, so the rerank endpoints take an embedding group too."""
        return Capabilities(reranker=True)

    def check(self, inputs: Inputs) -> None:
        """Vectors of texts (EmbedOptions), or cosines of pairs (/classify, /rerank); nothing else."""
        options = inputs.options
        if isinstance(options, EmbedOptions):
            if options.dimensions is not None and options.dimensions != self.dimensions:
                raise InvalidInput(
                    f"this group's model makes {self.dimensions}-dimensional embeddings; it cannot return "
                    f"{options.dimensions} dimensions"
                )
            return
        if options is not None and not isinstance(options, RerankOptions):
            raise InvalidInput(f"this consumer group serves an embedding model, which cannot {options.purpose}")
        if inputs.kind is not InputKind.PAIRS:
            raise InvalidInput(
                "this consumer group serves an embedding model: embed texts with POST /embed (or /v1/embeddings "
                "on the OpenAI port); /classify takes [a, b] pairs and returns their cosine similarity"
            )

    def encode(self, inputs: Inputs) -> Features:
        if inputs.kind is InputKind.SINGLE:
            ids, types, cut = self._tokenize(list(inputs.items))
            return Features(input_ids=ids, token_type_ids=types, owner=list(range(len(ids))), truncated=cut)
        pairs: list[tuple[str, str]] = inputs.items
        if isinstance(inputs.options, RerankOptions) and inputs.options.chunked:
            return self._encode_chunked(pairs)
        # Each distinct text once: a rerank query is embedded once, not once per document.
        texts = list(dict.fromkeys(text for pair in pairs for text in pair))
        index = {text: i for i, text in enumerate(texts)}
        ids, types, cut = self._tokenize(texts)
        first = np.array([index[a] for a, _ in pairs], dtype=np.int64)
        second = np.array([index[b] for _, b in pairs], dtype=np.int64)
        cut_features = np.zeros(len(texts), dtype=bool)
        cut_features[cut] = True
        truncated = np.flatnonzero(cut_features[first] | cut_features[second]).tolist()
        plan = Comparisons(owner=np.arange(len(pairs)), first=first, second=second)
        return Features(ids, types, owner=_first_owners(plan, len(texts)), truncated=truncated, state=plan)

    def _encode_chunked(self, pairs: list[tuple[str, str]]) -> Features:
        """Documents cut into overlapping windows, each embedded on its own: only a too long query is cut."""
        queries = list(dict.fromkeys(a for a, _ in pairs))
        documents = list(dict.fromkeys(b for _, b in pairs))
        query_ids, query_types, cut = self._tokenize(queries)
        max_length = self.loaded.max_length
        encoded = self.tokenizer(
            [self.sentence.prompt + text for text in documents],
            truncation=True,
            max_length=max_length,
            stride=min(CHUNK_OVERLAP, max_length // 4),
            return_overflowing_tokens=True,
            return_attention_mask=False,
            return_token_type_ids=self.uses_token_types,
        )
        window_ids, window_types = self._arrays(encoded)
        windows_of: list[list[int]] = [[] for _ in documents]
        for window, document in enumerate(encoded["overflow_to_sample_mapping"]):
            windows_of[document].append(len(queries) + window)
        query_index = {text: i for i, text in enumerate(queries)}
        document_index = {text: i for i, text in enumerate(documents)}
        rows = [
            (i, query_index[a], window)
            for i, (a, b) in enumerate(pairs)
            for window in windows_of[document_index[b]]
        ]
        owner, first, second = (np.array(column, dtype=np.int64) for column in zip(*rows, strict=True))
        plan = Comparisons(owner=owner, first=first, second=second)
        cut_queries = set(cut)
        truncated = [i for i, (a, _) in enumerate(pairs) if query_index[a] in cut_queries]
        types = query_types + window_types if query_types is not None and window_types is not None else None
        return Features(
            query_ids + window_ids, types, owner=_first_owners(plan, len(queries) + len(window_ids)),
            truncated=truncated, state=plan,
        )

    def _tokenize(self, texts: list[str]) -> tuple[list[np.ndarray], list[np.ndarray] | None, list[int]]:
        """Token ids (and types) per text, cut at the model's maximum; and which texts were cut."""
        encoded = self.tokenizer(
            [self.sentence.prompt + text for text in texts],
            truncation=True,
            max_length=self.loaded.max_length,
            return_attention_mask=False,
            return_token_type_ids=self.uses_token_types,
        )
        ids, types = self._arrays(encoded)
        return ids, types, [i for i, encoding in enumerate(encoded.encodings) if encoding.overflowing]

    def _arrays(self, encoded: Any) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        ids = [np.asarray(row, dtype=np.int64) for row in encoded["input_ids"]]
        if not self.uses_token_types:
            return ids, None
        return ids, [np.asarray(row, dtype=np.int64) for row in encoded["token_type_ids"]]

    @torch.inference_mode()
    def forward(self, batch: PaddedBatch) -> list[np.ndarray]:
        hidden = self.loaded.model(**model_inputs(batch)).last_hidden_state
        vectors = sentence_vectors(hidden, batch.attention_mask, self.sentence.pooling)
        return list(vectors.cpu().numpy())

    def decode(self, inputs: Inputs, features: Features, outputs: list[np.ndarray]) -> list[Any]:
        if inputs.kind is InputKind.SINGLE:
            return outputs
        plan: Comparisons = features.state
        vectors = np.stack(outputs).astype(np.float64)
        first, second = vectors[plan.first], vectors[plan.second]
        norms = np.linalg.norm(first, axis=1) * np.linalg.norm(second, axis=1)
        cosines = (first * second).sum(axis=1) / np.maximum(norms, 1e-12)
        best = np.full(len(inputs.items), -np.inf)
        np.maximum.at(best, plan.owner, cosines)  # a chunked document scores as its best chunk
        if isinstance(inputs.options, RerankOptions):
            return best.tolist()
        return [[score] for score in best.tolist()]


def _first_owners(plan: Comparisons, count: int) -> list[int]:
    """For each feature, the first input that uses it."""
    owner = np.full(count, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(owner, plan.first, plan.owner)
    np.minimum.at(owner, plan.second, plan.owner)
    return owner.tolist()
