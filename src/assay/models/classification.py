"""Sequence classification, reranking and zero-shot: one model head, several ways to read its logits.

Without options a request gets one row of raw logits per text or pair (Takeoff's /classify). The options on
``Inputs`` ask for more: ``LabelOptions`` names and normalizes the labels, ``RerankOptions`` scores
(query, document) pairs as relevance, ``ZeroShotOptions`` builds premise/hypothesis pairs and scores labels.
The queue never sees the difference: every variant is token sequences in, one logits row per sequence out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from assay.errors import InvalidInput
from assay.models.adapter import (
    Capabilities,
    Features,
    InputKind,
    Inputs,
    PaddedBatch,
    features_by_input,
    model_inputs,
)
from assay.models.labels import LabelOptions, label_name, label_scores, uses_sigmoid
from assay.models.loading import LoadedModel
from assay.models.rerank import CHUNK_OVERLAP, RerankOptions, check_reranker, is_reranker, relevance
from assay.models.zero_shot import ZeroShotOptions, hypotheses, is_nli, nli_labels, zero_shot_result


class ClassificationAdapter:
    """Texts or pairs in, raw logits out; pairs are encoded as text/text_pair by the model's tokenizer."""

    task_name = "classification"

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.pad_token_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.uses_token_types = "token_type_ids" in self.tokenizer.model_input_names
        config = loaded.config
        self.id2label: dict[int, str] = {int(k): v for k, v in (config.id2label or {}).items()}
        self.num_labels: int = config.num_labels
        self.independent_labels = uses_sigmoid(getattr(config, "problem_type", None), self.num_labels)

    def capabilities(self) -> Capabilities:
        """Its labels, and whether the rerank and zero-shot endpoints accept it (the same rules as ``check``)."""
        return Capabilities(
            num_labels=self.num_labels,
            labels=tuple(label_name(self.id2label, i) for i in range(self.num_labels)),
            reranker=is_reranker(self.num_labels),
            zero_shot=is_nli(self.id2label),
        )

    def check(self, inputs: Inputs) -> None:
        """Raw logits and labels fit any inputs; reranking needs one logit, zero-shot an entailment label."""
        options = inputs.options
        if options is None or isinstance(options, LabelOptions):
            return
        if isinstance(options, RerankOptions):
            check_reranker(self.num_labels)
        elif isinstance(options, ZeroShotOptions):
            nli_labels(self.id2label)
        else:
            raise InvalidInput(
                f"this consumer group serves a sequence classification model, which cannot {options.purpose}"
            )

    def encode(self, inputs: Inputs) -> Features:
        options = inputs.options
        if isinstance(options, ZeroShotOptions):
            labels = hypotheses(options)
            premises = [text for text in inputs.items for _ in labels]
            # The pipeline truncates the premise only: the hypothesis must stay whole to mean anything.
            features = self._tokenize(premises, labels * len(inputs.items), truncation="only_first")
            features.owner = [i for i in range(len(inputs.items)) for _ in labels]
            features.truncated = sorted({features.owner[f] for f in features.truncated})
            return features
        if inputs.kind is InputKind.PAIRS:
            first = [a for a, _ in inputs.items]
            second = [b for _, b in inputs.items]
        else:
            first, second = list(inputs.items), None
        if isinstance(options, RerankOptions) and options.chunked:
            return self._chunk(first, second or [])
        return self._tokenize(first, second, truncation="longest_first")

    def _tokenize(self, first: list[str], second: list[str] | None, truncation: str) -> Features:
        encoded = self.tokenizer(
            first,
            second,
            truncation=truncation,
            max_length=self.loaded.max_length,
            return_attention_mask=False,
            return_token_type_ids=self.uses_token_types,
        )
        truncated = [i for i, enc in enumerate(encoded.encodings) if enc.overflowing]
        return self._features(encoded, owner=list(range(len(encoded["input_ids"]))), truncated=truncated)

    def _chunk(self, queries: list[str], documents: list[str]) -> Features:
        """Every document cut into overlapping windows, each with the whole query: nothing is truncated."""
        try:
            encoded = self.tokenizer(
                queries,
                documents,
                truncation="only_second",
                max_length=self.loaded.max_length,
                stride=min(CHUNK_OVERLAP, self.loaded.max_length // 4),
                return_overflowing_tokens=True,
                return_attention_mask=False,
                return_token_type_ids=self.uses_token_types,
            )
        except Exception as exc:  # the tokenizer refuses a query that leaves no room for the document
            raise InvalidInput(f"a query is too long to chunk documents in a {self.loaded.max_length}-token window: "
                               f"{exc}") from None
        return self._features(encoded, owner=list(encoded["overflow_to_sample_mapping"]), truncated=[])

    def _features(self, encoded: Any, owner: list[int], truncated: list[int]) -> Features:
        ids = [np.asarray(row, dtype=np.int64) for row in encoded["input_ids"]]
        types = (
            [np.asarray(row, dtype=np.int64) for row in encoded["token_type_ids"]] if self.uses_token_types else None
        )
        return Features(input_ids=ids, token_type_ids=types, owner=owner, truncated=truncated)

    @torch.inference_mode()
    def forward(self, batch: PaddedBatch) -> list[np.ndarray]:
        logits = self.loaded.model(**model_inputs(batch)).logits
        return list(logits.float().cpu().numpy())

    def decode(self, inputs: Inputs, features: Features, outputs: list[np.ndarray]) -> list[Any]:
        options = inputs.options
        if options is None:
            return outputs
        if isinstance(options, LabelOptions):
            return [
                label_scores(row, self.id2label, independent=self.independent_labels, top_k=options.top_k)
                for row in outputs
            ]
        grouped = features_by_input(features.owner, outputs, len(inputs.items))
        if isinstance(options, RerankOptions):
            return [relevance(chunks, options) for chunks in grouped]
        ids = nli_labels(self.id2label)
        return [
            zero_shot_result(text, np.stack(rows), options, ids)
            for text, rows in zip(inputs.items, grouped, strict=True)
        ]
