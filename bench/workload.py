"""Rerank-shaped requests from real text: one question and 32 passages of 10 to 300 words each.

Queries are XQuAD and COVID-QA questions; passages are windows of XQuAD paragraphs and COVID-QA articles,
starting at a sentence and cut to a length drawn log-uniformly between 10 and 300 words (median ~55), so a
request mixes snippets with long passages as a real first-stage retriever's output does.
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

DATA = Path("/work/shared/data/qa")
SOURCES = ("xquad.en.json", "covidqa.json")
MIN_WORDS, MAX_WORDS = 10, 300
#: COVID-QA articles are thousands of words; only their first part is used as passage material.
COVID_PREFIX_WORDS = 3000

Request = tuple[str, list[str]]


def _texts() -> tuple[list[str], list[list[str]]]:
    """All questions, and every source text as a list of words."""
    questions: list[str] = []
    texts: list[list[str]] = []
    for name in SOURCES:
        data = json.loads((DATA / name).read_text(encoding="utf-8"))["data"]
        for article in data:
            for paragraph in article["paragraphs"]:
                words = paragraph["context"].split()
                texts.append(words[:COVID_PREFIX_WORDS])
                questions.extend(qa["question"].strip() for qa in paragraph["qas"] if qa["question"].strip())
    return questions, texts


def _passage(rng: random.Random, words: list[str]) -> str:
    length = round(math.exp(rng.uniform(math.log(MIN_WORDS), math.log(MAX_WORDS))))
    length = min(length, len(words))
    # Start at a sentence: a word after one ending in '.', or the text's start.
    starts = [0] + [i + 1 for i, w in enumerate(words[: max(1, len(words) - length)]) if re.search(r"[.?!]$", w)]
    start = rng.choice(starts)
    return " ".join(words[start : start + length])


def make_requests(count: int, docs_per_request: int = 32, seed: int = 0) -> list[Request]:
    """``count`` deterministic (query, passages) requests."""
    rng = random.Random(seed)
    questions, texts = _texts()
    return [
        (rng.choice(questions), [_passage(rng, rng.choice(texts)) for _ in range(docs_per_request)])
        for _ in range(count)
    ]


def pairs_of(requests: list[Request]) -> list[tuple[str, str]]:
    return [(query, doc) for query, docs in requests for doc in docs]
