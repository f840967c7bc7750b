"""A consumer group's queue: readers take batches bounded by size and by padded tokens.

Selection always includes the oldest waiting item, so nothing waits forever behind longer inputs; the rest
of the batch is filled with the waiting items closest in length to it, so a batch pads little.
"""

from __future__ import annotations

import threading
import time
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
    #: Once a batch holds this many padded tokens, it stops growing where the next item would leave less than
    #: ``min_fill`` of its tokens real: a forward pass of a few thousand tokens already runs at full speed, so
    #: padding is pure loss past that point.
    min_batch_tokens: int = 1024
    #: Smallest share of real (unpadded) tokens a batch grown past ``min_batch_tokens`` may have.
    min_fill: float = 0.9
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

    def take(self, policy: BatchPolicy, stop: threading.Event, poll: float = 0.1) -> list[WorkItem]:
        """Block until a batch is ready (or ``stop`` is set: then return [])."""
        with self._cond:
            while True:
                if stop.is_set():
                    return []
                self._drop_abandoned()
                if not self._items:
                    if self._closed:
                        return []
                    self._cond.wait(poll)
                    continue
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
        """The oldest item plus its nearest neighbours in length, within size and token budgets."""
        if not self._items:
            return []
        window = self._items[:SELECTION_WINDOW]
        picked = set(select_batch([item.length for item in window], policy))
        batch = [window[i] for i in sorted(picked)]
        self._items = [item for i, item in enumerate(window) if i not in picked] + self._items[SELECTION_WINDOW:]
        return batch


def select_batch(lengths: list[int], policy: BatchPolicy) -> list[int]:
    """Indices of one batch from waiting items of these lengths (oldest first): the oldest, then its nearest
    neighbours in length while the size, token and fill limits allow."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    anchor = order.index(0)  # the oldest item (index 0) must be in the batch
    chosen = [0]
    longest = shortest = real = lengths[0]
    left, right = anchor - 1, anchor + 1
    while len(chosen) < policy.max_batch_size and (left >= 0 or right < len(order)):
        # Prefer the neighbour whose length is closest to the batch's current span.
        take_left = right >= len(order) or (
            left >= 0 and shortest - lengths[order[left]] <= lengths[order[right]] - longest
        )
        candidate = order[left] if take_left else order[right]
        length = lengths[candidate]
        new_longest = max(longest, length)
        padded = policy.padded(new_longest, len(chosen) + 1)
        if padded > policy.max_batch_tokens:
            break
        if padded > policy.min_batch_tokens and real + length < policy.min_fill * padded:
            break
        chosen.append(candidate)
        longest = new_longest
        shortest = min(shortest, length)
        real += length
        if take_left:
            left -= 1
        else:
            right += 1
    return sorted(chosen)


def plan_batches(lengths: list[int], policy: BatchPolicy) -> list[list[int]]:
    """The batches a reader takes when items of these lengths are all waiting at once (one request on an idle
    server): ``select_batch`` repeated until none is left. Indices into ``lengths``."""
    waiting = list(range(len(lengths)))
    batches = []
    while waiting:
        picked = select_batch([lengths[i] for i in waiting], policy)
        batches.append([waiting[i] for i in picked])
        taken = set(picked)
        waiting = [index for i, index in enumerate(waiting) if i not in taken]
    return batches
