"""What every training script shares: the base model, seeding, LoRA, the training loop and the export.

The scripts fine-tune the packaged all-MiniLM-L6-v2 on CPU with bf16 autocast. Only low-rank adapters (LoRA,
through peft) and the task head are trained, so what ships is small; ``export`` writes them in the format that
``assay.builtin`` merges back into the base weights.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file

from assay.builtin import base_model_path

#: Every linear layer of the encoder gets an adapter: attention and feed-forward.
LORA_TARGETS = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class TrainSettings:
    """Hyperparameters of one run (recorded in the model card)."""

    #: LoRA rank.
    rank: int = 16
    #: LoRA alpha (the merged delta is alpha / rank x B @ A).
    alpha: int = 32
    #: Peak learning rate (linear warm-up, then linear decay to 0).
    learning_rate: float = 5e-4
    #: Sequences per step.
    batch_size: int = 32
    #: Passes over the training data (fractions allowed).
    epochs: float = 1.0
    #: Share of the steps spent warming up.
    warmup: float = 0.06
    #: AdamW weight decay.
    weight_decay: float = 0.01
    #: Stop after this many seconds even if epochs are left (the schedule is laid out for the full run).
    time_limit_s: float = 1e9
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def with_lora(model: torch.nn.Module, settings: TrainSettings, head: Sequence[str]) -> torch.nn.Module:
    """Wrap ``model`` with LoRA adapters; the head modules (named by prefix) train in full."""
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=0.0, target_modules=LORA_TARGETS,
                        bias="none")
    wrapped = get_peft_model(model, config)
    for name, param in wrapped.named_parameters():
        if any(f".{h}." in name for h in head):
            param.requires_grad = True
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    print(f"trainable parameters: {trainable:,}", flush=True)
    return wrapped


def batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> Iterator[list[int]]:
    """Shuffled batches of similar length (less padding): shuffle, sort within chunks of 50 batches, shuffle."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * 50
    out: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lengths.__getitem__)
        out.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(out)
    yield from out


def pad(rows: Sequence[Sequence[int]], value: int = 0) -> torch.Tensor:
    longest = max(len(r) for r in rows)
    out = torch.full((len(rows), longest), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def train(
    model: torch.nn.Module,
    lengths: Sequence[int],
    make_batch: Callable[[list[int]], dict[str, torch.Tensor]],
    settings: TrainSettings,
) -> dict[str, Any]:
    """AdamW with linear warm-up and decay, bf16 autocast; returns what happened (steps, seconds, loss)."""
    rng = random.Random(settings.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    steps_per_epoch = math.ceil(len(lengths) / settings.batch_size)
    total = max(1, int(steps_per_epoch * settings.epochs))
    warmup = max(1, int(total * settings.warmup))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    model.train()
    started = time.monotonic()
    step, losses = 0, []
    while step < total:
        for batch in batches(lengths, settings.batch_size, rng):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(**make_batch(batch)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            step += 1
            if step % 50 == 0 or step == total:
                elapsed = time.monotonic() - started
                print(f"step {step}/{total}  loss {np.mean(losses[-50:]):.4f}  {elapsed:.0f} s", flush=True)
            if step >= total or time.monotonic() - started > settings.time_limit_s:
                break
        if time.monotonic() - started > settings.time_limit_s:
            print(f"time limit reached after {step} of {total} steps", flush=True)
            break
    model.eval()
    return {"steps": step, "planned_steps": total, "seconds": round(time.monotonic() - started, 1),
            "final_loss": float(np.mean(losses[-50:]))}


def export(model: torch.nn.Module, settings: TrainSettings, path: Path) -> None:
    """LoRA factors as ``lora.<module>.lora_A/B`` and trained head weights as ``full.<param>``."""
    tensors: dict[str, torch.Tensor] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        name = name.removeprefix("base_model.model.")
        if ".lora_A." in name or ".lora_B." in name:
            module, which = name.split(".lora_")
            tensors[f"lora.{module}.lora_{which[0]}"] = param.detach().float().contiguous()
        else:
            tensors[f"full.{name}"] = param.detach().float().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": "pt", "lora_scale": str(settings.alpha / settings.rank)})
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)", flush=True)


def base() -> str:
    return str(base_model_path())


def save_run(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
