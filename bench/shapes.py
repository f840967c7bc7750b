"""Resident memory of bare forward passes over random batch shapes, in-process: no server, queue or HTTP.

Separates what the model's kernels keep per shape from what the server keeps per request. Loads the benchmark
model as the ceiling does, runs ``--iterations`` forward passes of random shapes (1 to ``--max-batch`` rows of 8
to 512 tokens, the length rounded up to ``--pad-multiple``), and prints the RSS, its anonymous and its
file-backed part every tenth of the way, after ``malloc_trim`` (as a reader trims). ``--attention eager`` swaps
PyTorch's SDPA kernels for plain matmuls; ``--warm`` first runs every length from 1 to 512 once.

    python -m bench.shapes --dtype bfloat16 --iterations 1500 --pad-multiple 1
"""

from __future__ import annotations

import argparse
import os
import random
import time

import torch

from assay.allocator import trim_heap
from assay.models.adapter import padded_length
from bench import ceiling
from bench.load import memory_sample
from bench.model import DEFAULT_FOLDER, ensure_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--pad-multiple", type=int, default=1)
    parser.add_argument("--attention", default=None, help="attention implementation, e.g. eager (default: the model's)")
    parser.add_argument("--warm", action="store_true", help="run every length from 1 to 512 once first")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    model = ceiling.open_adapter(str(ensure_model(DEFAULT_FOLDER)), args.dtype).loaded.model
    if args.attention:
        model.set_attn_implementation(args.attention)

    def report(label: str, started: float) -> None:
        trim_heap()
        rss, anon, mapped = (round(x / 2**20) for x in memory_sample(os.getpid()))
        seconds = time.perf_counter() - started
        print(f"{label:>12}  RSS {rss} MiB  anonymous {anon}  file-backed {mapped}  ({seconds:.0f} s)", flush=True)

    def forward(rows: int, length: int) -> None:
        ids = torch.randint(1000, 2000, (rows, length))
        model(input_ids=ids, attention_mask=torch.ones_like(ids))

    started = time.perf_counter()
    with torch.inference_mode():
        report("loaded", started)
        if args.warm:
            for length in range(1, 513):
                forward(1, length)
            report("warmed", started)
        rng = random.Random(args.seed)
        step = max(1, args.iterations // 10)
        for i in range(1, args.iterations + 1):
            length = padded_length(rng.randint(8, 512), args.pad_multiple)
            forward(rng.randint(1, args.max_batch), length)
            if i % step == 0:
                report(f"{i} passes", started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
