"""How the queue's way of cutting batches affects speed, in-process: the same pairs, the same model, no server.

A server under closed-loop load at concurrency C sees only the C requests in flight (C x 32 pairs), not the whole
workload that the ceiling sorts at once. This runs the benchmark's pairs in-process, in rounds, in the ceiling's
batches and in the batches the queue would cut from windows of C requests (``plan_batches`` on each window), for
several values of ``BatchPolicy.batch_overhead_tokens``, and in the batches of the rule the queue used before
(``greedy_batch``, kept here only as the baseline, fed to ``plan_batches``), and reports batches, padded tokens
and pairs/s.

    python -m bench.batching --dtype bfloat16 --overheads 0 256 1024 2048
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable

from assay.engine.queue import BatchPolicy, plan_batches, select_batch
from assay.models.adapter import PAD_MULTIPLE, Features
from assay.models.classification import ClassificationAdapter
from bench import ceiling
from bench.model import DEFAULT_FOLDER, ensure_model
from bench.workload import make_requests, pairs_of

PAIRS_PER_REQUEST = 32


def greedy_batch(lengths: list[int], policy: BatchPolicy, min_tokens: int = 1024, min_fill: float = 0.9) -> list[int]:
    """The queue's previous rule (until commit c8730c5), the baseline: the oldest item (index 0), then its nearest
    neighbours in length while the size and token budgets allow and, once the batch holds ``min_tokens`` padded
    tokens, while at least ``min_fill`` of its tokens stay real."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    anchor = order.index(0)
    chosen = [0]
    longest = shortest = real = lengths[0]
    left, right = anchor - 1, anchor + 1
    while len(chosen) < policy.max_batch_size and (left >= 0 or right < len(order)):
        take_left = right >= len(order) or (
            left >= 0 and shortest - lengths[order[left]] <= lengths[order[right]] - longest
        )
        candidate = order[left] if take_left else order[right]
        length = lengths[candidate]
        padded = policy.padded(max(longest, length), len(chosen) + 1)
        if padded > policy.max_batch_tokens or (padded > min_tokens and real + length < min_fill * padded):
            break
        chosen.append(candidate)
        longest, shortest, real = max(longest, length), min(shortest, length), real + length
        if take_left:
            left -= 1
        else:
            right += 1
    return sorted(chosen)


def windowed_batches(
    lengths: list[int],
    window: int,
    policy: BatchPolicy,
    select: Callable[[list[int], BatchPolicy], list[int]] = select_batch,
) -> list[list[int]]:
    """The queue's batches (cut by ``select``) when ``window`` items wait at a time (indices into ``lengths``)."""
    out = []
    for start in range(0, len(lengths), window):
        indices = list(range(start, min(len(lengths), start + window)))
        out.extend([indices[i] for i in batch] for batch in plan_batches([lengths[i] for i in indices], policy, select))
    return out


def run(adapter: ClassificationAdapter, features: Features, batches: list[list[int]]) -> tuple[float, int]:
    """Seconds and padded tokens of the forward passes over these batches."""
    started = time.perf_counter()
    _, padded_tokens = ceiling.score_batches(adapter, features, batches)
    return time.perf_counter() - started, padded_tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight: the queue's window")
    parser.add_argument("--overheads", type=int, nargs="+", default=[0, 256, 1024, 2048])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-batch-tokens", type=int, default=16384)
    args = parser.parse_args(argv)

    adapter = ceiling.open_adapter(str(ensure_model(DEFAULT_FOLDER)), args.dtype)
    base = BatchPolicy(args.max_batch_size, args.max_batch_tokens, 0.0, pad_multiple=PAD_MULTIPLE)
    window = args.concurrency * PAIRS_PER_REQUEST
    plans: dict[str, list[list[int]]] = {}
    features = ceiling.encode(adapter, pairs_of(make_requests(args.requests, seed=0)))
    lengths = [len(ids) for ids in features.input_ids]
    limits = (args.max_batch_size, args.max_batch_tokens)
    plans["ceiling (all pairs sorted)"] = ceiling.token_budget_batches(lengths, *limits)
    plans[f"queue, C={args.concurrency}, previous greedy rule"] = windowed_batches(lengths, window, base, greedy_batch)
    for overhead in args.overheads:
        policy = dataclasses.replace(base, batch_overhead_tokens=overhead)
        plans[f"queue, C={args.concurrency}, overhead {overhead}"] = windowed_batches(lengths, window, policy)

    warm = ceiling.encode(adapter, pairs_of(make_requests(8, seed=1)))
    run(adapter, warm, ceiling.token_budget_batches([len(i) for i in warm.input_ids], 32, 16384))
    seconds = dict.fromkeys(plans, 0.0)
    tokens = {}
    for round_ in range(args.rounds):  # alternating, so drifting machine speed hits every plan alike
        for name, batches in plans.items():
            elapsed, tokens[name] = run(adapter, features, batches)
            seconds[name] += elapsed
        print(f"round {round_ + 1} of {args.rounds} done", flush=True)
    pairs = len(lengths) * args.rounds
    print(f"{args.dtype}, {len(lengths)} pairs x {args.rounds} rounds")
    print(f"{'batches cut by':42s} {'batches':>8s} {'padded tokens':>14s} {'pairs/s':>8s}")
    for name, batches in plans.items():
        print(f"{name:42s} {len(batches):8d} {tokens[name]:14d} {pairs / seconds[name]:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
