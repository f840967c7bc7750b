"""Hostile input: property-based bodies for /classify (hypothesis) and schema-driven requests to both apps
(schemathesis, from each port's /openapi.json). Never a 5xx; every answer is a valid result or a valid error of
the one error shape; the server still gives correct logits afterwards. Example counts are bounded for speed."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import GROUPS
from tests.reference import reference_logits
from tests.server import RunningServer, start_server

FUZZ_SETTINGS = settings(max_examples=80, deadline=None, database=None, derandomize=True,
                         suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=12)
texts = (st.text(max_size=60) | st.just("") | st.integers(1000, 40_000).map(lambda n: "long " * (n // 5))
         | st.text(alphabet=st.characters(min_codepoint=0x80), max_size=300))
text_fields = (texts | st.lists(texts, max_size=6) | st.lists(st.lists(texts, max_size=3), max_size=4)
               | st.lists(texts | st.lists(texts, min_size=2, max_size=2) | json_values, max_size=4))
groups = st.sampled_from([*GROUPS, "", "nope"]) | st.none() | json_values
bodies = (st.fixed_dictionaries({"text": text_fields}, optional={"consumer_group": groups})
          | st.dictionaries(st.sampled_from(["text", "consumer_group", "extra"]) | st.text(max_size=6), json_values,
                            max_size=3)
          | json_values)
RAW = [b"", b"{", b'{"text": "\\ud800"}', b'{"text": ' * 2000, b"[" * 5000 + b"]" * 5000, b'{"text": 1e999}',
       b'{"text": "a", "text": ["b"]}', b"\xff\xfe", b'{"text": ["a"]}' + b"x",
       b'{"text": 123456789012345678901234567890}']


def check_answer(response: httpx.Response, body: Any = None) -> None:
    """A valid result or a valid error, never a 5xx or a traceback."""
    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text
    data = response.json()
    if response.status_code >= 400:
        assert set(data) == {"error"}, data
        assert set(data["error"]) == {"type", "message", "request_id"}, data
        assert all(isinstance(v, str) and v for v in data["error"].values()), data
        assert data["error"]["request_id"] == response.headers["x-request-id"]
        return
    if body is not None and "result" in data:
        result = data["result"]
        if isinstance(body["text"], str):
            assert all(isinstance(x, float) for x in result)
        else:
            assert len(result) == len(body["text"])


def assert_still_correct(server: RunningServer, models) -> None:
    text = ["still correct after the fuzzing", "ok"]
    response = httpx.post(server.url + "/classify", json={"text": text}, timeout=60)
    assert response.status_code == 200
    for item, row in zip(text, response.json()["result"], strict=True):
        assert row == pytest.approx(reference_logits(models["minilm-classifier"], item), abs=1e-4)


def test_hypothesis_bodies_for_classify(server, models):
    with httpx.Client(base_url=server.url, timeout=60) as client:

        @FUZZ_SETTINGS
        @given(body=bodies)
        def fuzz(body: Any) -> None:
            raw = json.dumps(body, ensure_ascii=False).encode()
            check_answer(client.post("/classify", content=raw, headers={"content-type": "application/json"}),
                         body if isinstance(body, dict) and isinstance(body.get("text"), (str, list)) else None)

        fuzz()
        for raw in RAW:
            check_answer(client.post("/classify", content=raw))
    assert server.process.poll() is None
    assert_still_correct(server, models)


def run_schema(base_url: str, headers: dict[str, str] | None = None, max_examples: int = 40,
               schema_headers: dict[str, str] | None = None) -> int:
    """Exercise every operation of an app's OpenAPI schema with valid and invalid requests; returns the count."""
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json", headers=schema_headers or headers or {})
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        strategy = (operation.as_strategy(schemathesis.GenerationMode.POSITIVE)
                    | operation.as_strategy(schemathesis.GenerationMode.NEGATIVE))

        @settings(FUZZ_SETTINGS, max_examples=max_examples)
        @given(case=strategy)
        def fuzz(case: schemathesis.Case) -> None:
            nonlocal calls
            response = case.call(base_url=base_url, headers=headers, timeout=60)
            calls += 1
            assert response.status_code < 500, (case.as_curl_command(), response.text)
            if response.status_code >= 400 and response.headers.get("content-type") == "application/json":
                check_answer(httpx.Response(response.status_code, headers=dict(response.headers),
                                            content=response.content))

        fuzz()
    return calls


def test_schemathesis_inference_app(server, models):
    assert run_schema(server.url) > 0
    assert_still_correct(server, models)


def test_schemathesis_openai_app(server, models):
    assert run_schema(server.openai_url) > 0
    assert server.process.poll() is None
    assert_still_correct(server, models)


def test_schemathesis_management_app(models, tmp_path):
    # A dedicated server: generated POST /reader and DELETE /reader calls must not touch the shared fixture.
    token = "fuzz-token"
    env = {"TAKEOFF_MANAGEMENT_TOKEN": token, "TAKEOFF_MODEL_ROOTS": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    running = start_server(tmp_path, env=env, args=["--model", str(models["minilm-classifier"]),
                                                    "--dtype", "float32", "--reader-id", "fixed"])
    try:
        auth = {"Authorization": f"Bearer {token}"}
        assert run_schema(running.management_url, headers=auth, max_examples=25) > 0
        # Without the token every call is a well-formed 401.
        assert run_schema(running.management_url, headers={}, max_examples=5, schema_headers=auth) > 0
        assert running.process.poll() is None
        groups = httpx.get(running.management_url + "/reader_groups", headers=auth).json()
        assert any(r["reader_id"] == "fixed" and r["status"] == "ready" for r in groups["primary"])
        assert_still_correct(running, models)
    finally:
        running.stop()
