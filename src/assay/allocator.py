"""Keep a long-running server's resident size flat by handing freed heap memory back to the system.

Every batch has a different shape, so glibc's malloc keeps a growing patchwork of freed blocks from earlier
activations; ``malloc_trim`` returns them. Trimming walks the heap (a few milliseconds), so a reader does it
at most once a second when its queue runs dry, and every ``interval`` seconds under sustained load (a batch's
activations are hundreds of MB; trimming every 0.25 s rather than every 10 s kept a bf16 reader's RSS at 1.18 GiB
at most over 600 requests instead of swinging to 2.1 GiB, at no measurable throughput cost; docs/performance.md).
Elsewhere (macOS, musl) this is a no-op.

The second source of growth is oneDNN, which runs bf16 matrix work on CPUs: it caches a compiled primitive for
every input shape it meets (1,024 by default), and ideep (PyTorch's oneDNN layer) keeps its own per-shape cache
(``LRU_CACHE_CAPACITY``, also 1,024). A server sees a new shape with almost every batch (batch size x padded
length), so both caches grow for thousands of batches: a bf16 reader gained ~350 MB over 240 requests.
``bound_kernel_caches`` caps them before the first model loads; measured, the RSS then stays flat at no
throughput cost (docs/performance.md). float32 on CPU does not go through these caches.

The third is PyTorch's CPU attention kernel, which keeps a compiled kernel for every sequence length it meets;
nothing bounds that cache, so readers pad to a multiple of 8 (``assay.models.adapter.PAD_MULTIPLE``) and it
fills within the first requests. Without trimming, a bf16 reader's RSS sits at 860-909 MiB (medians over 1,500
requests, 965 MiB peak) against ~580 MiB with it (bench/results/memory-bfloat16-1500-trim-off.json): the trimmer
stays; ``ASSAY_HEAP_TRIM_SECONDS`` trades that memory for ~10% throughput (docs/performance.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time

#: Cache sizes set unless the environment already names them: ideep's per-shape cache holds one entry (it is
#: refilled from oneDNN's), oneDNN's primitive cache 64 (a batch needs a handful of primitives, one per layer shape).
KERNEL_CACHE_LIMITS = {"LRU_CACHE_CAPACITY": "1", "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "64"}


def bound_kernel_caches() -> None:
    """Cap oneDNN's and ideep's per-shape caches (read when first used, so call this before a model runs)."""
    for name, value in KERNEL_CACHE_LIMITS.items():
        os.environ.setdefault(name, value)


def _load_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_MALLOC_TRIM = _load_trim()


#: Environment variable: seconds between trims while batches keep coming; ``off`` never trims.
TRIM_ENV = "ASSAY_HEAP_TRIM_SECONDS"
DEFAULT_TRIM_SECONDS = 0.25


def trim_interval_from_env() -> float | None:
    """The trim interval under load from ``ASSAY_HEAP_TRIM_SECONDS`` (None: never trim); malformed -> default."""
    raw = os.environ.get(TRIM_ENV, "").strip().lower()
    if raw in ("off", "never", "none"):
        return None
    try:
        value = float(raw) if raw else DEFAULT_TRIM_SECONDS
    except ValueError:
        return DEFAULT_TRIM_SECONDS
    return value if value >= 0 and value == value else DEFAULT_TRIM_SECONDS


def trim_heap() -> None:
    """Hand freed heap memory back to the system now (``malloc_trim(0)``; a no-op without glibc)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


class HeapTrimmer:
    """Calls ``malloc_trim(0)`` after a batch when the reader is idle or the interval has passed."""

    def __init__(self, interval: float | None = DEFAULT_TRIM_SECONDS, idle_interval: float = 1.0) -> None:
        #: Longest time between trims while batches keep coming (seconds); None never trims.
        self.interval = interval
        #: Shortest time between trims when the queue has run dry (seconds).
        self.idle_interval = idle_interval
        self._last = time.monotonic()

    def after_batch(self, queue_empty: bool) -> None:
        if _MALLOC_TRIM is None or self.interval is None:
            return
        now = time.monotonic()
        if now - self._last >= (self.idle_interval if queue_empty else self.interval):
            _MALLOC_TRIM(0)
            self._last = now
