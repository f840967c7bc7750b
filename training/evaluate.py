"""Held-out evaluation through Assay's own serving path: load_model, the task adapter, padded batches.

What is measured is what the server answers, not what the training loop's model says.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from assay.models.adapter import Features, InputKind, Inputs, TaskAdapter, pad_batch
from assay.models.classification import ClassificationAdapter
from assay.models.loading import load_model
from assay.models.question_answering import QuestionAnsweringAdapter
from training.datasets import Labelled, Question


def run_features(adapter: TaskAdapter, features: Features, max_batch_tokens: int = 8192) -> list[np.ndarray]:
    """Every feature through ``adapter.forward`` in length-sorted token-budget batches, outputs in order."""
    order = sorted(range(len(features.input_ids)), key=lambda i: len(features.input_ids[i]))
    outputs: list[Any] = [None] * len(order)
    types = features.token_type_ids
    start = 0
    with torch.inference_mode():
        while start < len(order):
            end = start + 1
            while end < len(order) and len(features.input_ids[order[end]]) * (end - start + 1) <= max_batch_tokens:
                end += 1
            chunk = order[start:end]
            padded = pad_batch([features.input_ids[i] for i in chunk],
                               [types[i] for i in chunk] if types is not None else None,
                               adapter.pad_token_id, adapter.loaded.device)  # type: ignore[attr-defined]
            for i, out in zip(chunk, adapter.forward(padded), strict=True):
                outputs[i] = out
            start = end
    return outputs


def classification_accuracy(folder: str, data: Labelled, dtype: str) -> float:
    adapter = ClassificationAdapter(load_model(folder, dtype=dtype))
    if data.pairs is None:
        inputs = Inputs(InputKind.SINGLE, list(data.texts))
    else:
        inputs = Inputs(InputKind.PAIRS, list(zip(data.texts, data.pairs, strict=True)))
    logits = run_features(adapter, adapter.encode(inputs))
    predictions = np.argmax(np.stack(logits), axis=1)
    return float(np.mean(predictions == np.asarray(data.labels)))


def qa_answers(folder: str, questions: Sequence[Question], dtype: str) -> list[str]:
    adapter = QuestionAnsweringAdapter(load_model(folder, dtype=dtype))
    inputs = Inputs(InputKind.PAIRS, [(q.question, q.context) for q in questions])
    features = adapter.encode(inputs)
    return adapter.decode(inputs, features, run_features(adapter, features))


def normalize_answer(text: str) -> str:
    """SQuAD's normalization: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def f1(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Sequence[str], questions: Sequence[Question]) -> dict[str, float]:
    """SQuAD v1.1 exact match and F1 (best over the gold answers), in [0, 1]."""
    ems = [max(float(normalize_answer(p) == normalize_answer(g)) for g in q.answers)
           for p, q in zip(predictions, questions, strict=True)]
    f1s = [max(f1(p, g) for g in q.answers) for p, q in zip(predictions, questions, strict=True)]
    return {"exact_match": float(np.mean(ems)), "f1": float(np.mean(f1s)), "questions": len(questions)}
