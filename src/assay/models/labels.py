"""Label names with probabilities for classification logits: what /classify returns with ``return: labels``.

Probabilities follow how the model was trained: softmax across labels for single-label models, an independent
sigmoid per label for multi-label models and for one-logit models (cross-encoders, binary heads), as the
``transformers`` text-classification pipeline does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class LabelOptions:
    """Ask the classification adapter for named, normalized labels instead of raw logits."""

    #: What these options ask for, in words (for the error a task that cannot do it raises).
    purpose: ClassVar[str] = "return labels with probabilities (return: labels)"
    #: Keep the k best labels per input; None keeps every label.
    top_k: int | None = None


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Computed in float64 so large negative logits do not overflow."""
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = np.asarray(x, dtype=np.float64) - np.max(x, axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def uses_sigmoid(problem_type: str | None, num_labels: int) -> bool:
    """Multi-label heads and one-logit heads score each label on its own; others compete in a softmax."""
    return problem_type == "multi_label_classification" or num_labels == 1


def label_name(id2label: dict[int, str], index: int) -> str:
    """The label's name, or transformers' default name for an id the config does not name."""
    return id2label.get(index, f"LABEL_{index}")


def label_scores(
    logits: np.ndarray, id2label: dict[int, str], *, independent: bool, top_k: int | None
) -> list[dict[str, Any]]:
    """``[{"label", "score"}, ...]`` for one input's logits, best first, cut to ``top_k``."""
    scores = sigmoid(logits) if independent else softmax(logits)
    order = np.argsort(-scores, kind="stable")[:top_k]
    return [{"label": label_name(id2label, int(i)), "score": float(scores[i])} for i in order]
