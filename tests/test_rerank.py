"""/rerank, /v1/rerank and /v2/rerank: the real cohere SDK, a Jina-style body and a TEI-style body, all scored
against direct forward passes of the reranker (sigmoid of the logit) and sorted by it."""

from __future__ import annotations

import math

import cohere
import httpx
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from assay.models.classification import CHUNK_OVERLAP
from tests.conftest import GROUPS
from tests.reference import reference_logits

QUERY = "What colour is the dog?"
DOCS = [
    "Space is very big.",
    "The puppy is light blue.",
    "Feet itching is a symptom of athletes foot, which is caused by a fungus.",
    "My dog has brown fur and a white tail.",
    "Dogs come in many colours.",
]


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@pytest.fixture(scope="module")
def logits(models) -> list[float]:
    folder = models[GROUPS["rerank"]]
    return [reference_logits(folder, (QUERY, doc))[0] for doc in DOCS]


def expected_order(scores: list[float]) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: -scores[i])


def test_cohere_v1_client_ranks_with_top_n_and_documents(server, logits):
    client = cohere.Client(base_url=server.url, api_key="x")
    response = client.rerank(model="rerank", query=QUERY, documents=DOCS, top_n=3, return_documents=True)
    order = expected_order(logits)
    assert [r.index for r in response.results] == order[:3]
    for r in response.results:
        assert r.relevance_score == pytest.approx(sigmoid(logits[r.index]), abs=1e-5)
        assert r.document is not None and r.document.text == DOCS[r.index]
    assert response.meta.api_version.version == "1"


def test_cohere_v1_client_without_documents_returns_every_index(server, logits):
    response = cohere.Client(base_url=server.url, api_key="x").rerank(model="rerank", query=QUERY, documents=DOCS)
    assert [r.index for r in response.results] == expected_order(logits)
    assert all(r.document is None for r in response.results)


def test_cohere_v2_client(server, logits):
    client = cohere.ClientV2(base_url=server.url, api_key="x")
    response = client.rerank(model="rerank", query=QUERY, documents=DOCS, top_n=2)
    assert [r.index for r in response.results] == expected_order(logits)[:2]
    for r in response.results:
        assert r.relevance_score == pytest.approx(sigmoid(logits[r.index]), abs=1e-5)
    assert response.meta.api_version.version == "2"


def test_jina_style_body_with_object_documents(server, logits):
    documents = [{"text": doc, "source": f"doc-{i}"} for i, doc in enumerate(DOCS)]
    body = {"model": "rerank", "query": QUERY, "documents": documents, "top_n": 10, "return_documents": True}
    response = httpx.post(server.url + "/v1/rerank", json=body)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == expected_order(logits)
    # Every key of an object document comes back as sent.
    assert [r["document"] for r in results] == [documents[r["index"]] for r in results]
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("raw_scores", [False, True])
def test_tei_style_body_is_answered_with_a_bare_list(server, logits, raw_scores):
    body = {"query": QUERY, "texts": DOCS, "raw_scores": raw_scores, "return_text": True, "consumer_group": "rerank"}
    response = httpx.post(server.url + "/rerank", json=body)
    assert response.status_code == 200, response.text
    ranks = response.json()
    assert isinstance(ranks, list)
    assert [r["index"] for r in ranks] == expected_order(logits)
    for r in ranks:
        expected = logits[r["index"]] if raw_scores else sigmoid(logits[r["index"]])
        assert r["score"] == pytest.approx(expected, abs=1e-5)
        assert r["text"] == DOCS[r["index"]]
    plain = httpx.post(server.url + "/rerank", json={"query": QUERY, "texts": DOCS, "consumer_group": "rerank"})
    assert all(set(r) == {"index", "score"} for r in plain.json())


def test_tei_refuses_a_too_long_pair_unless_truncate(server, models):
    long_doc = "word " * 2000
    body = {"query": QUERY, "texts": [DOCS[0], long_doc], "consumer_group": "rerank"}
    refused = httpx.post(server.url + "/rerank", json=body)
    assert refused.status_code == 413 and "truncate" in refused.json()["error"]["message"]
    cut = httpx.post(server.url + "/rerank", json={**body, "truncate": True, "raw_scores": True})
    assert cut.status_code == 200 and cut.headers["x-assay-truncated"] == "1"
    by_index = {r["index"]: r["score"] for r in cut.json()}
    assert by_index[1] == pytest.approx(reference_logits(models[GROUPS["rerank"]], (QUERY, long_doc))[0], abs=1e-4)


@torch.inference_mode()
def test_chunking_scores_a_long_document_by_its_best_chunk(server, models):
    folder = models[GROUPS["rerank"]]
    long_doc = " ".join(["Feet itching is a symptom of athletes foot."] * 60 + ["The puppy is light blue."] * 3)
    body = {"query": QUERY, "texts": [long_doc, DOCS[1]], "consumer_group": "rerank", "chunking": True,
            "raw_scores": True}
    response = httpx.post(server.url + "/rerank", json=body)
    assert response.status_code == 200, response.text
    assert "x-assay-truncated" not in response.headers
    by_index = {r["index"]: r["score"] for r in response.json()}
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder), dtype=torch.float32).eval()
    windows = tokenizer(QUERY, long_doc, truncation="only_second", max_length=tokenizer.model_max_length,
                        stride=CHUNK_OVERLAP, return_overflowing_tokens=True, return_tensors="pt", padding=True)
    windows.pop("overflow_to_sample_mapping")
    chunk_logits = model(**windows).logits[:, 0].tolist()
    assert len(chunk_logits) > 1
    assert by_index[0] == pytest.approx(max(chunk_logits), abs=1e-4)
    # The answer sits in the last chunk: truncating would have scored the first.
    assert max(chunk_logits) > chunk_logits[0]
    assert by_index[1] == pytest.approx(reference_logits(folder, (QUERY, DOCS[1]))[0], abs=1e-4)


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"model": "qa", "query": QUERY, "documents": DOCS}, 422, "question answering model, which cannot rerank"),
        ({"model": "primary", "query": QUERY, "documents": DOCS}, 422, "one output logit"),
        ({"model": "rerank", "query": QUERY}, 422, "either as 'documents'"),
        ({"model": "rerank", "query": QUERY, "documents": DOCS, "texts": DOCS}, 422, "either as 'documents'"),
        ({"model": "rerank", "query": QUERY, "documents": []}, 422, "documents"),
        ({"model": "rerank", "query": QUERY, "documents": DOCS, "top_n": 0}, 422, "top_n"),
        ({"model": "rerank", "query": QUERY, "texts": DOCS, "return_documents": True}, 422, "return_text"),
        ({"model": "rerank", "query": QUERY, "documents": DOCS, "rank_fields": ["x"]}, 422, "rank_fields"),
        ({"model": "rerank", "consumer_group": "qa", "query": QUERY, "texts": DOCS}, 422, "different groups"),
        ({"model": "nope", "query": QUERY, "texts": DOCS}, 404, "rerank"),
    ],
)
def test_rerank_errors(server, body, status, words):
    response = httpx.post(server.url + "/v2/rerank", json=body)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]["message"]


def test_cohere_sdk_raises_on_a_qa_group(server):
    with pytest.raises(cohere.core.ApiError) as raised:
        cohere.Client(base_url=server.url, api_key="x").rerank(model="qa", query=QUERY, documents=DOCS)
    assert raised.value.status_code == 422
