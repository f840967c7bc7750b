"""Where a loaded server's time goes: how busy its reader is, the batches it runs, and who uses the CPU.

Starts `assay serve` on the benchmark model, warms it up, runs a closed loop of ``--requests`` rerank requests at
``--concurrency``, and reads the server's /metrics before and after (reader forward seconds, batches, padded
tokens) and each server thread's CPU time from /proc/PID/task, with the load generator's own CPU time; then the
in-process ceiling over the same pairs, for its batches and its padded tokens per second of forward pass.

    python -m bench.busy --dtype bfloat16 --requests 48 --concurrency 8
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import httpx

from bench import ceiling
from bench.load import Server, closed_loop
from bench.model import DEFAULT_FOLDER, ensure_model
from bench.workload import make_requests, pairs_of

METRICS = ("assay_reader_forward_seconds_total", "assay_reader_batches_total", "assay_batch_tokens_sum")


def metric_totals(url: str) -> dict[str, float]:
    totals = dict.fromkeys(METRICS, 0.0)
    for row in httpx.get(url + "/metrics").text.splitlines():
        name = row.split("{")[0].split(" ")[0]
        if name in totals:
            totals[name] += float(row.split()[-1])
    return totals


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of a process, by thread id."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = (task / "stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        out[task.name] = (int(fields[11]) + int(fields[12])) / tick
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    folder = str(ensure_model(DEFAULT_FOLDER))
    requests, warmup = make_requests(args.requests, seed=0), make_requests(8, seed=1)

    log = Path(".cache/bench-logs/busy.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with Server(folder, args.dtype, [], log) as server:
        management = f"http://127.0.0.1:{server.management_port}"
        closed_loop(server.url, warmup, args.concurrency)
        before, threads_before, client_before = metric_totals(management), thread_cpu_seconds(server.pid), os.times()
        run = closed_loop(server.url, requests, args.concurrency)
        after, threads_after, client_after = metric_totals(management), thread_cpu_seconds(server.pid), os.times()
    forward, batches, tokens = (after[name] - before[name] for name in METRICS)
    print(f"server ({args.dtype}, C={args.concurrency}, {args.requests} requests): {run.pairs_per_s:.1f} pairs/s; "
          f"reader in forward passes {forward:.2f} s of {run.seconds:.2f} s ({forward / run.seconds:.0%}); "
          f"{batches:.0f} batches, {tokens:.0f} padded tokens, {tokens / forward:.0f} padded tokens/s in forward")
    used = {tid: cpu - threads_before.get(tid, 0.0) for tid, cpu in threads_after.items()}
    busiest = sorted((v for v in used.values() if v >= 0.01), reverse=True)
    print("server CPU seconds by thread: " + ", ".join(f"{v:.2f}" for v in busiest))
    client = (client_after.user + client_after.system) - (client_before.user + client_before.system)
    print(f"load generator CPU seconds: {client:.2f}")

    adapter = ceiling.open_adapter(folder, args.dtype)
    ceiling.run(adapter, pairs_of(warmup), 32, 16384)
    result, _ = ceiling.run(adapter, pairs_of(requests), 32, 16384)
    in_forward = result.seconds - result.tokenize_seconds
    print(f"in-process ceiling: {result.pairs_per_s:.1f} pairs/s; {result.batches} batches, {result.padded_tokens} "
          f"padded tokens, {result.padded_tokens / in_forward:.0f} padded tokens/s in forward")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
