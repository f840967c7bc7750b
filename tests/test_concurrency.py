"""Dynamic batching under concurrency: every request gets exactly its own results, in its own order."""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest

from tests.conftest import GROUPS
from tests.reference import reference_logits

WORDS = ["the", "a", "dog", "cat", "blue", "light", "space", "big", "fungus", "foot", "travel", "world", "cooking",
         "science", "sport", "river"]


def make_request(rng: random.Random) -> dict:
    group = rng.choice(["primary", "rerank", "roberta", "deberta-v2"])
    form = rng.choice(["single", "batch", "pairs"])

    def sentence() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 60)))

    if form == "single":
        text = sentence()
    elif form == "batch":
        text = [sentence() for _ in range(rng.randint(1, 70))]  # some larger than max_batch_size (32)
    else:
        text = [[sentence(), sentence()] for _ in range(rng.randint(1, 40))]
    return {"text": text, "consumer_group": group}


def test_fifty_concurrent_requests_each_get_their_own_results(server, models):
    rng = random.Random(7)
    bodies = [make_request(rng) for _ in range(50)]

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120) as client:
            return await asyncio.gather(*(client.post(server.url + "/classify", json=b) for b in bodies))

    responses = asyncio.run(run())
    for body, response in zip(bodies, responses, strict=True):
        assert response.status_code == 200, response.text
        result = response.json()["result"]
        folder = models[GROUPS[body["consumer_group"]]]
        if isinstance(body["text"], str):
            assert result == pytest.approx(reference_logits(folder, body["text"]), abs=1e-4)
        else:
            assert len(result) == len(body["text"])
            for item, row in zip(body["text"], result, strict=True):
                assert row == pytest.approx(reference_logits(folder, item), abs=1e-4)
