"""The contract between the engine and a task: encode inputs into features, run a padded batch, decode.

The engine batches features without knowing the task; an adapter knows the task but nothing of queues.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

T = TypeVar("T")


class InputKind(str, Enum):
    """The two shapes /classify accepts."""

    SINGLE = "single"
    PAIRS = "pairs"


@dataclass
class Inputs:
    """A request's inputs, already checked to be all strings or all pairs."""

    #: Whether ``items`` are texts or (a, b) pairs.
    kind: InputKind
    #: The texts, or the pairs as 2-tuples.
    items: list[Any]
    #: Task-specific options (QA's top_k, say); None means the task's defaults.
    options: Any = None


@dataclass
class Features:
    """What an adapter made of a request's inputs: token sequences to batch, and what decoding needs."""

    #: One int64 array of token ids per feature.
    input_ids: list[np.ndarray]
    #: Token type ids per feature, or None where the model does not use them.
    token_type_ids: list[np.ndarray] | None
    #: The index of the input each feature came from (QA windows: several features per input).
    owner: list[int]
    #: Indices of inputs that were cut to the maximum length.
    truncated: list[int] = field(default_factory=list)
    #: Adapter-private state for decoding (offsets, masks...).
    state: Any = None


@dataclass
class PaddedBatch:
    """A batch padded to its longest sequence, ready for the model."""

    #: [batch, longest] token ids.
    input_ids: torch.Tensor
    #: [batch, longest] 1 for real tokens, 0 for padding.
    attention_mask: torch.Tensor
    #: [batch, longest] token types, or None.
    token_type_ids: torch.Tensor | None
    #: The real length of each row.
    lengths: list[int]


@dataclass(frozen=True)
class Capabilities:
    """What a loaded model can be asked for beyond its task's default: how a client (the playground) picks a form."""

    #: Number of output labels of a classification head; None for other tasks.
    num_labels: int | None = None
    #: Label names in id order (the config's id2label); None for other tasks.
    labels: tuple[str, ...] | None = None
    #: One output logit: a cross-encoder that the rerank endpoints accept.
    reranker: bool = False
    #: An entailment label: an NLI model that /zero_shot accepts.
    zero_shot: bool = False


class TaskAdapter(Protocol):
    """Encode, forward, decode: the three steps of every task."""

    #: The task's name as reported by the API (classification, question_answering...).
    task_name: str
    #: The token id used for padding.
    pad_token_id: int

    def capabilities(self) -> Capabilities:
        """What this model can be asked for, derived from its config (reported by GET /groups)."""

    def check(self, inputs: Inputs) -> None:
        """Raise InvalidInput if this task cannot take these inputs."""

    def encode(self, inputs: Inputs) -> Features:
        """Tokenize: runs off the event loop, in a worker thread."""

    def forward(self, batch: PaddedBatch) -> list[np.ndarray]:
        """Run the model on a batch; one output array per row, trimmed to the row's length where per-token."""

    def decode(self, inputs: Inputs, features: Features, outputs: list[np.ndarray]) -> list[Any]:
        """Turn per-feature outputs into one result per input, in input order."""


#: A reader pads a batch to its longest sequence rounded up to a multiple of this. PyTorch's CPU attention kernel
#: (SDPA, bf16 on AMX) compiles and keeps a kernel for every sequence length it meets, in a cache nothing bounds:
#: with any length from 1 to 512 a reader's median RSS rose from 617 to 677 MiB over 3,000 requests; with lengths
#: in steps of 8 there are 64 of them and the cache fills within the first requests (bare forward passes: ~100 MB
#: lower), for at most 7 pad tokens a row (+2.6% padded tokens on the benchmark's workload). docs/performance.md.
PAD_MULTIPLE = 8


def padded_length(longest: int, multiple: int = 1, max_length: int | None = None) -> int:
    """``longest`` rounded up to a multiple of ``multiple``, but never past ``max_length`` (the model's limit)."""
    rounded = -(-longest // multiple) * multiple
    return min(rounded, max(max_length, longest)) if max_length else rounded


def pad_batch(
    input_ids: list[np.ndarray],
    token_type_ids: list[np.ndarray] | None,
    pad_token_id: int,
    device: torch.device,
    multiple_of: int = 1,
    max_length: int | None = None,
) -> PaddedBatch:
    """Pad sequences on the right to the batch's longest (rounded up to ``multiple_of``, never past
    ``max_length``), never to a fixed length."""
    lengths = [len(ids) for ids in input_ids]
    longest = padded_length(max(lengths), multiple_of, max_length)
    ids = np.full((len(input_ids), longest), pad_token_id, dtype=np.int64)
    mask = np.zeros((len(input_ids), longest), dtype=np.int64)
    types = np.zeros((len(input_ids), longest), dtype=np.int64) if token_type_ids is not None else None
    for row, length in enumerate(lengths):
        ids[row, :length] = input_ids[row]
        mask[row, :length] = 1
        if types is not None and token_type_ids is not None:
            types[row, :length] = token_type_ids[row]
    return PaddedBatch(
        input_ids=torch.from_numpy(ids).to(device),
        attention_mask=torch.from_numpy(mask).to(device),
        token_type_ids=torch.from_numpy(types).to(device) if types is not None else None,
        lengths=lengths,
    )


def pad_for_model(
    adapter: TaskAdapter, input_ids: list[np.ndarray], token_type_ids: list[np.ndarray] | None
) -> PaddedBatch:
    """Pad rows as a reader does: to the batch's longest rounded up to ``PAD_MULTIPLE``, within the model's limit,
    with the model's pad token, on its device."""
    loaded = adapter.loaded
    return pad_batch(
        input_ids, token_type_ids, adapter.pad_token_id, loaded.device, multiple_of=PAD_MULTIPLE,
        max_length=loaded.max_length,
    )  # fmt: skip


def model_inputs(batch: PaddedBatch) -> dict[str, torch.Tensor]:
    """Keyword arguments for a Hugging Face model's forward."""
    kwargs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
    if batch.token_type_ids is not None:
        kwargs["token_type_ids"] = batch.token_type_ids
    return kwargs


def features_by_input(owner: list[int], outputs: list[T], count: int) -> list[list[T]]:
    """Outputs regrouped per input, in feature order (several features per input: windows, chunks, labels)."""
    grouped: list[list[T]] = [[] for _ in range(count)]
    for output, index in zip(outputs, owner, strict=True):
        grouped[index].append(output)
    return grouped
