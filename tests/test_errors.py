"""Malformed bodies get a 4xx JSON error naming the problem, and the server stays up and correct."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import GROUPS
from tests.reference import reference_logits

CASES = [
    # (body bytes or JSON, status, type, words the message must contain)
    (b"{not json", 400, "malformed_json", "not valid JSON"),
    (b"", 400, "malformed_json", "not valid JSON"),
    ([1, 2], 422, "invalid_input", "JSON object"),
    ({}, 422, "invalid_input", "'text'"),
    ({"consumer_group": "primary"}, 422, "invalid_input", "'text'"),
    ({"text": 5}, 422, "invalid_input", "must be a string"),
    ({"text": None}, 422, "invalid_input", "must be a string"),
    ({"text": []}, 422, "invalid_input", "empty list"),
    ({"text": [["a"]]}, 422, "invalid_input", "exactly two strings"),
    ({"text": [["a", "b", "c"]]}, 422, "invalid_input", "exactly two strings"),
    ({"text": [["a", 1]]}, 422, "invalid_input", "two strings"),
    ({"text": ["a", ["b", "c"]]}, 422, "invalid_input", "mixes strings and pairs"),
    ({"text": [{"a": 1}]}, 422, "invalid_input", "text[0]"),
    ({"text": "hi", "consumer_group": 3}, 422, "invalid_input", "consumer_group"),
    ({"text": "hi", "extra": 1}, 422, "invalid_input", "unknown key 'extra'"),
    ({"text": "hi", "consumer_group": "nope"}, 404, "not_found", "primary"),
    ({"text": "a question alone", "consumer_group": "qa"}, 422, "invalid_input", "[question, context] pairs"),
    ({"text": ["q1", "q2"], "consumer_group": "qa"}, 422, "invalid_input", "[question, context] pairs"),
]


@pytest.mark.parametrize(("body", "status", "type_", "words"), CASES)
def test_malformed_body_gets_its_error(server, body, status, type_, words):
    if isinstance(body, bytes):
        response = httpx.post(server.url + "/classify", content=body, headers={"content-type": "application/json"})
    else:
        response = httpx.post(server.url + "/classify", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == type_
    assert words in error["message"], error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text


def test_unknown_group_names_existing_groups(server):
    error = httpx.post(server.url + "/classify", json={"text": "x", "consumer_group": "nope"}).json()["error"]
    for group in GROUPS:
        assert group in error["message"]


def test_body_without_content_type_is_still_json(server, models):
    response = httpx.post(server.url + "/classify", content=b'{"text": "plain curl"}')
    assert response.status_code == 200
    assert response.json()["result"] == pytest.approx(reference_logits(models["minilm-classifier"], "plain curl"),
                                                      abs=1e-4)


def test_unknown_route_is_a_json_404(server):
    response = httpx.get(server.url + "/nowhere")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"


def test_server_is_correct_after_every_bad_request(server, models):
    for body, *_ in CASES:
        if isinstance(body, bytes):
            httpx.post(server.url + "/classify", content=body)
        else:
            httpx.post(server.url + "/classify", json=body)
    assert server.process.poll() is None
    response = httpx.post(server.url + "/classify", json={"text": ["still", "fine"]})
    assert response.status_code == 200
    for text, row in zip(["still", "fine"], response.json()["result"], strict=True):
        assert row == pytest.approx(reference_logits(models["minilm-classifier"], text), abs=1e-4)
