"""Load a Hugging Face model folder or hub id into a ready-to-run model with its tokenizer.

The task comes from the config's ``architectures``: a ...ForSequenceClassification or ...ForQuestionAnswering
head wins; otherwise a sentence-transformers model (one with ``modules.json``) or a bare encoder (``BertModel``)
is an embedding model. Anything else is refused at load time with a message that says so.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from enum import Enum
from functools import cache
from pathlib import Path

import torch
from tokenizers import normalizers
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from assay import builtin
from assay.allocator import bound_kernel_caches
from assay.errors import ModelLoadError
from assay.models.sentence_config import SentenceConfig, read_sentence_config

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class Task(str, Enum):
    """What a model's head does, and so which adapter serves it."""

    CLASSIFICATION = "classification"
    QUESTION_ANSWERING = "question_answering"
    EMBEDDING = "embedding"


#: The transformers class that loads each task's model.
AUTO_CLASSES = {
    Task.CLASSIFICATION: AutoModelForSequenceClassification,
    Task.QUESTION_ANSWERING: AutoModelForQuestionAnswering,
    Task.EMBEDDING: AutoModel,
}


@dataclass
class LoadedModel:
    """A model in eval mode on its device, with everything an adapter needs to run it."""

    #: The name it was loaded from (folder or hub id).
    name: str
    #: The task detected from the config.
    task: Task
    #: The model's own fast tokenizer.
    tokenizer: PreTrainedTokenizerBase
    #: The model, in eval mode, on ``device`` in ``dtype``.
    model: PreTrainedModel
    #: The model's config.
    config: PretrainedConfig
    #: Where it runs.
    device: torch.device
    #: The dtype of its weights.
    dtype: torch.dtype
    #: Longest sequence, in tokens, that the model accepts (an embedding model's sentence-transformers limit).
    max_length: int
    #: How token vectors become sentence vectors: set for the embedding task only.
    sentence: SentenceConfig | None = None


@cache
def cpu_supports_bf16() -> bool:
    """True where the CPU has native bf16 matrix instructions (AMX or AVX-512 BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in ("amx_bf16", "avx512_bf16"))


def resolve_dtype(requested: str, device: torch.device | str) -> torch.dtype:
    """Turn a dtype setting into a torch dtype; ``auto`` picks bf16 only where the hardware runs it natively."""
    if requested != "auto":
        if requested == "float16" and device.type == "cpu":
            log.warning("float16 on CPU is slow and imprecise; consider bfloat16 or float32")
        return DTYPES[requested]
    if torch.device(device).type == "cuda":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_supports_bf16() else torch.float32


def detect_task(config: PretrainedConfig, name: str, *, sentence_transformers: bool = False) -> Task:
    """Find the task from the config's ``architectures``; a task head wins over sentence-transformers files."""
    architectures = list(getattr(config, "architectures", None) or [])
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return Task.CLASSIFICATION
    if any(a.endswith("ForQuestionAnswering") for a in architectures):
        return Task.QUESTION_ANSWERING
    # A bare model class (BertModel), not one with a head (ForMaskedLM, LMHeadModel) nor an encoder-decoder.
    bare = any(a.endswith("Model") and "For" not in a and "Head" not in a for a in architectures)
    if sentence_transformers or (bare and not getattr(config, "is_encoder_decoder", False)):
        return Task.EMBEDDING
    raise ModelLoadError(
        f"model '{name}' has no supported head: its config lists architectures {architectures or 'none'}, "
        "but Assay serves models with a ...ForSequenceClassification or ...ForQuestionAnswering head, "
        "sentence-transformers models and bare encoders (embeddings)"
    )


#: transformers builds a model under ``torch.set_default_dtype(dtype)`` and restores the old default afterwards:
#: process-wide state, so readers loading at once in their own threads (one per reader) could leave each other's
#: later layers in the wrong dtype (a bf16 model with float32 layers fails at its first batch) and the process with
#: the wrong default. Building models one at a time keeps each in its own dtype.
_FROM_PRETRAINED = threading.Lock()


def load_model(
    name: str, *, device: str = "cpu", dtype: str = "auto", max_sequence_length: int | None = None
) -> LoadedModel:
    """Load tokenizer, config and model; raise ModelLoadError with a clear message on any failure.

    ``name`` is a local folder, a hub id, or ``builtin:NAME`` (assembled into the cache on first use).
    """
    bound_kernel_caches()  # before any model in this process runs (a reader's RSS grows with shapes otherwise)
    source = builtin.resolve(name)
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"model '{name}' asks for device 'cuda', but no CUDA device is available")
    torch_device = torch.device(device)
    sentence = read_sentence_config(source)
    # Old sentence-transformers models keep the transformer in a subfolder named by modules.json.
    subfolder = sentence.subfolder if sentence else ""
    try:
        config = AutoConfig.from_pretrained(source, subfolder=subfolder, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"cannot load model '{name}': {_first_line(exc)}") from None
    task = detect_task(config, name, sentence_transformers=sentence is not None)
    if task is not Task.EMBEDDING:
        sentence = None
    elif sentence is None:
        # A bare encoder: mean pooling (sentence-transformers' default for a plain model), normalized so that its
        # vectors are unit length like those of most sentence-transformers models.
        sentence = SentenceConfig()
    torch_dtype = resolve_dtype(dtype, torch_device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, subfolder=subfolder, trust_remote_code=False, use_fast=True)
        with _FROM_PRETRAINED:
            model = AUTO_CLASSES[task].from_pretrained(
                source, subfolder=subfolder, config=config, trust_remote_code=False, dtype=torch_dtype
            )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"cannot load model '{name}': {_first_line(exc)}") from None
    if not tokenizer.is_fast:
        raise ModelLoadError(f"model '{name}' has no fast tokenizer (tokenizer.json); Assay needs one")
    if sentence is not None and sentence.do_lower_case:
        _lowercase_inputs(tokenizer)
    model.to(torch_device).eval()
    limits = [_model_max_length(config, tokenizer), max_sequence_length, sentence.max_seq_length if sentence else None]
    max_length = min(limit for limit in limits if limit)
    log.info("loaded %s (%s) on %s in %s, max length %d", name, task.value, device, torch_dtype, max_length)
    return LoadedModel(
        name=name, task=task, tokenizer=tokenizer, model=model, config=config,
        device=torch_device, dtype=torch_dtype, max_length=max_length, sentence=sentence,
    )


def _lowercase_inputs(tokenizer: PreTrainedTokenizerBase) -> None:
    """Lowercase before the tokenizer's own normalizer, as sentence-transformers does for do_lower_case."""
    backend = tokenizer.backend_tokenizer
    steps = [normalizers.Lowercase()] + ([backend.normalizer] if backend.normalizer is not None else [])
    backend.normalizer = normalizers.Sequence(steps)


def _model_max_length(config: PretrainedConfig, tokenizer: PreTrainedTokenizerBase) -> int:
    """The smaller of what the tokenizer declares and what the position embeddings allow."""
    candidates = []
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
        candidates.append(tok_max)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        # RoBERTa-style models offset positions by padding_idx + 1.
        offset = 2 if getattr(config, "model_type", "") in {"roberta", "xlm-roberta", "camembert"} else 0
        candidates.append(positions - offset)
    return min(candidates) if candidates else 512


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
