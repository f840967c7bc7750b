"""A consumer group's queue: readers take batches bounded by size and by padded tokens.

Selection always includes the oldest waiting item, so nothing waits forever behind longer inputs. The waiting
items, sorted by length, are cut into the batches that cost least (padded tokens plus a fixed cost per forward
pass), and the one holding the oldest item is taken: batches of similar lengths that pad little, and no more of
them than the padding saved is worth.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from assay.engine.work import WorkItem
from assay.errors import Overloaded
from assay.models.adapter import padded_length

#: How many of the oldest waiting items a batch is chosen from.
SELECTION_WINDOW = 2048


@dataclass(frozen=True)
class BatchPolicy:
    """How one reader wants its batches."""

    #: Most sequences in a batch.
    max_batch_size: int
    #: Most padded tokens (longest x count) in a batch.
    max_batch_tokens: int
    #: Upper bound on how long the oldest item is held back to let a batch fill (seconds).
    max_wait: float
    #: Dispatch as soon as no new item arrived for this long (seconds): a lone request pays at most this.
    quiet_gap: float = 0.0005
    #: What one more forward pass costs besides its tokens, counted in padded tokens: a batch is split in two only
    #: where that saves more padding than this. Too low cuts many small batches (0: one item each), too high pads
    #: much; what is best depends on the CPU (with AMX, oneDNN compiles ~7 ms of kernels for every new batch shape):
    #: 512 is within noise of the best measured on both machines tried (docs/performance.md, "Batching policy").
    batch_overhead_tokens: int = 512
    #: The padded length is the longest rounded up to a multiple of this (``pad_batch``); budgets count it so.
    pad_multiple: int = 1

    def padded(self, longest: int, count: int) -> int:
        """Padded tokens of ``count`` sequences whose longest has ``longest`` tokens."""
        return padded_length(longest, self.pad_multiple) * count


class TokenBudgetQueue:
    """A thread-safe queue of work items, with a cap on how many may wait."""

    def __init__(self, name: str, max_items: int) -> None:
        self.name = name
        self.max_items = max_items
        self._items: list[WorkItem] = []
        self._cond = threading.Condition()
        self._last_arrival = 0.0
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, items: list[WorkItem]) -> None:
        """Add a request's items atomically, or refuse all of them when the group is full."""
        with self._cond:
            if len(self._items) + len(items) > self.max_items:
                raise Overloaded(
                    f"consumer group '{self.name}' has {len(self._items)} inputs waiting (limit {self.max_items}); "
                    "retry later",
                    headers={"Retry-After": "1"},
                )
            self._items.extend(items)
            self._last_arrival = time.monotonic()
            self._cond.notify_all()

    def take(
        self, policy: BatchPolicy, stop: threading.Event, poll: float = 0.1, idle_after: float | None = None
    ) -> list[WorkItem]:
        """Block until a batch is ready (or ``stop`` is set, or nothing has been waiting for ``idle_after``
        seconds: then return [])."""
        idle_since: float | None = None
        with self._cond:
            while True:
                if stop.is_set():
                    return []
                self._drop_abandoned()
                if not self._items:
                    if self._closed:
                        return []
                    wait = poll
                    if idle_after is not None:
                        now = time.monotonic()
                        idle_since = now if idle_since is None else idle_since
                        if now - idle_since >= idle_after:
                            return []
                        wait = min(poll, idle_after - (now - idle_since))
                    self._cond.wait(wait)
                    continue
                idle_since = None
                # Hold the batch back only while items keep arriving and it is not yet full.
                now = time.monotonic()
                oldest_age = now - self._items[0].enqueued_at
                since_arrival = now - self._last_arrival
                if self._is_full(policy) or oldest_age >= policy.max_wait or since_arrival >= policy.quiet_gap:
                    return self._select(policy)
                self._cond.wait(min(policy.max_wait - oldest_age, policy.quiet_gap - since_arrival))

    def drain(self) -> list[WorkItem]:
        """Remove and return everything waiting (the group lost its last reader)."""
        with self._cond:
            items, self._items = self._items, []
            return items

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wake(self) -> None:
        """Wake waiting readers (one is stopping)."""
        with self._cond:
            self._cond.notify_all()

    def _is_full(self, policy: BatchPolicy) -> bool:
        if len(self._items) >= policy.max_batch_size:
            return True
        longest = max(item.length for item in self._items)
        return policy.padded(longest, len(self._items)) >= policy.max_batch_tokens

    def _drop_abandoned(self) -> None:
        now = time.monotonic()
        if any(item.ticket.is_abandoned(now) for item in self._items):
            kept = []
            for item in self._items:
                if item.ticket.is_abandoned(now):
                    item.ticket.expire()
                else:
                    kept.append(item)
            self._items = kept

    def _select(self, policy: BatchPolicy) -> list[WorkItem]:
        """The oldest item's batch in the cheapest split of the oldest ``SELECTION_WINDOW`` items (``select_batch``)."""
        if not self._items:
            return []
        window = self._items[:SELECTION_WINDOW]
        picked = set(select_batch([item.length for item in window], policy))
        batch = [window[i] for i in sorted(picked)]
        self._items = [item for i, item in enumerate(window) if i not in picked] + self._items[SELECTION_WINDOW:]
        return batch


def select_batch(lengths: list[int], policy: BatchPolicy) -> list[int]:
    """Indices of one batch from waiting items of these lengths (oldest first): the oldest item's batch in the
    cheapest split of the waiting items into batches.

    Sorted by length, the items are cut into runs of neighbours (``partition``) so that the batches' padded tokens
    plus ``batch_overhead_tokens`` per batch are least, within the size and token budgets; the batch holding the
    oldest item (index 0) is taken. Only the ``4 x max_batch_size`` neighbours on either side of the oldest take
    part: the cut around it hardly depends on items further away, and the split stays cheap to compute.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    anchor = order.index(0)  # the oldest item (index 0) must be in the batch
    span = 4 * policy.max_batch_size
    low = max(0, anchor - span)
    near = order[low : anchor + span + 1]
    for first, end in partition([lengths[i] for i in near], policy):
        if first <= anchor - low < end:
            return sorted(near[first:end])
    raise AssertionError("partition covers every item")  # pragma: no cover


def partition(sorted_lengths: list[int], policy: BatchPolicy) -> list[tuple[int, int]]:
    """Cut lengths sorted ascending into batches ``[first, end)`` of least total cost: each batch costs its padded
    tokens plus ``policy.batch_overhead_tokens``, holds at most ``max_batch_size`` items and, unless it is a single
    item, at most ``max_batch_tokens`` padded tokens (dynamic programming over the cut points)."""
    count = len(sorted_lengths)
    overhead = policy.batch_overhead_tokens
    best = [0] * (count + 1)  # best[j]: least cost of the first j items
    cut = [0] * (count + 1)  # where the last batch of that best split starts
    for end in range(1, count + 1):
        per_row = policy.padded(sorted_lengths[end - 1], 1)  # the batch's longest is its last item
        most = max(1, min(policy.max_batch_size, end, policy.max_batch_tokens // per_row))
        costs = [best[end - size] + per_row * size for size in range(1, most + 1)]
        cheapest = min(costs)
        best[end] = cheapest + overhead
        cut[end] = end - (costs.index(cheapest) + 1)
    batches = []
    end = count
    while end:
        batches.append((cut[end], end))
        end = cut[end]
    return batches[::-1]


def plan_batches(
    lengths: list[int], policy: BatchPolicy, select: Callable[[list[int], BatchPolicy], list[int]] = select_batch
) -> list[list[int]]:
    """The batches a reader takes when items of these lengths are all waiting at once (one request on an idle
    server): ``select`` (the queue's ``select_batch``) repeated until none is left. Indices into ``lengths``."""
    waiting = list(range(len(lengths)))
    batches = []
    while waiting:
        picked = select([lengths[i] for i in waiting], policy)
        batches.append([waiting[i] for i in picked])
        taken = set(picked)
        waiting = [index for i, index in enumerate(waiting) if i not in taken]
    return batches
