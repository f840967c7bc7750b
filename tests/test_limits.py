"""Each limit at its boundary (exactly at it passes, one over fails with 413), Takeoff's variable names, the body
limit enforced while reading (chunked too), and a bounded overload burst that gets only right answers or 429s."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from pathlib import Path

import httpx
import pytest

from assay.config import ServerConfig, build_config
from tests.reference import reference_logits
from tests.server import RunningServer, start_server

BODY_LIMIT = 2000
BATCH_LIMIT = 5
TEXT_LIMIT = 100

LIMIT_ENV = {
    "TAKEOFF_BODY_SIZE_LIMIT_BYTES": str(BODY_LIMIT),
    "TAKEOFF_MAX_USER_BATCH_SIZE": str(BATCH_LIMIT),
    "TAKEOFF_MAX_PROMPT_STRING_BYTES": str(TEXT_LIMIT),
}


def test_takeoff_variable_names_and_defaults():
    defaults = ServerConfig()
    assert defaults.body_size_limit_bytes == 2 * 1024 * 1024
    assert defaults.max_user_batch_size == 1000
    assert defaults.max_prompt_string_bytes == 150_000
    assert defaults.management_host == "127.0.0.1"
    assert defaults.management_token is None
    env = {**LIMIT_ENV, "TAKEOFF_MAX_QUEUED_REQUESTS": "7", "TAKEOFF_MANAGEMENT_TOKEN": "s3cret",
           "TAKEOFF_DRAIN_TIMEOUT_SECONDS": "4.5", "TAKEOFF_MODEL_ROOTS": "/models,/more-models"}
    server = build_config(config_file=None, server_flags={}, reader_flags={}, environ=env).server
    assert (server.body_size_limit_bytes, server.max_user_batch_size, server.max_prompt_string_bytes) == (
        BODY_LIMIT, BATCH_LIMIT, TEXT_LIMIT)
    assert server.max_queued_requests == 7
    assert server.management_token == "s3cret"
    assert server.drain_timeout_seconds == 4.5
    assert server.model_roots == ["/models", "/more-models"]


@pytest.fixture(scope="module")
def limited(models, tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("limits"), env=LIMIT_ENV,
                           args=["--model", str(models["tiny-roberta"]), "--dtype", "float32"])
    yield running
    running.stop()


def padded_body(texts: list[str], size: int) -> bytes:
    """A JSON body of exactly ``size`` bytes (whitespace padding is valid JSON)."""
    raw = json.dumps({"text": texts}).encode()
    assert len(raw) <= size
    return raw[:-1] + b" " * (size - len(raw)) + b"}"


def post(server: RunningServer, content, **headers: str) -> httpx.Response:
    return httpx.post(server.url + "/classify", content=content,
                      headers={"content-type": "application/json", **headers}, timeout=60)


def assert_too_large(response: httpx.Response, words: str) -> None:
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["type"] == "too_large"
    assert words in error["message"]
    assert error["request_id"] == response.headers["x-request-id"]


def test_body_size_at_and_over_the_limit(limited, models):
    at_limit = padded_body(["body at the limit"], BODY_LIMIT)
    response = post(limited, at_limit)
    assert response.status_code == 200, response.text
    assert response.json()["result"][0] == pytest.approx(
        reference_logits(models["tiny-roberta"], "body at the limit"), abs=1e-4)
    assert_too_large(post(limited, padded_body(["body over the limit"], BODY_LIMIT + 1)), str(BODY_LIMIT))


def test_chunked_body_at_and_over_the_limit(limited):
    def chunks(body: bytes):
        for i in range(0, len(body), 300):
            yield body[i:i + 300]

    # A generator body has no Content-Length: httpx sends it chunked, so only the running count can catch it.
    assert post(limited, chunks(padded_body(["chunked"], BODY_LIMIT))).status_code == 200
    assert_too_large(post(limited, chunks(padded_body(["chunked"], BODY_LIMIT + 1))), str(BODY_LIMIT))


def test_body_limit_is_enforced_before_the_body_ends(limited):
    """A chunked body that never ends still gets its 413 once it passes the limit: it is never buffered whole."""
    with socket.create_connection(("127.0.0.1", limited.port), timeout=30) as sock:
        sock.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b'{"text": "' + b"x" * (BODY_LIMIT + 10)
        sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))  # no terminating chunk: the body is still open
        reply = b""
        while b"\r\n\r\n" not in reply:
            data = sock.recv(4096)
            assert data, "connection closed without a response"
            reply += data
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]


def test_texts_per_request_at_and_over_the_limit(limited):
    assert post(limited, json.dumps({"text": ["t"] * BATCH_LIMIT})).status_code == 200
    pairs = [["q", "d"]] * (BATCH_LIMIT + 1)
    assert_too_large(post(limited, json.dumps({"text": ["t"] * (BATCH_LIMIT + 1)})), "TAKEOFF_MAX_USER_BATCH_SIZE")
    assert_too_large(post(limited, json.dumps({"text": pairs})), "TAKEOFF_MAX_USER_BATCH_SIZE")


@pytest.mark.parametrize("char", ["x", "é", "€", "🙂"])
def test_bytes_per_text_at_and_over_the_limit(limited, char):
    width = len(char.encode())
    at_limit = char * (TEXT_LIMIT // width) + "x" * (TEXT_LIMIT % width)
    assert len(at_limit.encode()) == TEXT_LIMIT
    for text in ([at_limit], [["q", at_limit]], at_limit):
        assert post(limited, json.dumps({"text": text})).status_code == 200
    over = at_limit + "x"
    for text in ([over], [["q", over]], [[over, "d"]], over):
        assert_too_large(post(limited, json.dumps({"text": text})), "TAKEOFF_MAX_PROMPT_STRING_BYTES")


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))


def test_an_overload_burst_gets_right_answers_or_429(models, tmp_path):
    folder = models["tiny-roberta"]
    running = start_server(tmp_path, env={"TAKEOFF_MAX_QUEUED_REQUESTS": "16"},
                           args=["--model", str(folder), "--dtype", "float32", "--max-batch-size", "4"])
    try:
        bodies = [{"text": [f"request {i} item {j} " + "word " * (i % 13) for j in range(4)]} for i in range(200)]

        async def burst() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=200)
            async with httpx.AsyncClient(timeout=120, limits=limits) as client:
                return await asyncio.gather(*(client.post(running.url + "/classify", json=b) for b in bodies))

        post(running, json.dumps({"text": ["warm up"]}))
        baseline = rss_kib(running.process.pid)
        for _ in range(2):
            responses = asyncio.run(burst())
            codes = [r.status_code for r in responses]
            assert set(codes) <= {200, 429}, sorted(set(codes))
            assert 200 in codes and 429 in codes, "the burst should both be served and shed"
            for body, response in zip(bodies, responses, strict=True):
                if response.status_code == 429:
                    assert response.json()["error"]["type"] == "overloaded"
                    assert int(response.headers["retry-after"]) >= 1
                    continue
                rows = response.json()["result"]
                assert len(rows) == len(body["text"])
                for text, row in zip(body["text"], rows, strict=True):
                    assert row == pytest.approx(reference_logits(folder, text), abs=1e-4)
        assert rss_kib(running.process.pid) < baseline + 150 * 1024
        # Nothing is left queued: a lone request is served at once.
        assert post(running, json.dumps({"text": ["after the burst"]})).status_code == 200
    finally:
        assert running.stop() == 0
