"""Zero-shot classification with an NLI model: every text paired with one hypothesis per candidate label.

The scoring is the ``transformers`` zero-shot-classification pipeline's: with one label per text winning, a
softmax of the entailment logits across the candidate labels; with ``multi_label`` (or a single candidate), a
softmax of [contradiction, entailment] for each label on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from assay.errors import InvalidInput
from assay.models.labels import softmax

DEFAULT_HYPOTHESIS_TEMPLATE = "This example is {}."


@dataclass(frozen=True)
class ZeroShotOptions:
    """The candidate labels and how to turn each into a hypothesis."""

    #: What these options ask for, in words (for the error a task that cannot do it raises).
    purpose: ClassVar[str] = "do zero-shot classification"
    #: Labels to score, in the order given.
    candidate_labels: tuple[str, ...]
    #: A format string with one ``{}`` where the label goes.
    hypothesis_template: str = DEFAULT_HYPOTHESIS_TEMPLATE
    #: Score each label on its own instead of making labels compete.
    multi_label: bool = False


@dataclass(frozen=True)
class NLILabels:
    """Where entailment and contradiction sit in the model's logits."""

    #: Index of the entailment logit.
    entailment: int
    #: Index of the contradiction logit.
    contradiction: int


def nli_labels(id2label: dict[int, str]) -> NLILabels:
    """Find the entailment (and contradiction) logits by label name, case-insensitive, as the pipeline does.

    Without a label starting with "contradict" the pipeline's own rule applies: index 0, or the last index when
    entailment is 0. A model without an entailment label cannot do zero-shot: InvalidInput.
    """
    ordered = sorted(id2label.items())
    entailment = _entailment_index(id2label)
    if entailment is None:
        names = ", ".join(name for _, name in ordered)
        raise InvalidInput(
            f"zero-shot classification needs an NLI model with an 'entailment' label; this model's labels are {names}"
        )
    contradiction = next((i for i, name in ordered if name.lower().startswith("contradict")), None)
    if contradiction is None:
        contradiction = len(ordered) - 1 if entailment == 0 else 0
    return NLILabels(entailment=entailment, contradiction=contradiction)


def is_nli(id2label: dict[int, str]) -> bool:
    """True when the model has an entailment label, so that it can do zero-shot classification."""
    return _entailment_index(id2label) is not None


def _entailment_index(id2label: dict[int, str]) -> int | None:
    return next((i for i, name in sorted(id2label.items()) if name.lower().startswith("entail")), None)


def hypotheses(options: ZeroShotOptions) -> list[str]:
    """One hypothesis per candidate label, in label order."""
    return [options.hypothesis_template.format(label) for label in options.candidate_labels]


def zero_shot_result(sequence: str, logits: np.ndarray, options: ZeroShotOptions, ids: NLILabels) -> dict[str, Any]:
    """``{"sequence", "labels", "scores"}`` from the [labels, classes] logits of one text, best label first."""
    if options.multi_label or len(options.candidate_labels) == 1:
        scores = softmax(logits[:, [ids.contradiction, ids.entailment]], axis=-1)[:, 1]
    else:
        scores = softmax(logits[:, ids.entailment], axis=-1)
    order = np.argsort(-scores, kind="stable")
    return {
        "sequence": sequence,
        "labels": [options.candidate_labels[i] for i in order],
        "scores": [float(scores[i]) for i in order],
    }
