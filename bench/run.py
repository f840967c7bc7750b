"""Run the benchmark: `python -m bench.run` (see docs/performance.md).

For each dtype: the in-process ceiling and a real `assay serve` subprocess under closed-loop load at
concurrency C, in alternating rounds over the same requests; then concurrency 1 for low-load latency,
alternating in-process and server request by request; then bf16-vs-fp32 fidelity.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from assay.engine.queue import BatchPolicy
from assay.models.adapter import PAD_MULTIPLE
from bench import ceiling
from bench.load import Server, closed_loop, reset_peak_rss, rss_bytes
from bench.model import DEFAULT_FOLDER, ensure_model
from bench.workload import make_requests, pairs_of

RESULTS = Path(__file__).resolve().parent / "results"
LOGS = DEFAULT_FOLDER.parent / "bench-logs"
#: Measured requests per dtype and round when --requests is not given (the default run takes ~6 minutes on 2
#: cores with AVX512-BF16; bf16 is ~6x slower without it or AMX: bench only float32 there).
DEFAULT_REQUESTS = {"float32": 24, "bfloat16": 24}
DEFAULT_WARMUP = {"float32": 4, "bfloat16": 4}


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "bf16_flags": [f for f in flags if f in ("avx512_bf16", "amx_bf16", "amx_tile")],
        "avx512": any(f.startswith("avx512") for f in flags),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "TOKENIZERS_PARALLELISM": os.environ.get("TOKENIZERS_PARALLELISM", "(unset)"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "(unset)"),
        # Other work on a 2-core machine skews every figure: the 1-minute load average when the run began.
        "loadavg_at_start": os.getloadavg()[0],
    }


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (ties are vanishingly rare for float logits)."""
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def fidelity(reference: np.ndarray, other: np.ndarray, per_query: int) -> dict[str, float]:
    """bf16 against fp32 on the same pairs: worst logit error, rank agreement per query, top-1 agreement."""
    ref = reference.reshape(-1, per_query)
    oth = other.reshape(-1, per_query)
    rhos = [spearman(r, o) for r, o in zip(ref, oth, strict=True)]
    top1 = [int(np.argmax(r) == np.argmax(o)) for r, o in zip(ref, oth, strict=True)]
    return {
        "queries": len(rhos),
        "max_abs_diff": float(np.max(np.abs(ref - oth))),
        "mean_abs_diff": float(np.mean(np.abs(ref - oth))),
        "spearman_mean": float(np.mean(rhos)),
        "spearman_min": float(np.min(rhos)),
        "top1_agreement": float(np.mean(top1)),
    }


def bench_dtype(args: argparse.Namespace, dtype: str, folder: str, log: Any) -> tuple[dict[str, Any], np.ndarray]:
    """Ceiling and server, measured in alternating rounds over the same requests.

    On a shared 2-core machine other work comes and goes; alternating rounds (ceiling, server, ceiling,
    server, ...) puts both under the same conditions, so their ratio holds even when absolute figures drift.
    The server process idles (its readers block on a condition) while the ceiling runs.
    """
    count = args.requests or DEFAULT_REQUESTS.get(dtype, 40)
    warm_count = args.warmup if args.warmup is not None else DEFAULT_WARMUP.get(dtype, 8)
    requests = make_requests(count, seed=args.seed)
    warmup = make_requests(warm_count, seed=args.seed + 1)
    low = make_requests(args.low_load_requests, seed=args.seed + 2) if dtype in args.low_load else []
    pairs = pairs_of(requests)
    result: dict[str, Any] = {"dtype": dtype, "requests": count, "pairs": len(pairs), "concurrency": args.concurrency,
                              "rounds": args.rounds}  # fmt: skip

    log(f"[{dtype}] in-process ceiling: loading, warming up")
    adapter = ceiling.open_adapter(folder, dtype)
    ceiling.run(adapter, pairs_of(warmup), args.max_batch_size, args.max_batch_tokens)
    flags = [
        "--max-batch-size", str(args.max_batch_size), "--max-batch-tokens", str(args.max_batch_tokens),
        "--batch-duration-millis", str(args.batch_duration_millis),
    ]  # fmt: skip
    server = Server(folder, dtype, flags, LOGS / f"server-{dtype}.log")
    startup = server.start()
    try:
        log(f"[{dtype}] server healthy after {startup:.1f} s (pid {server.pid}); warm-up {warm_count} requests")
        closed_loop(server.url, warmup, args.concurrency)
        ceilings, loads = [], []
        for round_ in range(args.rounds):
            ceil, ceil_logits = ceiling.run(adapter, pairs, args.max_batch_size, args.max_batch_tokens)
            loaded = closed_loop(server.url, requests, args.concurrency, pid=server.pid, rss_every=10)
            ceilings.append(ceil)
            loads.append(loaded)
            log(f"[{dtype}] round {round_ + 1}: ceiling {ceil.pairs_per_s:.1f} pairs/s, server "
                f"{loaded.pairs_per_s:.1f} pairs/s, ratio {loaded.pairs_per_s / ceil.pairs_per_s:.3f} "
                f"(load average {os.getloadavg()[0]:.2f})")  # fmt: skip
        ceil_seconds = sum(c.seconds for c in ceilings)
        server_seconds = sum(r.seconds for r in loads)
        latencies = [t for r in loads for t in r.latencies]
        result["ceiling"] = {
            "pairs_per_s": len(pairs) * args.rounds / ceil_seconds, "seconds": ceil_seconds,
            "rounds_pairs_per_s": [c.pairs_per_s for c in ceilings],
            "tokenize_seconds": sum(c.tokenize_seconds for c in ceilings), "batches": ceilings[0].batches,
            "padded_tokens": ceilings[0].padded_tokens, "real_tokens": ceilings[0].real_tokens,
            "torch_threads": torch.get_num_threads(),
        }  # fmt: skip
        result["server"] = {
            "pairs_per_s": len(pairs) * args.rounds / server_seconds, "seconds": server_seconds,
            "rounds_pairs_per_s": [r.pairs_per_s for r in loads],
            "p50_ms": float(np.percentile(latencies, 50) * 1000), "p90_ms": float(np.percentile(latencies, 90) * 1000),
            "p99_ms": float(np.percentile(latencies, 99) * 1000),
            "rss_mib_end": loads[-1].rss[-1][1] / 2**20 if loads[-1].rss else None,
            "startup_seconds": startup,
        }  # fmt: skip
        served = np.array([x for row in loads[-1].logits for x in row], dtype=np.float32)
        result["server_vs_ceiling_max_abs_logit_diff"] = float(np.max(np.abs(served - ceil_logits)))
        result["ratio"] = result["server"]["pairs_per_s"] / result["ceiling"]["pairs_per_s"]
        result["rounds_ratio"] = [r.pairs_per_s / c.pairs_per_s for c, r in zip(ceilings, loads, strict=True)]
        log(f"[{dtype}] overall: ceiling {result['ceiling']['pairs_per_s']:.1f} pairs/s, server "
            f"{result['server']['pairs_per_s']:.1f} pairs/s, ratio {result['ratio']:.3f}")  # fmt: skip
        if low:
            # Alternate too: one request in-process (as one padded batch, the reference; and in the very
            # batches a reader takes, the strict one), then the same request through the server.
            policy = BatchPolicy(
                args.max_batch_size, args.max_batch_tokens, args.batch_duration_millis / 1000, pad_multiple=PAD_MULTIPLE
            )
            in_ms, same_ms, server_ms = [], [], []
            closed_loop(server.url, low[:1], 1)
            for request in low:
                in_ms.append(ceiling.one_request_seconds(adapter, pairs_of([request]), 1)[0] * 1000)
                same_ms.append(ceiling.server_batches_seconds(adapter, pairs_of([request]), policy) * 1000)
                server_ms.append(closed_loop(server.url, [request], 1).latencies[0] * 1000)
            result["low_load"] = {
                "requests": len(low),
                "server_p50_ms": float(np.median(server_ms)),
                "in_process_one_batch_p50_ms": float(np.median(in_ms)),
                "overhead_vs_one_batch_p50_ms": float(np.median(np.subtract(server_ms, in_ms))),
                "overhead_vs_one_batch_max_ms": float(np.max(np.subtract(server_ms, in_ms))),
                "in_process_same_batches_p50_ms": float(np.median(same_ms)),
                "overhead_vs_same_batches_p50_ms": float(np.median(np.subtract(server_ms, same_ms))),
                "overhead_vs_same_batches_max_ms": float(np.max(np.subtract(server_ms, same_ms))),
                "server_ms": server_ms, "in_process_one_batch_ms": in_ms, "in_process_same_batches_ms": same_ms,
            }
            low_load = result["low_load"]
            log(f"[{dtype}] low load: server p50 {low_load['server_p50_ms']:.0f} ms; in-process p50 "
                f"{low_load['in_process_one_batch_p50_ms']:.0f} ms as one batch, "
                f"{low_load['in_process_same_batches_p50_ms']:.0f} ms in the server's batches "
                f"(overhead p50 {low_load['overhead_vs_same_batches_p50_ms']:+.1f} ms, "
                f"max {low_load['overhead_vs_same_batches_max_ms']:+.1f} ms)")  # fmt: skip
        del adapter
        gc.collect()
        if args.memory_requests and dtype in args.memory_dtype:
            memory_requests = make_requests(args.memory_requests, seed=args.seed + 3)
            log(f"[{dtype}] memory run: {args.memory_requests} requests at concurrency {args.concurrency}")
            reset_peak_rss(server.pid)  # the peak between samples, not the one of loading the model
            run = closed_loop(server.url, memory_requests, args.concurrency, pid=server.pid, rss_every=10)
            peak = rss_bytes(server.pid, "VmHWM")
            early = min(500, args.memory_requests // 4)
            after_early = next(rss for done, rss in run.rss if done >= early)
            first = [i for i, (done, _) in enumerate(run.rss) if done <= early]
            last = [i for i, (done, _) in enumerate(run.rss) if done > len(memory_requests) - early]

            def window(values: list[int], which: list[int]) -> dict[str, float]:
                picked = [values[i] / 2**20 for i in which]
                return {"max": max(picked), "median": float(np.median(picked)), "min": min(picked)}

            total = [r for _, r in run.rss]
            anon = [a for _, a, _ in run.rss_parts]
            mapped = [f for _, _, f in run.rss_parts]
            result["memory"] = {
                "requests": args.memory_requests, "concurrency": args.concurrency,
                "rss_mib_start": rss_at_start(run), f"rss_mib_after_{early}": after_early / 2**20,
                "rss_mib_end": run.rss[-1][1] / 2**20, "rss_mib_max": max(total) / 2**20,
                "rss_mib_peak": peak / 2**20,
                # Growth: the samples over the first and over the last `early` requests (a sample lands anywhere
                # in a batch, so its live activations swing it; the median and the minimum show what stays).
                f"rss_mib_max_first_{early}": max(total[i] for i in first) / 2**20,
                f"rss_mib_max_last_{early}": max(total[i] for i in last) / 2**20,
                f"rss_first_{early}": window(total, first), f"rss_last_{early}": window(total, last),
                f"anon_first_{early}": window(anon, first), f"anon_last_{early}": window(anon, last),
                f"file_first_{early}": window(mapped, first), f"file_last_{early}": window(mapped, last),
                "pairs_per_s": run.pairs_per_s,
                "samples": [(d, round(r / 2**20, 1), round(a / 2**20, 1), round(f / 2**20, 1))
                            for (d, r), (_, a, f) in zip(run.rss, run.rss_parts, strict=True)],
            }  # fmt: skip
    finally:
        server.stop()
    return result, ceil_logits


def rss_at_start(run: Any) -> float:
    return run.rss[0][1] / 2**20 if run.rss else 0.0


def print_table(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(f"\nmachine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
          f"bf16 instructions: {', '.join(m['bf16_flags']) or 'none'}, load average {m['loadavg_at_start']:.2f} "
          f"at start, {m.get('loadavg_at_end', 0):.2f} at end")  # fmt: skip
    print(f"{'dtype':9} {'pairs':>6} {'ceiling p/s':>12} {'server p/s':>11} {'ratio':>6} "
          f"{'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'RSS MiB':>8}")  # fmt: skip
    for r in report["runs"]:
        s = r["server"]
        print(f"{r['dtype']:9} {r['pairs']:>6} {r['ceiling']['pairs_per_s']:>12.1f} {s['pairs_per_s']:>11.1f} "
              f"{r['ratio']:>6.3f} {s['p50_ms']:>8.0f} {s['p90_ms']:>8.0f} {s['p99_ms']:>8.0f} "
              f"{s['rss_mib_end'] or 0:>8.0f}")  # fmt: skip
    for r in report["runs"]:
        if "low_load" in r:
            low = r["low_load"]
            print(f"low load ({r['dtype']}, C=1, {low['requests']} requests of 32 pairs): server p50 "
                  f"{low['server_p50_ms']:.0f} ms; in-process as one batch p50 {low['in_process_one_batch_p50_ms']:.0f}"
                  f" ms (overhead p50 {low['overhead_vs_one_batch_p50_ms']:+.1f} ms); in-process in the server's "
                  f"batches p50 {low['in_process_same_batches_p50_ms']:.0f} ms (overhead p50 "
                  f"{low['overhead_vs_same_batches_p50_ms']:+.1f} ms, max {low['overhead_vs_same_batches_max_ms']:+.1f}"
                  " ms)")  # fmt: skip
        if "memory" in r:
            mem = r["memory"]
            print(f"memory ({r['dtype']}, {mem['requests']} requests): " + ", ".join(
                f"{k} {v:.0f}" for k, v in mem.items() if k.startswith("rss_mib")))  # fmt: skip
            for k, v in mem.items():
                if isinstance(v, dict):
                    print(f"  {k}: median {v['median']:.0f}, min {v['min']:.0f}, max {v['max']:.0f} MiB")
    if "fidelity" in report:
        f = report["fidelity"]
        print(f"fidelity bf16 vs fp32 ({f['queries']} queries): max |diff| {f['max_abs_diff']:.4f}, Spearman mean "
              f"{f['spearman_mean']:.4f} (min {f['spearman_min']:.4f}), top-1 {f['top1_agreement']:.1%}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    parser.add_argument("--requests", type=int, default=None,
                        help=f"measured requests per dtype (default {DEFAULT_REQUESTS})")  # fmt: skip
    parser.add_argument("--warmup", type=int, default=None, help=f"warm-up requests (default {DEFAULT_WARMUP})")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="alternating ceiling/server rounds per dtype")
    parser.add_argument("--low-load", nargs="*", default=["float32"], help="dtypes to measure at concurrency 1")
    parser.add_argument("--low-load-requests", type=int, default=5)
    parser.add_argument("--memory-requests", type=int, default=0, help="run N more requests watching RSS (e.g. 2000)")
    parser.add_argument("--memory-dtype", nargs="+", default=["float32"], help="dtypes to run the memory run for")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-batch-tokens", type=int, default=16384)
    parser.add_argument("--batch-duration-millis", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)

    started = time.monotonic()

    def log(message: str) -> None:
        print(f"{time.monotonic() - started:7.1f}s {message}", file=sys.stderr, flush=True)

    folder = str(ensure_model())
    report: dict[str, Any] = {
        "command": " ".join(["python -m bench.run", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k != "output"},
        "runs": [],
    }
    logits: dict[str, np.ndarray] = {}
    for dtype in args.dtype:
        result, logits[dtype] = bench_dtype(args, dtype, folder, log)
        report["runs"].append(result)
    if "float32" in logits and "bfloat16" in logits:
        common = min(len(logits["float32"]), len(logits["bfloat16"]))  # same seed: same leading requests
        report["fidelity"] = fidelity(logits["float32"][:common], logits["bfloat16"][:common], 32)
    report["total_seconds"] = time.monotonic() - started
    report["machine"]["loadavg_at_end"] = os.getloadavg()[0]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print_table(report)
    print(f"\nresults: {args.output}  ({report['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
