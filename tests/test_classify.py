"""/classify end to end through takeoff-client, compared with direct transformers forward passes."""

from __future__ import annotations

import httpx
import pytest
from takeoff_client import TakeoffClient
from transformers import AutoTokenizer

from tests.conftest import GROUPS
from tests.reference import reference_logits

TEXTS = [
    "I loved this film, the acting was wonderful.",
    "Terrible. I want my money back.",
    "The meeting is at 3pm in room 12.",
    "ok",
    "A much longer sentence that goes on for a while, with commas, numbers like 1234 and punctuation!",
]
PAIRS = [
    ["What colour is the dog?", "The puppy is light blue."],
    ["What colour is the dog?", "Feet itching is a symptom of athletes foot, which is caused by a fungus."],
    ["What colour is the dog?", "Space is very big."],
    ["one day I will see the world.", "This sentence is about travel."],
]
CLASSIFICATION_GROUPS = [g for g, name in GROUPS.items() if "qa" not in name and "embed" not in name]


def close(row: list[float], expected: list[float], tol: float = 1e-4) -> bool:
    return len(row) == len(expected) and all(abs(a - b) <= tol for a, b in zip(row, expected, strict=True))


@pytest.fixture(scope="module")
def client(server) -> TakeoffClient:
    return TakeoffClient(base_url="http://127.0.0.1", port=server.port, mgmt_port=server.management_port)


@pytest.mark.parametrize("group", CLASSIFICATION_GROUPS)
def test_single_text_returns_one_row_equal_to_reference(client, models, group):
    folder = models[GROUPS[group]]
    response = client.classify(TEXTS[0], consumer_group=group)
    row = response["result"]
    assert isinstance(row, list) and all(isinstance(x, float) for x in row)
    assert close(row, reference_logits(folder, TEXTS[0]))


@pytest.mark.parametrize("group", CLASSIFICATION_GROUPS)
def test_batch_returns_rows_in_order_equal_to_reference(client, models, group):
    folder = models[GROUPS[group]]
    rows = client.classify(TEXTS, consumer_group=group)["result"]
    assert len(rows) == len(TEXTS)
    for text, row in zip(TEXTS, rows, strict=True):
        assert close(row, reference_logits(folder, text)), text


@pytest.mark.parametrize("group", CLASSIFICATION_GROUPS)
def test_pairs_are_encoded_as_text_pairs(client, models, group):
    folder = models[GROUPS[group]]
    rows = client.classify(PAIRS, consumer_group=group)["result"]
    assert len(rows) == len(PAIRS)
    for pair, row in zip(PAIRS, rows, strict=True):
        assert close(row, reference_logits(folder, pair)), pair
        # Joining the strings by hand gives other logits: the tokenizer's own pair encoding is used.
        assert not close(row, reference_logits(folder, pair[0] + " " + pair[1]), tol=1e-6)


def test_reranker_returns_one_logit_per_pair(client):
    rows = client.classify(PAIRS[:3], consumer_group="rerank")["result"]
    assert [len(r) for r in rows] == [1, 1, 1]


def test_missing_group_means_primary(server, models):
    import httpx

    response = httpx.post(server.url + "/classify", json={"text": TEXTS[1]})
    assert response.status_code == 200
    assert close(response.json()["result"], reference_logits(models[GROUPS["primary"]], TEXTS[1]))


def test_long_text_is_truncated_to_the_model_maximum_and_flagged(server, models):
    import httpx

    long_text = "word " * 2000
    response = httpx.post(server.url + "/classify", json={"text": [TEXTS[0], long_text], "consumer_group": "rerank"})
    assert response.status_code == 200
    assert response.headers["x-assay-truncated"] == "1"
    rows = response.json()["result"]
    assert close(rows[1], reference_logits(models[GROUPS["rerank"]], long_text))


def batch_tokens(server, group: str) -> tuple[float, float]:
    """The assay_batch_tokens histogram's sum and count for one group, from the management port's /metrics."""
    values = {}
    for row in httpx.get(server.management_url + "/metrics").text.splitlines():
        for part in ("sum", "count"):
            if row.startswith(f"assay_batch_tokens_{part}") and f'consumer_group="{group}"' in row:
                values[part] = float(row.split()[-1])
    return values.get("sum", 0.0), values.get("count", 0.0)


def test_a_reader_pads_to_a_multiple_of_8_and_the_logits_stay_exact(server, client, models):
    # Batches are padded to their longest rounded up to 8 (PAD_MULTIPLE), so that PyTorch's CPU attention meets
    # 64 sequence lengths instead of 512 and its unbounded per-length kernel cache stays small; masked padding
    # must not move a logit.
    group = "distilbert"
    folder = models[GROUPS[group]]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    lengths = [len(tokenizer(text)["input_ids"]) for text in TEXTS]
    assert any(length % 8 for length in lengths)
    before_sum, before_count = batch_tokens(server, group)
    for text in TEXTS:  # one at a time: each is a batch of one
        row = client.classify(text, consumer_group=group)["result"]
        assert close(row, reference_logits(folder, text))
    after_sum, after_count = batch_tokens(server, group)
    assert after_count - before_count == len(TEXTS)
    assert after_sum - before_sum == sum(-(-length // 8) * 8 for length in lengths)
