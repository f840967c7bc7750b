"""Sentence pooling as sentence-transformers defines it: a padded batch of token vectors in, one vector per row out.

Every mode works on the whole batch at once through the attention mask (no per-row or per-token Python loop).
Several modes are concatenated in the order the model's config lists them, as sentence-transformers' Pooling
module does. Rows are padded on the right (``pad_batch`` always pads there), so a row's first token is at 0 and
its last real token at its length - 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch


class PoolingMode(str, Enum):
    """sentence-transformers' pooling modes, under the names its Pooling config uses."""

    CLS = "cls"
    MAX = "max"
    MEAN = "mean"
    MEAN_SQRT_LEN = "mean_sqrt_len_tokens"
    WEIGHTED_MEAN = "weightedmean"
    LAST_TOKEN = "lasttoken"


@dataclass(frozen=True)
class Pooling:
    """How token vectors become one sentence vector."""

    #: The modes whose results are concatenated, in order (one mode: the hidden size).
    modes: tuple[PoolingMode, ...] = (PoolingMode.MEAN,)
    #: Scale each vector to unit length (a Normalize module follows the pooling).
    normalize: bool = True


def sentence_vectors(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """[batch, tokens, hidden] -> [batch, hidden x modes], in float32 whatever the model's dtype.

    Sums run in float32 as sentence-transformers accumulates them, so bf16 and fp16 models do not lose precision
    in the pooling itself.
    """
    hidden = hidden.float()
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    lengths = mask.sum(dim=1).clamp(min=1e-9)
    parts = []
    for mode in pooling.modes:
        if mode is PoolingMode.CLS:
            parts.append(hidden[:, 0])
        elif mode is PoolingMode.MAX:
            parts.append(hidden.masked_fill(mask == 0, float("-inf")).max(dim=1).values)
        elif mode is PoolingMode.MEAN:
            parts.append((hidden * mask).sum(dim=1) / lengths)
        elif mode is PoolingMode.MEAN_SQRT_LEN:
            parts.append((hidden * mask).sum(dim=1) / lengths.sqrt())
        elif mode is PoolingMode.WEIGHTED_MEAN:
            positions = torch.arange(1, hidden.shape[1] + 1, device=hidden.device, dtype=hidden.dtype)
            weights = mask * positions.view(1, -1, 1)
            parts.append((hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9))
        else:  # LAST_TOKEN
            last = attention_mask.sum(dim=1).clamp(min=1) - 1
            parts.append(hidden[torch.arange(hidden.shape[0], device=hidden.device), last])
    vectors = torch.cat(parts, dim=-1)
    if pooling.normalize:
        vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
    return vectors
