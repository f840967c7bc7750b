"""A reader's process caps oneDNN's per-shape caches before its model runs, unless the user set them.

Uncapped, a bf16 reader gains hundreds of MB over a few hundred requests (a cached primitive per batch shape);
docs/performance.md has the measurement. The caps are environment variables oneDNN and ideep read when first
used, so what matters is that they are in place, in a fresh process, by the time a model loaded by Assay runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from assay import allocator
from assay.allocator import DEFAULT_TRIM_SECONDS, KERNEL_CACHE_LIMITS, TRIM_ENV, trim_interval_from_env

PROBE = """
import json, os, sys
from assay.models.loading import load_model
from assay.models.classification import ClassificationAdapter
from assay.models.adapter import InputKind, Inputs, pad_batch
import torch
adapter = ClassificationAdapter(load_model(sys.argv[1], dtype="bfloat16"))
features = adapter.encode(Inputs(kind=InputKind.SINGLE, items=["a short text", "and another one, a bit longer"]))
padded = pad_batch(features.input_ids, features.token_type_ids, adapter.pad_token_id, adapter.loaded.device)
with torch.inference_mode():
    adapter.forward(padded)
print(json.dumps({name: os.environ.get(name) for name in sys.argv[2:]}))
"""


def probe(folder: str, env: dict[str, str]) -> dict[str, str | None]:
    clean = {k: v for k, v in os.environ.items() if k not in KERNEL_CACHE_LIMITS}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, folder, *KERNEL_CACHE_LIMITS],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_loading_a_model_caps_the_kernel_caches(models):
    assert probe(str(models["minilm-classifier"]), {}) == KERNEL_CACHE_LIMITS


def test_a_users_own_cache_settings_are_kept(models):
    mine = {"LRU_CACHE_CAPACITY": "512", "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "2048"}
    assert probe(str(models["minilm-classifier"]), mine) == mine


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, DEFAULT_TRIM_SECONDS), ("2", 2.0), ("0", 0.0), ("off", None), ("OFF", None), ("-1", DEFAULT_TRIM_SECONDS),
     ("soon", DEFAULT_TRIM_SECONDS), ("nan", DEFAULT_TRIM_SECONDS)],
)
def test_the_heap_trim_interval_comes_from_the_environment(monkeypatch, value, expected):
    # Operators trade memory for throughput with ASSAY_HEAP_TRIM_SECONDS; a malformed value keeps the default.
    if value is None:
        monkeypatch.delenv(TRIM_ENV, raising=False)
    else:
        monkeypatch.setenv(TRIM_ENV, value)
    assert trim_interval_from_env() == expected


def test_a_trimmer_that_is_off_never_trims(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "_MALLOC_TRIM", calls.append)
    allocator.HeapTrimmer(None, idle_interval=0).after_batch(queue_empty=True)
    assert calls == []
    allocator.HeapTrimmer(0.0, idle_interval=0).after_batch(queue_empty=False)
    assert calls == [0]
