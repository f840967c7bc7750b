"""GET /groups on the inference port: every consumer group with its model, task, dtype and status, and what its
model accepts (labels, reranking, zero-shot), read-only and without reader ids."""

from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

import httpx

from assay.api.groups import GroupsResponse
from assay.config import ReaderConfig
from assay.engine.registry import ReaderRegistry
from assay.errors import ModelLoadError
from assay.models.adapter import Capabilities
from tests.conftest import GROUPS


def test_groups_lists_every_group_with_what_its_model_accepts(server, models):
    response = httpx.get(server.url + "/groups")
    assert response.status_code == 200
    data = response.json()
    GroupsResponse.model_validate(data)
    assert [group["name"] for group in data["groups"]] == sorted(GROUPS)
    assert "reader_id" not in response.text
    for group in data["groups"]:
        name = GROUPS[group["name"]]
        config = json.loads((models[name] / "config.json").read_text())
        assert (group["model_name"], group["dtype"], group["status"]) == (str(models[name]), "float32", "ready")
        assert (group["readers"], group["ready_readers"], group["error"]) == (1, 1, None)
        if config["architectures"][0].endswith("Model"):  # an embedding model: pairs score by cosine
            assert group["task"] == "embedding"
            assert (group["num_labels"], group["labels"], group["reranker"], group["zero_shot"]) == (
                None, None, True, False)
            continue
        if config["architectures"][0].endswith("ForQuestionAnswering"):
            assert group["task"] == "question_answering"
            assert (group["num_labels"], group["labels"], group["reranker"], group["zero_shot"]) == (
                None, None, False, False)
            continue
        labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
        assert group["task"] == "classification"
        assert (group["num_labels"], group["labels"]) == (len(labels), labels)
        assert group["reranker"] is (len(labels) == 1)
        assert group["zero_shot"] is any(label.lower().startswith("entail") for label in labels)
    by_name = {group["name"]: group for group in data["groups"]}
    assert by_name["nli"]["zero_shot"] and by_name["rerank"]["reranker"] and not by_name["primary"]["zero_shot"]


class _FakeAdapter:
    task_name = "classification"
    pad_token_id = 0
    loaded = SimpleNamespace(max_length=77, dtype="torch.float32")

    def capabilities(self) -> Capabilities:
        return Capabilities(num_labels=1, labels=("LABEL_0",), reranker=True)


def test_a_group_reports_loading_then_ready_and_failed_with_the_error():
    release = threading.Event()

    def opener(config: ReaderConfig) -> _FakeAdapter:
        if config.model_name == "broken":
            raise ModelLoadError("cannot load model 'broken': no such folder")
        release.wait(10)
        return _FakeAdapter()

    registry = ReaderRegistry(max_queued=10, opener=opener)
    try:
        registry.add_reader(ReaderConfig(model_name="fake", consumer_group="rerank", dtype="float32"))
        broken = registry.add_reader(ReaderConfig(model_name="broken", consumer_group="broken", dtype="float32"))
        broken.loaded.wait(10)
        failed, loading = registry.group_summaries()
        assert (loading.name, loading.status, loading.task, loading.dtype) == ("rerank", "loading", None, "float32")
        assert (loading.ready_readers, loading.capabilities, loading.error) == (0, Capabilities(), None)
        assert (failed.name, failed.status, failed.model_name) == ("broken", "failed", "broken")
        assert "no such folder" in (failed.error or "")

        release.set()
        deadline = time.monotonic() + 10
        while registry.group_summaries()[1].status != "ready" and time.monotonic() < deadline:
            time.sleep(0.01)
        ready = registry.group_summaries()[1]
        assert (ready.status, ready.task, ready.max_sequence_length, ready.ready_readers) == (
            "ready", "classification", 77, 1)
        assert ready.capabilities == Capabilities(num_labels=1, labels=("LABEL_0",), reranker=True)
    finally:
        release.set()
        registry.close()
