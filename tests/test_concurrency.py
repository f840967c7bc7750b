"""Dynamic batching under concurrency: every request gets exactly its own results, in its own order."""

from __future__ import annotations

import asyncio
import random
import threading

import httpx
import pytest
import torch

from assay.models.loading import load_model
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


def test_readers_loading_at_once_keep_their_own_dtype(models):
    # Each reader loads its model in its own thread, and transformers builds a model under a process-wide default
    # dtype: unguarded, concurrent loads left bf16 models with float32 layers (their first batch then failed with
    # "mat1 and mat2 must have the same dtype") and float32 models with bf16 ones.
    names = ["minilm-classifier", "minilm-qa", "tiny-roberta"]
    loads = [(name, dtype) for name in names for dtype in ("float32", "bfloat16")]
    found: dict[tuple[str, str], set[torch.dtype]] = {}

    def load(name: str, dtype: str) -> None:
        model = load_model(str(models[name]), dtype=dtype).model
        found[(name, dtype)] = {p.dtype for p in model.parameters() if p.is_floating_point()}

    threads = [threading.Thread(target=load, args=pair) for pair in loads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert found == {(name, dtype): {getattr(torch, dtype)} for name, dtype in loads}
    assert torch.get_default_dtype() == torch.float32
