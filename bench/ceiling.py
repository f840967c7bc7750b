"""The in-process ceiling: the same pairs through the same model and tokenizer, with no HTTP, queue or JSON.

Pairs are tokenized by Assay's own ClassificationAdapter (so truncation and token types match the server),
sorted by length and cut into token-budget batches under the server's limits: the best batching any
server could do with this budget, since it sees the whole workload at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from assay.engine.queue import BatchPolicy, plan_batches
from assay.models.adapter import PAD_MULTIPLE, Features, InputKind, Inputs, pad_for_model, padded_length
from assay.models.classification import ClassificationAdapter
from assay.models.loading import load_model


@dataclass
class CeilingResult:
    """One timed pass over all pairs."""

    #: Pairs scored.
    pairs: int
    #: Wall seconds for tokenizing, padding and forward passes.
    seconds: float
    #: Of which tokenizing.
    tokenize_seconds: float
    #: Forward passes run.
    batches: int
    #: Padded tokens (longest x count, summed over batches).
    padded_tokens: int
    #: Real tokens.
    real_tokens: int

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / self.seconds


def open_adapter(folder: str, dtype: str) -> ClassificationAdapter:
    return ClassificationAdapter(load_model(folder, device="cpu", dtype=dtype, max_sequence_length=None))


def token_budget_batches(lengths: list[int], max_batch_size: int, max_batch_tokens: int) -> list[list[int]]:
    """Indices sorted by length, cut greedily so that longest x count stays within the budget (the longest
    rounded up to ``PAD_MULTIPLE``, as the server pads)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        padded = padded_length(lengths[i], PAD_MULTIPLE) * (len(current) + 1)
        if current and (len(current) >= max_batch_size or padded > max_batch_tokens):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def encode(adapter: ClassificationAdapter, pairs: list[tuple[str, str]]) -> Features:
    return adapter.encode(Inputs(kind=InputKind.PAIRS, items=list(pairs)))


def score_batches(
    adapter: ClassificationAdapter, features: Features, batches: list[list[int]]
) -> tuple[np.ndarray, int]:
    """Logits in input order and the padded tokens, running these batches (indices into ``features``)."""
    types = features.token_type_ids
    out = np.zeros(len(features.input_ids), dtype=np.float32)
    padded_tokens = 0
    with torch.inference_mode():
        for batch in batches:
            padded = pad_for_model(
                adapter,
                [features.input_ids[i] for i in batch],
                [types[i] for i in batch] if types is not None else None,
            )
            padded_tokens += padded.input_ids.numel()
            for i, row in zip(batch, adapter.forward(padded), strict=True):
                out[i] = row[0]
    return out, padded_tokens


def score(
    adapter: ClassificationAdapter, features: Features, max_batch_size: int, max_batch_tokens: int
) -> tuple[np.ndarray, int, int]:
    """Logits in input order, the number of batches and the padded tokens."""
    lengths = [len(ids) for ids in features.input_ids]
    batches = token_budget_batches(lengths, max_batch_size, max_batch_tokens)
    logits, padded_tokens = score_batches(adapter, features, batches)
    return logits, len(batches), padded_tokens


def run(
    adapter: ClassificationAdapter, pairs: list[tuple[str, str]], max_batch_size: int, max_batch_tokens: int
) -> tuple[CeilingResult, np.ndarray]:
    """One timed pass: tokenize everything, then score it in sorted token-budget batches."""
    started = time.perf_counter()
    features = encode(adapter, pairs)
    tokenized = time.perf_counter()
    logits, batches, padded_tokens = score(adapter, features, max_batch_size, max_batch_tokens)
    seconds = time.perf_counter() - started
    real = sum(len(ids) for ids in features.input_ids)
    return CeilingResult(len(pairs), seconds, tokenized - started, batches, padded_tokens, real), logits


def one_request_seconds(adapter: ClassificationAdapter, pairs: list[tuple[str, str]], repeats: int) -> list[float]:
    """Times of one request's pairs as one padded batch (tokenize, pad, forward), as the server would run them."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        features = encode(adapter, pairs)
        padded = pad_for_model(adapter, features.input_ids, features.token_type_ids)
        with torch.inference_mode():
            adapter.forward(padded)
        times.append(time.perf_counter() - started)
    return times


def server_batches_seconds(adapter: ClassificationAdapter, pairs: list[tuple[str, str]], policy: BatchPolicy) -> float:
    """One request's pairs in exactly the batches a reader of an idle server takes (``plan_batches``): tokenize,
    pad, forward. The strictest in-process reference for a lone request: only HTTP, queue and JSON are missing."""
    started = time.perf_counter()
    features = encode(adapter, pairs)
    score_batches(adapter, features, plan_batches([len(ids) for ids in features.input_ids], policy))
    return time.perf_counter() - started
