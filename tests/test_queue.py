"""The token-budget queue: batch bounds, little padding, no starvation, no idle waiting for a lone request."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
import torch

from assay.engine.queue import BatchPolicy, TokenBudgetQueue, partition, plan_batches
from assay.engine.work import Ticket, WorkItem
from assay.errors import Overloaded
from assay.models.adapter import pad_batch


@pytest.fixture()
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def items(loop, lengths: list[int]) -> list[WorkItem]:
    ticket = Ticket(len(lengths), loop)
    return [WorkItem(ticket, i, np.ones(n, dtype=np.int64), None) for i, n in enumerate(lengths)]


def take(queue: TokenBudgetQueue, policy: BatchPolicy) -> list[WorkItem]:
    return queue.take(policy, threading.Event())


def test_batches_respect_size_and_token_budgets(loop):
    queue = TokenBudgetQueue("g", 10_000)
    queue.put(items(loop, [100] * 50))
    policy = BatchPolicy(max_batch_size=8, max_batch_tokens=1000, max_wait=0)
    sizes = []
    while len(queue):
        batch = take(queue, policy)
        assert len(batch) <= 8 and max(i.length for i in batch) * len(batch) <= 1000
        sizes.append(len(batch))
    assert sum(sizes) == 50 and max(sizes) == 8


def test_a_batch_groups_similar_lengths_and_skips_far_longer_items(loop):
    queue = TokenBudgetQueue("g", 10_000)
    rng = np.random.default_rng(0)
    lengths = [int(x) for x in rng.integers(20, 400, size=256)]
    queue.put(items(loop, lengths))
    policy = BatchPolicy(max_batch_size=32, max_batch_tokens=16384, max_wait=0)
    padded = real = 0
    while len(queue):
        batch = take(queue, policy)
        padded += max(i.length for i in batch) * len(batch)
        real += sum(i.length for i in batch)
    # One padded batch per 32 arrivals would waste ~50% here; length-grouped batches waste little.
    assert padded <= 1.15 * real


def split_cost(lengths: list[int], cuts: list[tuple[int, int]], policy: BatchPolicy) -> int:
    return sum(policy.padded(lengths[end - 1], end - first) + policy.batch_overhead_tokens for first, end in cuts)


def every_split(count: int):
    """Every way to cut ``count`` sorted items into runs of neighbours."""
    for mask in range(2 ** max(count - 1, 0)):
        bounds = [0] + [i + 1 for i in range(count - 1) if mask >> i & 1] + [count]
        yield list(zip(bounds, bounds[1:], strict=False))


def test_the_split_into_batches_is_the_cheapest_within_the_budgets():
    # Exhaustive check on small inputs: no other way of cutting the sorted items costs less.
    rng = np.random.default_rng(2)
    policy = BatchPolicy(max_batch_size=4, max_batch_tokens=900, max_wait=0, pad_multiple=8, batch_overhead_tokens=150)
    for _ in range(40):
        lengths = sorted(int(x) for x in rng.integers(5, 300, size=int(rng.integers(1, 11))))
        cuts = partition(lengths, policy)
        assert [first for first, _ in cuts] == [0] + [end for _, end in cuts[:-1]] and cuts[-1][1] == len(lengths)

        def allowed(split, lengths=lengths):
            return all(
                end - first <= 4 and (end - first == 1 or policy.padded(lengths[end - 1], end - first) <= 900)
                for first, end in split
            )

        assert allowed(cuts)
        best = min(split_cost(lengths, split, policy) for split in every_split(len(lengths)) if allowed(split))
        assert split_cost(lengths, cuts, policy) == best


def test_the_overhead_per_batch_trades_padding_for_fewer_batches():
    # Two clusters of lengths: with no cost per batch, every distinct length gets its own batch; with the
    # default cost, close lengths share one, and far apart ones still do not.
    lengths = [40, 41, 42, 43, 44, 45, 300, 301, 302, 303]
    cheap = BatchPolicy(max_batch_size=32, max_batch_tokens=16384, max_wait=0, batch_overhead_tokens=0)
    default = BatchPolicy(max_batch_size=32, max_batch_tokens=16384, max_wait=0)
    assert len(partition(lengths, cheap)) == len(set(lengths))
    assert partition(lengths, default) == [(0, 6), (6, 10)]


def test_a_lone_oversized_item_still_gets_a_batch():
    policy = BatchPolicy(max_batch_size=8, max_batch_tokens=100, max_wait=0)
    assert partition([50, 500], policy) == [(0, 1), (1, 2)]


def test_take_returns_empty_once_the_queue_has_idled(loop):
    # Readers trim their heap when no work comes: take gives up after idle_after seconds of an empty queue...
    queue = TokenBudgetQueue("g", 100)
    policy = BatchPolicy(max_batch_size=8, max_batch_tokens=1000, max_wait=0)
    started = time.monotonic()
    assert queue.take(policy, threading.Event(), idle_after=0.05) == []
    assert 0.04 <= time.monotonic() - started < 1.0
    # ...but work that arrives before then is taken.
    threading.Timer(0.02, lambda: queue.put(items(loop, [5, 6]))).start()
    assert len(queue.take(policy, threading.Event(), idle_after=0.5)) == 2


def test_plan_batches_is_what_a_reader_takes_from_one_request(loop):
    # The benchmark's low-load reference runs a request in-process in exactly the server's batches.
    rng = np.random.default_rng(1)
    lengths = [int(x) for x in rng.integers(10, 420, size=32)]
    policy = BatchPolicy(max_batch_size=32, max_batch_tokens=16384, max_wait=0)
    queue = TokenBudgetQueue("g", 10_000)
    queue.put(items(loop, lengths))
    taken = []
    while len(queue):
        taken.append(sorted(item.index for item in take(queue, policy)))
    planned = plan_batches(lengths, policy)
    assert [sorted(batch) for batch in planned] == taken
    assert len(taken) > 1 and sorted(i for batch in planned for i in batch) == list(range(32))


def test_the_oldest_item_is_always_in_the_next_batch(loop):
    queue = TokenBudgetQueue("g", 10_000)
    long_first = items(loop, [500])
    queue.put(long_first)
    for _ in range(10):
        queue.put(items(loop, [10] * 30))
    batch = take(queue, BatchPolicy(max_batch_size=32, max_batch_tokens=16384, max_wait=0))
    assert long_first[0] in batch  # a long item never waits behind a stream of short ones


def test_a_lone_request_is_not_held_for_the_batch_duration(loop):
    queue = TokenBudgetQueue("g", 10_000)
    queue.put(items(loop, [50] * 4))
    started = time.monotonic()
    batch = take(queue, BatchPolicy(max_batch_size=32, max_batch_tokens=16384, max_wait=2.0))
    assert len(batch) == 4
    assert time.monotonic() - started < 0.5  # far below the 2 s upper bound


def test_arrivals_within_the_window_join_one_batch(loop):
    queue = TokenBudgetQueue("g", 10_000)
    policy = BatchPolicy(max_batch_size=32, max_batch_tokens=16384, max_wait=1.0, quiet_gap=0.2)
    queue.put(items(loop, [50] * 4))

    def later() -> None:
        time.sleep(0.05)
        queue.put(items(loop, [50] * 4))

    thread = threading.Thread(target=later)
    thread.start()
    batch = take(queue, policy)
    thread.join()
    assert len(batch) == 8


def test_a_full_group_refuses_the_whole_request(loop):
    queue = TokenBudgetQueue("g", 10)
    queue.put(items(loop, [5] * 8))
    with pytest.raises(Overloaded) as caught:
        queue.put(items(loop, [5] * 3))
    assert caught.value.headers["Retry-After"]
    assert len(queue) == 8


def test_padding_goes_only_to_the_batch_longest():
    batch = pad_batch([np.arange(3), np.arange(7)], None, pad_token_id=0, device=torch.device("cpu"))
    assert tuple(batch.input_ids.shape) == (2, 7)
    assert batch.attention_mask.sum(dim=1).tolist() == [3, 7]


def test_padding_rounds_up_to_the_multiple_but_never_past_the_model_limit():
    batch = pad_batch([np.arange(3), np.arange(9)], None, pad_token_id=0, device=torch.device("cpu"), multiple_of=8)
    assert tuple(batch.input_ids.shape) == (2, 16)
    assert batch.attention_mask.sum(dim=1).tolist() == [3, 9]
    assert batch.lengths == [3, 9]
    capped = pad_batch([np.arange(9)], None, 0, torch.device("cpu"), multiple_of=8, max_length=12)
    assert tuple(capped.input_ids.shape) == (1, 12)


def test_the_token_budget_counts_the_rounded_padding(loop):
    # 9-token items pad to 16 with pad_multiple 8: a 160-token budget holds 10 of them, not 17.
    queue = TokenBudgetQueue("g", 100)
    queue.put(items(loop, [9] * 40))
    policy = BatchPolicy(max_batch_size=32, max_batch_tokens=160, max_wait=0, pad_multiple=8)
    assert len(take(queue, policy)) == 10
    assert plan_batches([9] * 40, policy) == [list(range(i, min(i + 10, 40))) for i in range(0, 40, 10)]
