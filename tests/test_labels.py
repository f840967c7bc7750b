"""/classify with "return": "labels": label names from id2label with probabilities, compared with the softmax
(single-label) or sigmoid (multi-label, one logit) of direct forward passes; without the field, raw logits."""

from __future__ import annotations

import math

import httpx
import pytest

from tests.conftest import GROUPS
from tests.reference import reference_logits

TEXTS = ["I loved this film, the acting was wonderful.", "Stocks fell sharply after the vote.", "ok"]
PAIRS = [["What colour is the dog?", "The puppy is light blue."], ["What colour is the dog?", "Space is very big."]]


def softmax(row: list[float]) -> list[float]:
    top = max(row)
    exp = [math.exp(x - top) for x in row]
    return [e / sum(exp) for e in exp]


def sigmoid(row: list[float]) -> list[float]:
    return [1 / (1 + math.exp(-x)) for x in row]


def classify(server, body: dict) -> httpx.Response:
    return httpx.post(server.url + "/classify", json=body, timeout=60)


def expected_labels(folder, text, id2label: list[str], normalize) -> list[tuple[str, float]]:
    probabilities = normalize(reference_logits(folder, text))
    return sorted(zip(id2label, probabilities, strict=True), key=lambda pair: -pair[1])


def check(got: list[dict], expected: list[tuple[str, float]]) -> None:
    assert [g["label"] for g in got] == [label for label, _ in expected]
    for g, (_, score) in zip(got, expected, strict=True):
        assert g["score"] == pytest.approx(score, abs=1e-5)


@pytest.mark.parametrize(
    ("group", "id2label", "normalize", "inputs"),
    [
        ("primary", ["negative", "neutral", "positive"], softmax, TEXTS),
        ("multilabel", ["sports", "finance", "science", "politics"], sigmoid, TEXTS),
        ("rerank", ["LABEL_0"], sigmoid, PAIRS),
    ],
    ids=["single-label-softmax", "multi-label-sigmoid", "one-logit-sigmoid"],
)
def test_labels_are_normalized_as_the_model_was_trained(server, models, group, id2label, normalize, inputs):
    folder = models[GROUPS[group]]
    response = classify(server, {"text": inputs, "consumer_group": group, "return": "labels"})
    assert response.status_code == 200, response.text
    rows = response.json()["result"]
    assert len(rows) == len(inputs)
    for text, got in zip(inputs, rows, strict=True):
        check(got, expected_labels(folder, text, id2label, normalize))
    if normalize is softmax:
        assert all(sum(g["score"] for g in got) == pytest.approx(1.0, abs=1e-6) for got in rows)


def test_multi_label_scores_do_not_sum_to_one(server):
    rows = classify(server, {"text": TEXTS, "consumer_group": "multilabel", "return": "labels"}).json()["result"]
    assert any(abs(sum(g["score"] for g in got) - 1) > 0.05 for got in rows)


def test_top_k_keeps_the_best_labels_and_a_single_text_gets_one_list(server, models):
    response = classify(server, {"text": TEXTS[0], "consumer_group": "multilabel", "return": "labels", "top_k": 2})
    got = response.json()["result"]
    expected = expected_labels(models[GROUPS["multilabel"]], TEXTS[0], ["sports", "finance", "science", "politics"],
                               sigmoid)
    check(got, expected[:2])


def test_without_the_field_classify_returns_raw_logits(server, models):
    for body in ({"text": TEXTS[0], "consumer_group": "multilabel"},
                 {"text": TEXTS[0], "consumer_group": "multilabel", "return": "raw"}):
        row = classify(server, body).json()["result"]
        assert row == pytest.approx(reference_logits(models[GROUPS["multilabel"]], TEXTS[0]), abs=1e-4)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"text": TEXTS, "return": "labels", "top_k": 0}, "top_k"),
        ({"text": TEXTS, "return": "probabilities"}, "return"),
        ({"text": TEXTS, "top_k": 2}, "top_k applies"),
        ({"text": [PAIRS[0]], "consumer_group": "qa", "return": "labels"}, "question answering model, which cannot"),
        ({"text": TEXTS, "return": "labels", "qa": {"top_k": 2}}, "send one of them"),
        ({"text": TEXTS, "return_": "labels"}, "return_"),
    ],
)
def test_label_errors(server, body, words):
    response = classify(server, body)
    assert response.status_code == 422, response.text
    assert words in response.json()["error"]["message"]
