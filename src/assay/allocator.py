"""Keep a long-running server's resident size flat by handing freed heap memory back to the system.

Every batch has a different shape, so glibc's malloc keeps a growing patchwork of freed blocks from earlier
activations; ``malloc_trim`` returns them. A trim is cheap itself, but the pages it hands back are faulted in again
by the next batches, so a reader trims once it has really gone idle (no work for 50 ms: ``HeapTrimmer``), and under
sustained load only once the process's resident size has grown 256 MiB past its size after the last trim
(``ASSAY_HEAP_TRIM_MIB``). Elsewhere (macOS, musl) this is a no-op.

The second source of growth is oneDNN, which runs bf16 matrix work on CPUs: it caches a compiled primitive for
every input shape it meets (1,024 by default), and ideep (PyTorch's oneDNN layer) keeps its own per-shape cache
(``LRU_CACHE_CAPACITY``, also 1,024). A server sees a new shape with almost every batch (batch size x padded
length), so both caches grow for thousands of batches: a bf16 reader gained ~350 MB over 240 requests.
``bound_kernel_caches`` caps them before the first model loads; measured, the RSS then stays flat at no
throughput cost (docs/performance.md). float32 on CPU does not go through these caches.

The third is PyTorch's CPU attention kernel, which keeps a compiled kernel for every sequence length it meets;
nothing bounds that cache, so readers pad to a multiple of 8 (``assay.models.adapter.PAD_MULTIPLE``) and it
fills within the first requests. Without trimming, a bf16 reader's RSS sits at 860-909 MiB (medians over 1,500
requests, 965 MiB peak) against ~580 MiB with it (bench/results/memory-bfloat16-1500-trim-off.json), so the
trimmer stays; docs/performance.md ("Memory") has what trimming on a clock cost and what the headroom costs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading

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


#: Environment variable: how far (MiB) the resident size may rise above its size after the last trim before a
#: reader trims under load; ``off`` never trims.
TRIM_ENV = "ASSAY_HEAP_TRIM_MIB"
DEFAULT_TRIM_MIB = 256.0
#: A reader that has waited this long for work is idle, and trims (seconds).
DEFAULT_IDLE_SECONDS = 0.05
_MIB = 1 << 20
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def trim_headroom_from_env() -> float | None:
    """The trim headroom in MiB from ``ASSAY_HEAP_TRIM_MIB`` (None: never trim); malformed -> default."""
    raw = os.environ.get(TRIM_ENV, "").strip().lower()
    if raw in ("off", "never", "none"):
        return None
    try:
        value = float(raw) if raw else DEFAULT_TRIM_MIB
    except ValueError:
        return DEFAULT_TRIM_MIB
    return value if value >= 0 and value == value else DEFAULT_TRIM_MIB


def trim_heap() -> None:
    """Hand freed heap memory back to the system now (``malloc_trim(0)``; a no-op without glibc)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def resident_bytes() -> int | None:
    """This process's resident size (``/proc/self/statm``; ~10 us), or None where there is no procfs."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class _Baseline:
    """The process's resident size just after its last trim, shared by its readers (RSS is per process)."""

    lock = threading.Lock()
    rss: int | None = None


class HeapTrimmer:
    """Calls ``malloc_trim(0)`` once a reader has really gone idle, and under load once the resident size has
    risen ``headroom_mib`` above what it was after the last trim.

    A trim hands freed pages back, and the next batches fault them in again (a bf16 batch's activations are
    hundreds of MB): trimming on a clock costs throughput whether or not the heap has grown (every 0.25 s: ~7-10%
    of bf16 throughput). A reader trims when no work has come for ``idle_after`` seconds (it would idle anyway, so
    the trim is free) and, while batches keep coming, only when the process has grown by the headroom since the
    last trim, by any reader, so the resident size stays within the headroom of its trimmed size by construction.
    """

    def __init__(self, headroom_mib: float | None = DEFAULT_TRIM_MIB, idle_after: float = DEFAULT_IDLE_SECONDS) -> None:
        #: How far the resident size may rise above its size after the last trim (MiB); None never trims.
        self.headroom_mib = headroom_mib
        #: How long a reader waits for work before it counts as idle and trims (seconds).
        self.idle_after = idle_after
        self._untrimmed = False

    @property
    def enabled(self) -> bool:
        return _MALLOC_TRIM is not None and self.headroom_mib is not None

    def idle_timeout(self) -> float | None:
        """How long the reader should wait for work before calling ``when_idle``; None: nothing to trim."""
        return self.idle_after if self.enabled and self._untrimmed else None

    def after_batch(self) -> None:
        """A batch ran: trim if the resident size has risen by the headroom since the last trim."""
        if not self.enabled:
            return
        self._untrimmed = True
        assert self.headroom_mib is not None
        rss = resident_bytes()
        if rss is None:
            return
        with _Baseline.lock:
            base = _Baseline.rss
            if base is None:  # the first batch in this process sets where growth counts from
                _Baseline.rss = rss
                return
            if rss - base < self.headroom_mib * _MIB:
                return
        self._trim()

    def when_idle(self) -> None:
        """No work came for ``idle_after`` seconds: trim what the batches since the last trim left."""
        if self.enabled and self._untrimmed:
            self._trim()

    def _trim(self) -> None:
        assert _MALLOC_TRIM is not None
        _MALLOC_TRIM(0)
        self._untrimmed = False
        rss = resident_bytes()
        with _Baseline.lock:
            _Baseline.rss = rss
