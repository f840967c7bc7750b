"""Embeddings end to end: /embed, /v1/embeddings on the OpenAI port (takeoff-client, the OpenAI SDK), cosine
scoring of pairs on /classify and /rerank, and the errors; every vector compared with
``SentenceTransformer.encode`` of the same model (all-MiniLM-L6-v2: mean pooling, normalized, 256 tokens).
"""

from __future__ import annotations

import base64

import httpx
import numpy as np
import openai
import pytest
import torch
from sentence_transformers import SentenceTransformer
from takeoff_client import TakeoffClient
from takeoff_client.exceptions import TakeoffException

from assay.models.rerank import CHUNK_OVERLAP
from tests.conftest import GROUPS

TEXTS = [
    "What colour is the dog?",
    "The puppy is light blue.",
    "Feet itching is a symptom of athletes foot, which is caused by a fungus.",
    "ok",
]
#: Well over 256 tokens, and different after token 128: truncating at the tokenizer.json's baked-in 128 tokens
#: instead of sentence-transformers' 256 would give another vector.
LONG = " ".join(f"Sentence number {i} talks about {word}." for i, word in
                enumerate(["rivers", "mountains", "cooking", "music", "trains", "space"] * 12))
QUERY = "What colour is the dog?"
DOCS = [
    "Space is very big.",
    "The puppy is light blue.",
    "Feet itching is a symptom of athletes foot, which is caused by a fungus.",
    "My dog has brown fur and a white tail.",
    "Dogs come in many colours.",
]


@pytest.fixture(scope="module")
def reference(models) -> SentenceTransformer:
    return SentenceTransformer(str(models[GROUPS["embed"]]), device="cpu")


def assert_same_vectors(got: list[list[float]] | np.ndarray, expected: np.ndarray) -> None:
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape
    cosines = (got * expected).sum(axis=-1) / (np.linalg.norm(got, axis=-1) * np.linalg.norm(expected, axis=-1))
    assert np.min(cosines) >= 0.9999, cosines
    assert np.abs(got - expected).max() < 1e-4


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def embed(server, body: dict) -> httpx.Response:
    return httpx.post(server.url + "/embed", json=body, timeout=60)


def test_single_text_is_one_vector_equal_to_sentence_transformers(server, reference):
    response = embed(server, {"text": TEXTS[1], "consumer_group": "embed"})
    assert response.status_code == 200, response.text
    vector = response.json()["result"]
    assert len(vector) == 384 and all(isinstance(x, float) for x in vector)
    assert_same_vectors(vector, reference.encode(TEXTS[1]))
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)  # the model's Normalize module
    assert "x-assay-truncated" not in response.headers


def test_batch_is_one_vector_per_text_in_order_with_a_long_text_truncated_at_256(server, reference):
    assert len(reference.tokenizer(LONG)["input_ids"]) > 300
    texts = [*TEXTS, LONG]
    response = embed(server, {"text": texts, "consumer_group": "embed"})
    assert response.status_code == 200, response.text
    assert_same_vectors(response.json()["result"], reference.encode(texts))
    assert response.headers["x-assay-truncated"] == str(len(TEXTS))


def test_takeoff_client_embed_goes_to_the_openai_port(server, reference):
    client = TakeoffClient(base_url="http://127.0.0.1", port=server.port, mgmt_port=server.management_port,
                           oai_port=server.openai_port)
    response = client.embed(TEXTS, consumer_group="embed")
    assert response["object"] == "list" and response["model"] == "embed"
    assert [item["index"] for item in response["data"]] == list(range(len(TEXTS)))
    assert_same_vectors([item["embedding"] for item in response["data"]], reference.encode(TEXTS))
    single = client.embed(TEXTS[0], consumer_group="embed")
    assert_same_vectors([single["data"][0]["embedding"]], reference.encode([TEXTS[0]]))
    with pytest.raises(TakeoffException) as raised:
        client.embed(TEXTS, consumer_group="primary")  # a classification group
    assert raised.value.status_code == 422


@pytest.mark.parametrize("encoding_format", [None, "float", "base64"])
def test_openai_sdk_embeddings(server, reference, encoding_format):
    client = openai.OpenAI(base_url=server.openai_url + "/v1", api_key="unused")
    texts = [*TEXTS, LONG]
    # Left out, the SDK asks for base64 and decodes it itself.
    extra = {"encoding_format": encoding_format} if encoding_format else {}
    response = client.embeddings.create(model="embed", input=texts, **extra)
    assert response.model == "embed"
    assert [item.index for item in response.data] == list(range(len(texts)))
    vectors = [item.embedding for item in response.data]
    if encoding_format == "base64":  # asked for explicitly, the SDK hands the strings over as they came
        vectors = [np.frombuffer(base64.b64decode(vector), dtype="<f4") for vector in vectors]
    assert_same_vectors(vectors, reference.encode(texts))
    tokens = sum(min(256, len(ids)) for ids in reference.tokenizer(texts)["input_ids"])
    assert response.usage.prompt_tokens == response.usage.total_tokens == tokens


def test_base64_is_the_float_vector_as_little_endian_float32(server):
    body = {"model": "embed", "input": TEXTS}
    floats = httpx.post(server.openai_url + "/v1/embeddings", json=body).json()
    packed = httpx.post(server.openai_url + "/v1/embeddings", json={**body, "encoding_format": "base64"}).json()
    for plain, encoded in zip(floats["data"], packed["data"], strict=True):
        decoded = np.frombuffer(base64.b64decode(encoded["embedding"]), dtype="<f4")
        assert decoded.tolist() == np.asarray(plain["embedding"], dtype=np.float32).tolist()
    assert set(floats) == {"object", "data", "model", "usage"}
    assert floats["data"][0]["object"] == "embedding"


def test_classify_pairs_give_the_cosine_of_both_sides(server, reference):
    pairs = [[QUERY, doc] for doc in DOCS]
    response = httpx.post(server.url + "/classify", json={"text": pairs, "consumer_group": "embed"})
    assert response.status_code == 200, response.text
    rows = response.json()["result"]
    query, *docs = reference.encode([QUERY, *DOCS])
    assert len(rows) == len(DOCS)
    for row, doc in zip(rows, docs, strict=True):
        assert len(row) == 1
        assert row[0] == pytest.approx(cosine(query, doc), abs=1e-5)


def test_classify_pairs_report_truncation_of_either_side(server, reference):
    pairs = [["short", LONG], [LONG, "short"], ["short", "short"]]
    response = httpx.post(server.url + "/classify", json={"text": pairs, "consumer_group": "embed"})
    assert response.status_code == 200, response.text
    assert response.headers["x-assay-truncated"] == "0,1"
    short, long = reference.encode(["short", LONG])
    rows = response.json()["result"]
    assert rows[0][0] == pytest.approx(cosine(short, long), abs=1e-5) == pytest.approx(rows[1][0], abs=1e-5)
    assert rows[2][0] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("text", [TEXTS[0], TEXTS])
def test_single_texts_to_classify_on_an_embedding_group_point_to_embed(server, text):
    response = httpx.post(server.url + "/classify", json={"text": text, "consumer_group": "embed"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_input" and "/embed" in error["message"]


@pytest.mark.parametrize("group", ["primary", "qa"])
def test_embedding_requests_to_other_groups_point_to_classify(server, group):
    for url, body in [(server.url + "/embed", {"text": TEXTS, "consumer_group": group}),
                      (server.openai_url + "/v1/embeddings", {"input": TEXTS, "model": group})]:
        response = httpx.post(url, json=body)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["type"] == "invalid_input"
        assert "embedding model" in error["message"] and "/classify" in error["message"], error["message"]


def test_other_classify_options_are_refused_on_an_embedding_group(server):
    body = {"text": [[QUERY, DOCS[0]]], "consumer_group": "embed", "return": "labels"}
    response = httpx.post(server.url + "/classify", json=body)
    assert response.status_code == 422
    assert "embedding model, which cannot return labels" in response.json()["error"]["message"]
    body = {"text": QUERY, "candidate_labels": ["a", "b"], "consumer_group": "embed"}
    response = httpx.post(server.url + "/zero_shot", json=body)
    assert response.status_code == 422 and "embedding model" in response.json()["error"]["message"]


@pytest.mark.parametrize("raw_scores", [False, True])
def test_rerank_on_an_embedding_group_ranks_by_cosine(server, reference, raw_scores):
    query, *docs = reference.encode([QUERY, *DOCS])
    cosines = [cosine(query, doc) for doc in docs]
    order = sorted(range(len(DOCS)), key=lambda i: -cosines[i])
    body = {"model": "embed", "query": QUERY, "documents": DOCS, "raw_scores": raw_scores, "return_documents": True}
    response = httpx.post(server.url + "/v2/rerank", json=body)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == order
    for r in results:
        assert r["relevance_score"] == pytest.approx(cosines[r["index"]], abs=1e-5)  # the cosine, never squashed
        assert r["document"] == {"text": DOCS[r["index"]]}
    tei = httpx.post(server.url + "/rerank", json={"query": QUERY, "texts": DOCS, "consumer_group": "embed"}).json()
    assert [r["index"] for r in tei] == order


@torch.inference_mode()
def test_chunked_rerank_scores_a_long_document_by_its_best_window(server, reference):
    long_doc = " ".join(["Feet itching is a symptom of athletes foot."] * 60 + ["The puppy is light blue."] * 3)
    body = {"query": QUERY, "texts": [long_doc, DOCS[1]], "consumer_group": "embed", "chunking": True}
    response = httpx.post(server.url + "/rerank", json=body)
    assert response.status_code == 200, response.text
    assert "x-assay-truncated" not in response.headers
    by_index = {r["index"]: r["score"] for r in response.json()}
    windows = reference.tokenizer(long_doc, truncation=True, max_length=256, stride=CHUNK_OVERLAP,
                                  return_overflowing_tokens=True, return_tensors="pt", padding=True)
    windows.pop("overflow_to_sample_mapping")
    window_vectors = reference.forward(dict(windows))["sentence_embedding"].numpy()
    query = reference.encode(QUERY)
    window_cosines = [cosine(query, vector) for vector in window_vectors]
    assert len(window_cosines) > 1 and max(window_cosines) > window_cosines[0]
    assert by_index[0] == pytest.approx(max(window_cosines), abs=1e-5)
    assert by_index[1] == pytest.approx(cosine(query, reference.encode(DOCS[1])), abs=1e-5)


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/embed", {"text": TEXTS, "consumer_group": "nope"}, 404, "embed"),
        ("/embed", {"text": [], "consumer_group": "embed"}, 422, "empty list"),
        ("/embed", {"consumer_group": "embed"}, 422, "text"),
        ("/embed", {"text": [[QUERY, DOCS[0]]], "consumer_group": "embed"}, 422, "/classify"),
        ("/embed", {"text": ["a", 1], "consumer_group": "embed"}, 422, "text[1] must be a string"),
        ("/embed", {"text": "a", "consumer_group": "embed", "extra": 1}, 422, "extra"),
        ("/embed", {"text": ["a"] * 1001, "consumer_group": "embed"}, 413, "TAKEOFF_MAX_USER_BATCH_SIZE"),
        ("/v1/embeddings", {"input": TEXTS, "model": "nope"}, 404, "embed"),
        ("/v1/embeddings", {"input": [], "model": "embed"}, 422, "empty list"),
        ("/v1/embeddings", {"input": [1, 2, 3], "model": "embed"}, 422, "token-id arrays are not supported"),
        ("/v1/embeddings", {"input": [[1, 2], [3]], "model": "embed"}, 422, "token-id arrays are not supported"),
        ("/v1/embeddings", {"input": TEXTS, "model": "embed", "dimensions": 128}, 422, "384"),
        ("/v1/embeddings", {"input": TEXTS, "model": "embed", "encoding_format": "int8"}, 422, "encoding_format"),
        ("/v1/embeddings", {"input": TEXTS}, 422, "embedding model"),  # no model: primary, a classifier
    ],
)
def test_embedding_errors(server, path, body, status, words):
    base = server.openai_url if path.startswith("/v1") else server.url
    response = httpx.post(base + path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in error["message"], error["message"]
    assert error["request_id"] == response.headers["x-request-id"]


def test_dimensions_equal_to_the_model_are_accepted(server):
    body = {"input": "ok", "model": "embed", "dimensions": 384, "user": "someone"}
    response = httpx.post(server.openai_url + "/v1/embeddings", json=body)
    assert response.status_code == 200, response.text
    assert len(response.json()["data"][0]["embedding"]) == 384


def test_embedding_group_is_reported_with_its_task(server):
    (reader,) = httpx.get(server.management_url + "/reader_groups").json()["embed"]
    assert reader["task"] == "embedding" and reader["max_sequence_length"] == 256


def test_the_openai_app_shares_the_error_shape_and_request_ids(server):
    response = httpx.post(server.openai_url + "/v1/embeddings", content=b"{", headers={"x-request-id": "abc"})
    assert response.status_code == 400
    assert response.json()["error"] == {"type": "malformed_json", "message": "the request body is not valid JSON",
                                         "request_id": "abc"}
    assert httpx.get(server.openai_url + "/nowhere").json()["error"]["type"] == "not_found"
