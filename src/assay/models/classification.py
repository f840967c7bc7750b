"""Sequence classification and cross-encoder reranking: one row of raw logits per text or pair."""

from __future__ import annotations

import numpy as np
import torch

from assay.models.adapter import Features, InputKind, Inputs, PaddedBatch, model_inputs
from assay.models.loading import LoadedModel


class ClassificationAdapter:
    """Texts or pairs in, raw logits out; pairs are encoded as text/text_pair by the model's tokenizer."""

    task_name = "classification"

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.pad_token_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.uses_token_types = "token_type_ids" in self.tokenizer.model_input_names

    def check(self, inputs: Inputs) -> None:
        """Any classification model takes single texts and pairs."""

    def encode(self, inputs: Inputs) -> Features:
        if inputs.kind is InputKind.PAIRS:
            first = [a for a, _ in inputs.items]
            second = [b for _, b in inputs.items]
        else:
            first, second = list(inputs.items), None
        encoded = self.tokenizer(
            first,
            second,
            truncation="longest_first",
            max_length=self.loaded.max_length,
            return_attention_mask=False,
            return_token_type_ids=self.uses_token_types,
        )
        ids = [np.asarray(row, dtype=np.int64) for row in encoded["input_ids"]]
        types = (
            [np.asarray(row, dtype=np.int64) for row in encoded["token_type_ids"]] if self.uses_token_types else None
        )
        truncated = [i for i, enc in enumerate(encoded.encodings) if enc.overflowing]
        return Features(input_ids=ids, token_type_ids=types, owner=list(range(len(ids))), truncated=truncated)

    @torch.inference_mode()
    def forward(self, batch: PaddedBatch) -> list[np.ndarray]:
        logits = self.loaded.model(**model_inputs(batch)).logits
        return list(logits.float().cpu().numpy())

    def decode(self, inputs: Inputs, features: Features, outputs: list[np.ndarray]) -> list[np.ndarray]:
        return outputs
