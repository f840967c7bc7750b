"""/classify with "qa" options, end to end, against the transformers 4.x pipeline's recorded answers: spans and
offsets equal, scores within rel 1e-3, the impossible (empty) answer included.

Every case of the tiny RoBERTa model runs; for MiniLM, whose thousands-of-tokens COVID-QA contexts cost the most,
the short XQuAD cases and three long ones (several windows each) run here: test_question_answering checks all of
them in-process.
"""

from __future__ import annotations

import httpx
import pytest

from tests.test_question_answering import OPTION_SETS, QA_GROUPS, cases

LONG = 4000


def served_cases(group: str, options: dict) -> list[dict]:
    picked = cases(QA_GROUPS[group], options)
    if group != "qa":
        return picked
    long_ones = [c for c in picked if len(c["context"]) > LONG]
    return [c for c in picked if len(c["context"]) <= LONG] + long_ones[:3]


@pytest.mark.parametrize("group", QA_GROUPS)
@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: next(iter(o)))
def test_answers_with_options_equal_the_pipeline_end_to_end(server, group, options):
    picked = served_cases(group, options)
    assert sum(len(c["context"]) > LONG for c in picked) >= 3
    body = {"text": [[c["question"], c["context"]] for c in picked], "consumer_group": group, "qa": options}
    response = httpx.post(server.url + "/classify", json=body, timeout=120)
    assert response.status_code == 200, response.text
    results = response.json()["result"]
    assert len(results) == len(picked)
    for case, got in zip(picked, results, strict=True):
        expected = case["expected"] if isinstance(case["expected"], list) else [case["expected"]]
        assert [a["answer"] for a in got] == [a["answer"] for a in expected], case["question"]
        assert [(a["start"], a["end"]) for a in got] == [(a["start"], a["end"]) for a in expected]
        for a, b in zip(got, expected, strict=True):
            assert a["score"] == pytest.approx(b["score"], rel=1e-3, abs=1e-7)
    if options.get("handle_impossible_answer") and group == "qa":
        # The null answer wins for several MiniLM cases: the empty answer comes back as the pipeline's.
        assert sum(got[0]["answer"] == "" and got[0]["start"] == got[0]["end"] == 0 for got in results) >= 5


def test_default_options_give_one_answer_list_and_no_options_a_string(server):
    pair = ["where is TitanML based?", "TitanML is a london-based AI startup"]
    plain = httpx.post(server.url + "/classify", json={"text": [pair], "consumer_group": "qa"}).json()["result"]
    listed = httpx.post(server.url + "/classify", json={"text": [pair], "consumer_group": "qa", "qa": {}}).json()
    assert isinstance(plain[0], str)
    [[best]] = listed["result"]
    assert best["answer"] == plain[0] and pair[1][best["start"]:best["end"]] == best["answer"]
    assert 0 < best["score"] <= 1


@pytest.mark.parametrize(
    ("qa", "words"),
    [
        ({"top_k": 0}, "qa.top_k"),
        ({"max_answer_len": 0}, "qa.max_answer_len"),
        ({"top_k": "three"}, "qa.top_k"),
        ({"handle_impossible_answer": "maybe"}, "qa.handle_impossible_answer"),
        ({"doc_stride": 64}, "qa.doc_stride"),
    ],
)
def test_invalid_qa_options_are_422(server, qa, words):
    body = {"text": [["who?", "Bob went home."]], "consumer_group": "qa", "qa": qa}
    response = httpx.post(server.url + "/classify", json=body)
    assert response.status_code == 422, response.text
    assert words in response.json()["error"]["message"]


def test_qa_options_on_a_classification_group_are_422(server):
    body = {"text": [["who?", "Bob went home."]], "consumer_group": "primary", "qa": {"top_k": 2}}
    response = httpx.post(server.url + "/classify", json=body)
    assert response.status_code == 422
    assert "cannot answer questions" in response.json()["error"]["message"]
