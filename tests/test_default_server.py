"""`assay serve` with no model configured: the built-in groups answer the Takeoff documentation's examples, through
takeoff-client, offline, with models assembled into a fresh cache on first use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from takeoff_client import TakeoffClient

from tests.server import RunningServer, start_server

QUERY = "What colour is the dog?"
DOCS = ["The puppy is light blue.", "Feet itching is a symptom of athletes foot, which is caused by a fungus.",
        "Space is very big."]


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("default")
    running = start_server(tmp, env={"ASSAY_CACHE_DIR": str(tmp / "cache")}, timeout=300)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(default_server: RunningServer) -> TakeoffClient:
    return TakeoffClient(base_url="http://127.0.0.1", port=default_server.port,
                         mgmt_port=default_server.management_port, oai_port=default_server.openai_port)


def test_serves_every_builtin_group(default_server: RunningServer) -> None:
    groups = httpx.get(default_server.management_url + "/reader_groups").json()
    assert set(groups) == {"primary", "sentiment", "nli", "qa", "question-type"}
    tasks = {group: readers[0]["task"] for group, readers in groups.items()}
    assert tasks == {"primary": "embedding", "sentiment": "classification", "nli": "classification",
                     "qa": "question_answering", "question-type": "classification"}
    assert all(readers[0]["model_name"] == "builtin:" + {"primary": "embed"}.get(g, g) for g, readers in groups.items())
    cache = Path(default_server.log_path.parent / "cache" / "builtin")
    assert sorted(p.name.rsplit("-", 1)[0] for p in cache.iterdir() if not p.name.startswith(".")) == [
        "nli", "qa", "question-type", "sentiment"]


def test_reranking_example_ranks_the_puppy_first_by_a_clear_margin(client: TakeoffClient) -> None:
    scores = [row[0] for row in client.classify([[QUERY, doc] for doc in DOCS], consumer_group="primary")["result"]]
    assert np.argmax(scores) == 0
    assert scores[0] - max(scores[1:]) > 0.2, scores


def test_zero_shot_example_puts_travel_first(client: TakeoffClient) -> None:
    premise = "one day I will see the world."
    hypotheses = [f"This sentence is about {topic}." for topic in ("travel", "cooking", "dancing")]
    rows = client.classify([[premise, h] for h in hypotheses], consumer_group="nli")["result"]
    entailment = [row[0] for row in rows]  # id2label 0: entailment
    assert np.argmax(entailment) == 0, rows


def test_zero_shot_endpoint_puts_travel_first(default_server: RunningServer) -> None:
    body = {"text": "One day I will see the world.", "candidate_labels": ["travel", "cooking", "dancing"],
            "consumer_group": "nli"}
    result = httpx.post(default_server.url + "/zero_shot", json=body, timeout=60).json()["result"]
    assert result["labels"][0] == "travel", result


def test_question_answering_example_finds_london(client: TakeoffClient) -> None:
    pairs = [["what does Titan Takeoff do?", "The Titan Takeoff Inference Stack makes building, deploying and "
              "scaling Generative AI applications in secure environments, effortless."],
             ["where is TitanML based?", "TitanML is a london-based AI startup"]]
    answers = client.classify(pairs, consumer_group="qa")["result"]
    assert len(answers) == 2 and all(isinstance(a, str) and a for a in answers)
    assert "london" in answers[1].lower(), answers
    assert answers[0] in pairs[0][1]


def test_interfacing_example_science_beats_sport(client: TakeoffClient) -> None:
    title = "NASAs Hubble Traces String of Pearls Star Clusters in Galaxy Collisions"
    rows = client.classify([[title, "This is a sentence about science."], [title, "This is a sentence about sport."]],
                           consumer_group="primary")["result"]
    assert rows[0][0] > rows[1][0], rows


def test_sentiment_and_question_type(default_server: RunningServer) -> None:
    body = {"text": ["I love this film, it is wonderful.", "A dull, lifeless and boring mess."],
            "consumer_group": "sentiment", "return": "labels", "top_k": 1}
    labels = httpx.post(default_server.url + "/classify", json=body, timeout=60).json()["result"]
    assert [row[0]["label"] for row in labels] == ["positive", "negative"]
    body = {"text": ["Where is the Eiffel Tower?", "How many people live in Tokyo?", "Who wrote Hamlet?"],
            "consumer_group": "question-type", "return": "labels", "top_k": 1}
    labels = httpx.post(default_server.url + "/classify", json=body, timeout=60).json()["result"]
    assert [row[0]["label"] for row in labels] == ["LOC", "NUM", "HUM"]


def test_embed_through_takeoff_client(client: TakeoffClient) -> None:
    response = client.embed(["The puppy is light blue.", "A small dog with blue fur."], consumer_group="primary")
    matrix = np.array([item["embedding"] for item in response["data"]])
    assert matrix.shape == (2, 384)
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-3)
    assert float(matrix[0] @ matrix[1]) > 0.5
