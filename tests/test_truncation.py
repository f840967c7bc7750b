"""Long classification inputs are truncated to the model's maximum length, named in X-Assay-Truncated, score
exactly as a transformers forward pass of the truncated input, and do not trouble takeoff-client."""

from __future__ import annotations

import httpx
import pytest
from takeoff_client import TakeoffClient

from tests.reference import reference_logits

LONG = "a very long review of a film that goes on and on " * 40  # well over tiny-roberta's 128 tokens
SHORT = "short"


def test_truncated_inputs_are_named_and_score_as_transformers(server, models):
    folder = models["tiny-roberta"]
    text = [SHORT, LONG, SHORT]
    response = httpx.post(server.url + "/classify", json={"text": text, "consumer_group": "roberta"})
    assert response.status_code == 200
    assert response.headers["x-assay-truncated"] == "1"
    for item, row in zip(text, response.json()["result"], strict=True):
        assert row == pytest.approx(reference_logits(folder, item), abs=1e-4)

    pairs = [[SHORT, LONG], [LONG, LONG], [SHORT, SHORT]]
    response = httpx.post(server.url + "/classify", json={"text": pairs, "consumer_group": "roberta"})
    assert response.headers["x-assay-truncated"] == "0,1"
    for pair, row in zip(pairs, response.json()["result"], strict=True):
        assert row == pytest.approx(reference_logits(folder, tuple(pair)), abs=1e-4)

    response = httpx.post(server.url + "/classify", json={"text": SHORT, "consumer_group": "roberta"})
    assert "x-assay-truncated" not in response.headers


def test_takeoff_client_reads_truncated_results(server, models):
    client = TakeoffClient(base_url="http://127.0.0.1", port=server.port)
    result = client.classify([LONG, SHORT], consumer_group="roberta")["result"]
    assert result[0] == pytest.approx(reference_logits(models["tiny-roberta"], LONG), abs=1e-4)
    assert result[1] == pytest.approx(reference_logits(models["tiny-roberta"], SHORT), abs=1e-4)
