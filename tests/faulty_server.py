"""Launch ``assay serve`` with fault points in the classification forward pass (test-only, no hooks in assay).

    python tests/faulty_server.py serve --model ...      # same arguments as ``assay``

An input holding one of these markers changes what the forward pass of its batch does:

    xyzzysleep   sleep FAULT_SLEEP_SECONDS (default 2) first: keeps the reader busy so later work stays queued
    xyzzyraise   raise RuntimeError: the batch fails, the reader must keep serving
    xyzzykill    raise a BaseException the reader does not catch per batch: its thread ends (the reader dies)
"""

from __future__ import annotations

import os
import sys
import time

from assay.models.classification import ClassificationAdapter

SLEEP_SECONDS = float(os.environ.get("FAULT_SLEEP_SECONDS", "2"))


class ReaderKilled(BaseException):
    """Not an Exception: escapes the reader's per-batch handler and ends its thread."""


_forward = ClassificationAdapter.forward


def _faulty_forward(self: ClassificationAdapter, batch):  # type: ignore[no-untyped-def]
    texts = ["".join(self.tokenizer.decode(row[:length]).split()) for row, length in
             zip(batch.input_ids.tolist(), batch.lengths, strict=True)]
    if any("xyzzysleep" in text for text in texts):
        time.sleep(SLEEP_SECONDS)
    if any("xyzzyraise" in text for text in texts):
        raise RuntimeError("fault injected by tests/faulty_server.py")
    if any("xyzzykill" in text for text in texts):
        raise ReaderKilled("reader thread killed by tests/faulty_server.py")
    return _forward(self, batch)


ClassificationAdapter.forward = _faulty_forward  # type: ignore[method-assign]

if __name__ == "__main__":
    from assay.cli import main

    sys.exit(main(sys.argv[1:]))
