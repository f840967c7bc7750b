"""Question answering against the transformers 4.x question-answering pipeline's own answers.

The pipeline exists only in transformers 4.x, so its answers were recorded once, by
``scripts/make_qa_reference.py`` in a separate 4.x environment, into ``tests/fixtures/qa_reference.json``
(see ``scripts/README-qa-reference.md``): 71 questions per model from XQuAD and COVID-QA (long contexts that
need several doc-stride windows), each with four option sets.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from takeoff_client import TakeoffClient

from assay.models.adapter import InputKind, Inputs, pad_batch
from assay.models.loading import load_model
from assay.models.question_answering import QAOptions, QuestionAnsweringAdapter
from tests.model_factory import FACTORY_VERSION

REFERENCE = Path(__file__).resolve().parent / "fixtures" / "qa_reference.json"
#: consumer group of the session server -> test model
QA_GROUPS = {"qa": "minilm-qa", "roberta-qa": "tiny-roberta-qa"}


@cache
def reference() -> dict[str, Any]:
    return json.loads(REFERENCE.read_text(encoding="utf-8"))


def cases(model: str, options: dict[str, Any]) -> list[dict[str, Any]]:
    entry = next(m for m in reference()["models"] if m["model"] == model)
    return [case for case in entry["cases"] if case["options"] == options]


def test_reference_was_made_from_the_models_the_tests_build():
    assert reference()["factory_version"] == FACTORY_VERSION
    assert reference()["transformers_version"].startswith("4.")
    for model in QA_GROUPS.values():
        picked = cases(model, {})
        assert len(picked) >= 50
        # Long COVID-QA contexts (thousands of tokens) make the window merging part of the check.
        assert sum(len(case["context"]) > 4000 for case in picked) >= 20
    # The null answer wins in the reference for minilm-qa, so the impossible-answer branch is checked too.
    impossible = cases("minilm-qa", {"handle_impossible_answer": True})
    assert sum(case["expected"]["answer"] == "" for case in impossible) >= 10


@pytest.mark.parametrize("group", QA_GROUPS)
def test_answers_equal_the_pipeline_end_to_end(server, group):
    client = TakeoffClient(base_url="http://127.0.0.1", port=server.port, mgmt_port=server.management_port)
    picked = cases(QA_GROUPS[group], {})
    answers = client.classify([[c["question"], c["context"]] for c in picked], consumer_group=group)["result"]
    assert len(answers) == len(picked)
    mismatches = [
        (c["question"], got, c["expected"]["answer"])
        for c, got in zip(picked, answers, strict=True)
        if got != c["expected"]["answer"]
    ]
    assert not mismatches, mismatches[:5]
    for c, got in zip(picked, answers, strict=True):
        assert got in c["context"]


@cache
def windows_scored(folder: str, model: str) -> tuple[QuestionAnsweringAdapter, list, Any, list]:
    """encode -> padded forwards of 16 windows -> outputs, as a reader would, without the server (once per model:
    the option sets share the same 71 inputs, and options act only in decoding)."""
    qa = QuestionAnsweringAdapter(load_model(folder, dtype="float32"))
    pairs = [(c["question"], c["context"]) for c in cases(model, {})]
    features = qa.encode(Inputs(kind=InputKind.PAIRS, items=pairs))
    outputs = []
    for start in range(0, len(features.input_ids), 16):
        ids = features.input_ids[start:start + 16]
        types = features.token_type_ids[start:start + 16] if features.token_type_ids is not None else None
        outputs += qa.forward(pad_batch(ids, types, qa.pad_token_id, qa.loaded.device))
    return qa, pairs, features, outputs


OPTION_SETS = [{"top_k": 3}, {"max_answer_len": 5}, {"handle_impossible_answer": True}]


@pytest.mark.parametrize("model", QA_GROUPS.values())
@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: next(iter(o)))
def test_spans_and_scores_equal_the_pipeline_with_options(models, model, options):
    qa, pairs, features, outputs = windows_scored(str(models[model]), model)
    picked = cases(model, options)
    assert [(c["question"], c["context"]) for c in picked] == pairs
    results = qa.decode(Inputs(kind=InputKind.PAIRS, items=pairs, options=QAOptions(**options)), features, outputs)
    for case, got in zip(picked, results, strict=True):
        expected = case["expected"] if isinstance(case["expected"], list) else [case["expected"]]
        assert [a["answer"] for a in got] == [a["answer"] for a in expected], case["question"]
        assert [(a["start"], a["end"]) for a in got] == [(a["start"], a["end"]) for a in expected]
        for a, b in zip(got, expected, strict=True):
            assert a["score"] == pytest.approx(b["score"], rel=1e-3, abs=1e-7)
