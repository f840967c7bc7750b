"""Direct ``transformers`` forward passes: the reference every logit from the server is compared with."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


@cache
def _load(folder: str):
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32).eval()
    return tokenizer, model


@torch.inference_mode()
def reference_logits(folder: Path, text: str | list[str] | tuple[str, str]) -> list[float]:
    """Logits of one input, unbatched and unpadded, fp32, truncated at the model's maximum length."""
    tokenizer, model = _load(str(folder))
    if isinstance(text, (list, tuple)):
        encoded = tokenizer(text[0], text[1], return_tensors="pt", truncation=True)
    else:
        encoded = tokenizer(text, return_tensors="pt", truncation=True)
    return model(**encoded).logits[0].tolist()
