"""Extractive question answering: [question, context] pairs in, answer spans of the context out.

Contexts longer than the window are split into overlapping windows (document stride) and every window is
scored; the span search, scoring and merging follow the ``transformers`` 4.x question-answering pipeline
(Apache-2.0) step for step, so that answers equal the pipeline's for the same model and options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

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
from assay.models.loading import LoadedModel

#: The pipeline's default window: min(model max length, 384) tokens.
DEFAULT_MAX_SEQ_LEN = 384


@dataclass(frozen=True)
class QAOptions:
    """The pipeline's postprocessing options, with its defaults."""

    #: What these options ask for, in words (for the error a task that cannot do it raises).
    purpose: ClassVar[str] = "answer questions (qa options)"
    #: How many answers per pair.
    top_k: int = 1
    #: Longest answer, in tokens.
    max_answer_len: int = 15
    #: Allow the empty answer when the model's null (CLS) score wins.
    handle_impossible_answer: bool = False
    #: Widen token spans to whole words.
    align_to_words: bool = True


@dataclass
class Window:
    """What decoding needs of one window of one pair."""

    #: The tokenizer's Encoding of the window (offsets, words, sequence ids).
    encoding: Any
    #: 1 where a token may be part of an answer (context tokens and CLS), else 0.
    desired: np.ndarray


class QuestionAnsweringAdapter:
    """Windows every context, runs the model on every window, returns the best span(s) over all windows."""

    task_name = "question_answering"

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.pad_token_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.uses_token_types = "token_type_ids" in self.tokenizer.model_input_names
        self.max_seq_len = min(loaded.max_length, DEFAULT_MAX_SEQ_LEN)
        self.doc_stride = min(self.max_seq_len // 2, 128)
        self.question_first = self.tokenizer.padding_side == "right"

    def capabilities(self) -> Capabilities:
        """Answers questions and nothing else."""
        return Capabilities()

    def check(self, inputs: Inputs) -> None:
        if inputs.options is not None and not isinstance(inputs.options, QAOptions):
            raise InvalidInput(
                f"this consumer group serves a question answering model, which cannot {inputs.options.purpose}"
            )
        if inputs.kind is not InputKind.PAIRS:
            raise InvalidInput(
                "this consumer group serves a question answering model: send text as a list of "
                "[question, context] pairs"
            )

    def encode(self, inputs: Inputs) -> Features:
        questions = [q for q, _ in inputs.items]
        contexts = [c for _, c in inputs.items]
        try:
            encoded = self.tokenizer(
                questions if self.question_first else contexts,
                contexts if self.question_first else questions,
                padding=False,
                truncation="only_second" if self.question_first else "only_first",
                max_length=self.max_seq_len,
                stride=self.doc_stride,
                return_token_type_ids=self.uses_token_types,
                return_overflowing_tokens=True,
                return_offsets_mapping=True,
                return_attention_mask=False,
            )
        except Exception as exc:  # the tokenizer refuses questions that leave no room for the context
            raise InvalidInput(
                f"a question is too long for the model's {self.max_seq_len}-token window: {exc}"
            ) from None
        context_id = 1 if self.question_first else 0
        cls_id = self.tokenizer.cls_token_id
        windows = []
        ids = []
        for k, encoding in enumerate(encoded.encodings):
            row = np.asarray(encoded["input_ids"][k], dtype=np.int64)
            # None (special tokens) becomes NaN, which equals no sequence id: no per-token Python loop.
            desired = (np.array(encoding.sequence_ids, dtype=np.float64) == context_id).astype(np.int64)
            if cls_id is not None:
                desired[row == cls_id] = 1  # the pipeline keeps CLS unmasked (the null answer lives there)
            ids.append(row)
            windows.append(Window(encoding=encoding, desired=desired))
        types = (
            [np.asarray(t, dtype=np.int64) for t in encoded["token_type_ids"]] if self.uses_token_types else None
        )
        return Features(
            input_ids=ids, token_type_ids=types, owner=list(encoded["overflow_to_sample_mapping"]), state=windows
        )

    @torch.inference_mode()
    def forward(self, batch: PaddedBatch) -> list[np.ndarray]:
        out = self.loaded.model(**model_inputs(batch))
        both = torch.stack([out.start_logits, out.end_logits], dim=1).float().cpu().numpy()
        return [both[row, :, :length] for row, length in enumerate(batch.lengths)]

    def decode(self, inputs: Inputs, features: Features, outputs: list[np.ndarray]) -> list[Any]:
        options: QAOptions = inputs.options or QAOptions()
        windows = features_by_input(features.owner, list(zip(outputs, features.state, strict=True)),
                                    len(inputs.items))
        results = []
        for (_, context), scored_windows in zip(inputs.items, windows, strict=True):
            answers = best_answers(scored_windows, context, options, self.question_first)
            if inputs.options is None:
                results.append(answers[0]["answer"] if answers else "")
            else:
                results.append(answers)
        return results


def best_answers(
    windows: list[tuple[np.ndarray, Window]], context: str, options: QAOptions, question_first: bool
) -> list[dict[str, Any]]:
    """The pipeline's postprocess over all windows of one pair: answers sorted by score, top_k kept."""
    min_null_score = 1000000.0
    answers: list[dict[str, Any]] = []
    pre_topk = options.top_k * 2 + 10 if options.align_to_words else options.top_k
    sequence_index = 1 if question_first else 0
    for logits, window in windows:
        starts, ends, scores, min_null_score = _select_starts_ends(
            logits[0][None], logits[1][None], window.desired[None], min_null_score, pre_topk,
            options.handle_impossible_answer, options.max_answer_len,
        )
        for s, e, score in zip(starts, ends, scores, strict=True):
            start_index, end_index = _char_span(window.encoding, int(s), int(e), sequence_index, options.align_to_words)
            target = context[start_index:end_index]
            same = next((a for a in answers if a["answer"].lower() == target.lower()), None)
            if same is not None:
                same["score"] += score.item()
            else:
                answers.append({"score": score.item(), "start": start_index, "end": end_index, "answer": target})
    if options.handle_impossible_answer:
        answers.append({"score": min_null_score, "start": 0, "end": 0, "answer": ""})
    return sorted(answers, key=lambda a: a["score"], reverse=True)[: options.top_k]


def _select_starts_ends(
    start: np.ndarray,
    end: np.ndarray,
    desired: np.ndarray,
    min_null_score: float,
    top_k: int,
    handle_impossible_answer: bool,
    max_answer_len: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Normalize a window's logits over its allowed tokens and pick its best spans (pipeline semantics)."""
    undesired_mask = desired == 0
    start = np.where(undesired_mask, np.float32(-10000.0), start)
    end = np.where(undesired_mask, np.float32(-10000.0), end)
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    if handle_impossible_answer:
        min_null_score = min(min_null_score, (start[0, 0] * end[0, 0]).item())
    start[0, 0] = end[0, 0] = 0.0
    starts, ends, scores = _decode_spans(start, end, top_k, max_answer_len, desired)
    return starts, ends, scores, min_null_score


def _decode_spans(
    start: np.ndarray, end: np.ndarray, topk: int, max_answer_len: int, desired: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    outer = np.matmul(np.expand_dims(start, -1), np.expand_dims(end, 1))
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
    scores_flat = candidates.flatten()
    if topk == 1:
        idx_sort = [np.argmax(scores_flat)]
    elif len(scores_flat) < topk:
        idx_sort = np.argsort(-scores_flat)
    else:
        idx = np.argpartition(-scores_flat, topk)[0:topk]
        idx_sort = idx[np.argsort(-scores_flat[idx])]
    starts, ends = np.unravel_index(idx_sort, candidates.shape)[1:]
    # The pipeline tests membership against desired.nonzero(), a (rows, cols) tuple whose rows are all 0:
    # token 0 therefore always counts as allowed. Kept as is so that answers match the pipeline's.
    allowed = desired.nonzero()
    keep = np.isin(starts, allowed) & np.isin(ends, allowed)
    starts = starts[keep]
    ends = ends[keep]
    return starts, ends, candidates[0, starts, ends]


def _char_span(encoding: Any, s: int, e: int, sequence_index: int, align_to_words: bool) -> tuple[int, int]:
    """Token span to character span in the context, widened to whole words like the pipeline does."""
    if align_to_words:
        try:
            start_word = encoding.token_to_word(s)
            end_word = encoding.token_to_word(e)
            return (
                encoding.word_to_chars(start_word, sequence_index=sequence_index)[0],
                encoding.word_to_chars(end_word, sequence_index=sequence_index)[1],
            )
        except Exception:  # some tokenizers have no words (and CLS has none): keep to offsets, as the pipeline does
            pass
    return encoding.offsets[s][0], encoding.offsets[e][1]
