"""/zero_shot against the transformers zero-shot-classification pipeline (present in transformers 5.x) on the
same model folders, single- and multi-label, fp32, abs 1e-4."""

from __future__ import annotations

from functools import cache

import httpx
import pytest
from transformers import pipeline

from tests.conftest import GROUPS

TEXTS = [
    "One day I will see the world.",
    "The central bank raised interest rates again.",
    "The striker scored twice in the final minutes.",
]
LABELS = ["travel", "cooking", "finance", "sports"]
NLI_GROUPS = ["nli", "xlm-roberta"]  # MiniLM and tiny XLM-R heads, both labelled entailment/neutral/contradiction


@cache
def zero_shot_pipeline(folder: str):
    return pipeline("zero-shot-classification", model=folder, device="cpu")


def zero_shot(server, body: dict) -> httpx.Response:
    return httpx.post(server.url + "/zero_shot", json=body, timeout=60)


def check(got: dict, expected: dict) -> None:
    assert got["sequence"] == expected["sequence"]
    assert sorted(got["labels"]) == sorted(expected["labels"])
    got_scores = dict(zip(got["labels"], got["scores"], strict=True))
    for label, score in zip(expected["labels"], expected["scores"], strict=True):
        assert got_scores[label] == pytest.approx(score, abs=1e-4), label
    assert got["scores"] == sorted(got["scores"], reverse=True)
    # Where the reference's scores are clearly apart, the order must be the reference's.
    gaps = [a - b for a, b in zip(expected["scores"], expected["scores"][1:], strict=False)]
    if all(gap > 2e-4 for gap in gaps):
        assert got["labels"] == expected["labels"]


@pytest.mark.parametrize("group", NLI_GROUPS)
@pytest.mark.parametrize("multi_label", [False, True])
def test_scores_equal_the_pipeline(server, models, group, multi_label):
    body = {"text": TEXTS, "candidate_labels": LABELS, "multi_label": multi_label, "consumer_group": group}
    response = zero_shot(server, body)
    assert response.status_code == 200, response.text
    results = response.json()["result"]
    expected = zero_shot_pipeline(str(models[GROUPS[group]]))(TEXTS, candidate_labels=LABELS, multi_label=multi_label)
    assert len(results) == len(TEXTS)
    for got, want in zip(results, expected, strict=True):
        check(got, want)
    if not multi_label:
        assert all(sum(r["scores"]) == pytest.approx(1.0, abs=1e-6) for r in results)


def test_single_text_gets_one_object_and_a_template_and_one_label(server, models):
    template = "This text is about {}."
    body = {"text": TEXTS[1], "candidate_labels": "finance, sports", "hypothesis_template": template,
            "consumer_group": "nli"}
    result = zero_shot(server, body).json()["result"]
    assert isinstance(result, dict)
    reference = zero_shot_pipeline(str(models[GROUPS["nli"]]))
    check(result, reference(TEXTS[1], candidate_labels=["finance", "sports"], hypothesis_template=template))
    # One candidate label: the pipeline scores it on its own (entailment vs contradiction), so not 1.0.
    single = zero_shot(server, {"text": TEXTS[1], "candidate_labels": ["finance"], "consumer_group": "nli"})
    check(single.json()["result"], reference(TEXTS[1], candidate_labels=["finance"]))
    assert single.json()["result"]["scores"][0] < 0.999


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"text": "x", "candidate_labels": LABELS, "consumer_group": "rerank"}, 422, "'entailment' label"),
        ({"text": "x", "candidate_labels": LABELS, "consumer_group": "primary"}, 422, "negative, neutral, positive"),
        ({"text": "x", "candidate_labels": LABELS, "consumer_group": "qa"}, 422, "cannot do zero-shot"),
        ({"text": "x", "candidate_labels": [], "consumer_group": "nli"}, 422, "at least one label"),
        ({"text": [], "candidate_labels": LABELS, "consumer_group": "nli"}, 422, "empty list"),
        ({"text": "x", "candidate_labels": LABELS, "hypothesis_template": "No slot.", "consumer_group": "nli"}, 422,
         "hypothesis_template"),
        ({"text": [["a", "b"]], "candidate_labels": LABELS, "consumer_group": "nli"}, 422, "text"),
        ({"candidate_labels": LABELS, "consumer_group": "nli"}, 422, "text"),
        ({"text": "x", "candidate_labels": LABELS, "consumer_group": "nope"}, 404, "nli"),
    ],
)
def test_zero_shot_errors(server, body, status, words):
    response = zero_shot(server, body)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]["message"]


def test_pairs_count_against_the_batch_limit(server):
    many = ["label"] * 600
    response = zero_shot(server, {"text": ["a", "b"], "candidate_labels": many, "consumer_group": "nli"})
    assert response.status_code == 413
    assert "1200 inputs" in response.json()["error"]["message"]
