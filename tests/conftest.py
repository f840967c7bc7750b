"""Shared fixtures: the test models (built once, cached) and one multi-group server for the end-to-end tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# ../shared beside the checkout holds the public datasets (also in CI's clean clone).
os.environ.setdefault("ASSAY_SHARED_DATA", str(ROOT.parent / "shared" / "data"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tests.model_factory import build_test_models  # noqa: E402
from tests.server import RunningServer, start_server  # noqa: E402

MODEL_CACHE = Path(os.environ.get("ASSAY_TEST_MODELS", ROOT / ".cache" / "test-models"))

#: consumer group -> test model, all served by one server in float32 (exact reference comparisons).
GROUPS = {
    "primary": "minilm-classifier",
    "rerank": "minilm-reranker",
    "qa": "minilm-qa",
    "roberta": "tiny-roberta",
    "xlm-roberta": "tiny-xlm-roberta",
    "deberta-v2": "tiny-deberta-v2",
    "distilbert": "tiny-distilbert",
    "electra": "tiny-electra",
    "roberta-qa": "tiny-roberta-qa",
    "multilabel": "minilm-multilabel",
    "nli": "minilm-nli",
    "embed": "minilm-embed",
}


@pytest.fixture(scope="session")
def models() -> dict[str, Path]:
    return build_test_models(MODEL_CACHE)


@pytest.fixture(scope="session")
def server(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    readers = {
        group: {"model_name": str(models[name]), "consumer_group": group, "dtype": "float32", "device": "cpu"}
        for group, name in GROUPS.items()
    }
    running = start_server(tmp_path_factory.mktemp("server"), readers=readers)
    yield running
    running.stop()
