"""Built-in models: each assembles from the shipped deltas, loads through the normal path and is accurate on a
fixed held-out sample; assembly happens once and a corrupted cache is detected and rebuilt."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from assay import builtin
from assay.errors import ModelLoadError
from training import datasets
from training.evaluate import classification_accuracy, qa_answers, squad_scores
from training.evaluate_rerank import rerank_mrr

#: (model, held-out sample, floor on it). The samples are fixed, so the figures are too; the floors sit a little
#: under the full held-out figures in the catalog (a sample of a few hundred is noisier than the whole set).
CLASSIFIERS = [
    ("sentiment", lambda: datasets.sst2("dev"), 300, 0.85),
    ("nli", lambda: datasets.snli("test"), 300, 0.74),
    ("question-type", lambda: datasets.trec("test"), 500, 0.83),
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("assay-cache")
    old = os.environ.get("ASSAY_CACHE_DIR")
    os.environ["ASSAY_CACHE_DIR"] = str(root)
    yield root
    if old is None:
        os.environ.pop("ASSAY_CACHE_DIR")
    else:
        os.environ["ASSAY_CACHE_DIR"] = old


def sample(data: datasets.Labelled, count: int) -> datasets.Labelled:
    step = max(1, len(data.labels) // count)
    keep = list(range(0, len(data.labels), step))[:count]
    return datasets.Labelled([data.texts[i] for i in keep], [data.labels[i] for i in keep],
                             [data.pairs[i] for i in keep] if data.pairs is not None else None)


def test_catalog_lists_every_default_group_and_ships_small_weights() -> None:
    models = builtin.catalog()
    assert set(builtin.DEFAULT_GROUPS.values()) <= set(models)
    shipped = [builtin.WEIGHTS_DIR / m.weights for m in models.values() if m.weights]
    assert len(shipped) == 4
    assert sum(p.stat().st_size for p in shipped) < 40 * 2**20
    for entry in models.values():
        if entry.weights:
            assert builtin.sha256_of(builtin.WEIGHTS_DIR / entry.weights) == entry.weights_sha256
            assert (builtin.CARDS_DIR / f"{entry.name}.md").is_file()


@pytest.mark.parametrize(("name", "data", "count", "floor"), CLASSIFIERS, ids=[c[0] for c in CLASSIFIERS])
def test_classifier_is_accurate_on_held_out_sample(cache: Path, name: str, data, count: int, floor: float) -> None:
    folder = builtin.resolve(f"builtin:{name}")
    assert Path(folder).is_relative_to(cache)
    config = json.loads((Path(folder) / "config.json").read_text())
    assert config["id2label"] == builtin.catalog()[name].id2label
    assert (Path(folder) / "README.md").read_text().startswith(f"# builtin:{name}")
    accuracy = classification_accuracy(f"builtin:{name}", sample(data(), count), "float32")
    assert accuracy >= floor, f"{name}: accuracy {accuracy:.3f} < {floor}"


def test_qa_answers_held_out_questions(cache: Path) -> None:
    _, held_out = datasets.xquad_split()
    questions = held_out[::4][:60]
    scores = squad_scores(qa_answers("builtin:qa", questions, "float32"), questions)
    assert scores["f1"] >= 0.25, scores


def test_embed_reranks_held_out_questions_against_their_articles() -> None:
    _, held_out = datasets.xquad_split()
    assert builtin.resolve("builtin:embed") == str(builtin.base_model_path())  # served as packaged, no assembly
    result = rerank_mrr("builtin:embed", held_out[::3], "float32")
    assert result["mrr_at_10"] >= 0.90, result


def test_assembly_happens_once_and_a_corrupted_cache_is_rebuilt(cache: Path) -> None:
    entry = builtin.catalog()["question-type"]
    folder = builtin.ensure_assembled(entry)
    weights = folder / "model.safetensors"
    first = weights.stat().st_mtime_ns
    assert builtin.ensure_assembled(entry) == folder
    assert weights.stat().st_mtime_ns == first  # intact: not assembled again
    with weights.open("r+b") as handle:  # flip one byte in the middle of the tensors
        handle.seek(weights.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert builtin.sha256_of(weights) != entry.assembled_sha256
    assert builtin.ensure_assembled(entry) == folder
    assert builtin.sha256_of(weights) == entry.assembled_sha256
    (folder / builtin.MARKER).unlink()  # an interrupted assembly leaves no marker
    builtin.ensure_assembled(entry)
    assert json.loads((folder / builtin.MARKER).read_text())["assembled_sha256"] == entry.assembled_sha256


def test_corrupted_shipped_weights_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = builtin.catalog()["sentiment"]
    shipped = tmp_path / "weights"
    shipped.mkdir()
    copy = shipped / str(entry.weights)
    shutil.copyfile(builtin.WEIGHTS_DIR / str(entry.weights), copy)
    with copy.open("r+b") as handle:
        handle.seek(-8, 2)
        handle.write(b"\x00" * 8)
    monkeypatch.setattr(builtin, "WEIGHTS_DIR", shipped)
    with pytest.raises(ModelLoadError, match="does not match its checksum"):
        builtin.ensure_assembled(entry, root=tmp_path / "cache")


def test_unknown_builtin_names_the_known_ones() -> None:
    with pytest.raises(ModelLoadError, match="builtin:sentiment"):
        builtin.resolve("builtin:nope")
