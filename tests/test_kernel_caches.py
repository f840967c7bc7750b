"""A reader's process caps oneDNN's per-shape caches before its model runs, unless the user set them.

Uncapped, a bf16 reader gains hundreds of MB over a few hundred requests (a cached primitive per batch shape);
docs/performance.md has the measurement. The caps are environment variables oneDNN and ideep read when first
used, so what matters is that they are in place, in a fresh process, by the time a model loaded by Assay runs.
"""

from __future__ import annotations

import asyncio
import json
import mmap
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from assay import allocator
from assay.allocator import DEFAULT_TRIM_MIB, KERNEL_CACHE_LIMITS, TRIM_ENV, trim_headroom_from_env
from assay.config import ReaderConfig
from assay.engine.registry import ReaderRegistry
from assay.engine.work import Ticket, WorkItem

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
    [(None, DEFAULT_TRIM_MIB), ("512", 512.0), ("0", 0.0), ("off", None), ("OFF", None), ("-1", DEFAULT_TRIM_MIB),
     ("lots", DEFAULT_TRIM_MIB), ("nan", DEFAULT_TRIM_MIB)],
)
def test_the_heap_trim_headroom_comes_from_the_environment(monkeypatch, value, expected):
    # Operators trade memory for throughput with ASSAY_HEAP_TRIM_MIB; a malformed value keeps the default.
    if value is None:
        monkeypatch.delenv(TRIM_ENV, raising=False)
    else:
        monkeypatch.setenv(TRIM_ENV, value)
    assert trim_headroom_from_env() == expected


def test_a_trimmer_that_is_off_never_trims(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "_MALLOC_TRIM", calls.append)
    off = allocator.HeapTrimmer(None, idle_after=0)
    off.after_batch()
    off.when_idle()
    assert calls == [] and off.idle_timeout() is None


def test_under_load_a_reader_trims_only_once_the_process_has_grown_by_the_headroom(monkeypatch):
    # A trim makes the next batches fault their memory back in, so under load it happens only when the resident
    # size has risen by the headroom since the last trim (by any reader: RSS is the process's); once the reader
    # idles, what the batches left is handed back at once.
    mib = 1 << 20
    rss = [1000 * mib]
    calls = []

    def trim(pad):  # hands back all but 20 MiB of what the process grew by
        calls.append(pad)
        rss[0] = 1020 * mib

    monkeypatch.setattr(allocator, "_MALLOC_TRIM", trim)
    monkeypatch.setattr(allocator, "resident_bytes", lambda: rss[0])
    monkeypatch.setattr(allocator._Baseline, "rss", None)
    trimmer = allocator.HeapTrimmer(headroom_mib=100, idle_after=0.05)
    other_reader = allocator.HeapTrimmer(headroom_mib=100, idle_after=0.05)
    assert trimmer.idle_timeout() is None  # nothing ran yet: nothing to hand back
    trimmer.after_batch()  # the first batch sets the baseline: 1000 MiB
    for grown in (50, 99):
        rss[0] = (1000 + grown) * mib
        trimmer.after_batch()
    assert calls == []  # grown 99 MiB < 100: no trim
    rss[0] = 1100 * mib
    other_reader.after_batch()
    assert calls == [0]  # grown by the headroom: trimmed, and growth now counts from the size after the trim
    trimmer.after_batch()
    rss[0] = 1119 * mib
    trimmer.after_batch()
    assert calls == [0]
    rss[0] = 1120 * mib
    trimmer.after_batch()
    assert calls == [0, 0]
    trimmer.after_batch()  # a batch since the trim: the reader has something to hand back when it idles
    assert trimmer.idle_timeout() == 0.05
    trimmer.when_idle()
    assert calls == [0, 0, 0] and trimmer.idle_timeout() is None
    trimmer.when_idle()
    assert calls == [0, 0, 0]  # idle again with no batch in between: nothing new to trim
    every_batch = allocator.HeapTrimmer(headroom_mib=0, idle_after=0.05)
    every_batch.after_batch()
    every_batch.after_batch()
    assert calls == [0, 0, 0, 0, 0]


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs procfs")
def test_the_resident_size_is_read_from_the_kernel():
    # A fresh anonymous mapping, written through: 64 MiB of new resident pages (a numpy array could reuse heap
    # pages an earlier test left resident, and not move the RSS at all).
    before = allocator.resident_bytes()
    with mmap.mmap(-1, 64 << 20) as block:
        block.write(b"\x01" * (64 << 20))
        after = allocator.resident_bytes()
    assert before is not None and after is not None
    assert after - before >= 60 << 20


class _CountingAdapter:
    """Stands in for a model: one output per row, so that a reader's loop (take, run, trim) runs for real."""

    task_name = "classification"
    pad_token_id = 0
    loaded = SimpleNamespace(max_length=64, dtype=torch.float32, device=torch.device("cpu"))

    def forward(self, padded):
        return [np.zeros(1, dtype=np.float32) for _ in range(padded.input_ids.shape[0])]


def test_a_reader_hands_its_heap_back_once_it_idles(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "_MALLOC_TRIM", calls.append)
    monkeypatch.setenv(TRIM_ENV, "100000")  # no trim by growth within this test
    registry = ReaderRegistry(max_queued=10, opener=lambda config: _CountingAdapter())
    loop = asyncio.new_event_loop()
    try:
        reader = registry.add_reader(ReaderConfig(model_name="fake", consumer_group="g", dtype="float32"))
        assert reader.loaded.wait(10)
        time.sleep(0.3)
        assert calls == []  # idle since it loaded, with no batch run: nothing to hand back
        ticket = Ticket(2, loop)
        registry.group("g").queue.put([WorkItem(ticket, i, np.ones(5, dtype=np.int64), None) for i in range(2)])
        deadline = time.monotonic() + 10
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert reader.batches_run == 1 and calls == [0]  # the batch ran, then ~50 ms of no work: one trim
        time.sleep(0.3)
        assert calls == [0]  # still idle, nothing new to trim
    finally:
        registry.close()
        loop.close()
