"""Embedding models in process: task detection, and every pooling, normalization, truncation, lowercasing and
prompt setting of a sentence-transformers folder, each compared with ``SentenceTransformer.encode``.

The folders are built from tiny-roberta (fast, cased byte-level BPE, 128 tokens) turned into a bare
``RobertaModel`` with sentence-transformers files beside it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from assay.errors import ModelLoadError
from assay.models.adapter import InputKind, Inputs, pad_batch
from assay.models.embedding import EmbeddingAdapter, EmbedOptions
from assay.models.loading import Task, load_model
from assay.models.sentence_config import read_sentence_config
from assay.models.tasks import adapter_for

TEXTS = [
    "Hello World",
    "hello world",
    "The puppy is light blue.",
    "A much longer sentence that goes on for a while, with commas, numbers like 1234 and punctuation! " * 3,
    "x",
]
TRANSFORMER = {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}
POOLING = {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
NORMALIZE = {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
DENSE = {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def bare_encoder(models: dict[str, Path], folder: Path, architectures: list[str] | None = None) -> Path:
    """tiny-roberta's weights and tokenizer under a config that names a bare RobertaModel."""
    shutil.copytree(models["tiny-roberta"], folder)
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = architectures or ["RobertaModel"]
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def sentence_folder(
    models: dict[str, Path],
    folder: Path,
    pooling: dict,
    *,
    normalize: bool = True,
    bert_config: dict | None = None,
    st_config: dict | None = None,
    subfolder: str = "",
) -> Path:
    """A sentence-transformers folder: Transformer (in ``subfolder``), Pooling, optionally Normalize."""
    bare_encoder(models, folder / subfolder if subfolder else folder)
    modules = [{**TRANSFORMER, "path": subfolder}, POOLING] + ([NORMALIZE] if normalize else [])
    write_json(folder / "modules.json", modules)
    write_json(folder / "1_Pooling" / "config.json", {"word_embedding_dimension": 64, **pooling})
    if bert_config is not None:
        write_json(folder / subfolder / "sentence_bert_config.json", bert_config)
    if st_config is not None:
        write_json(folder / "config_sentence_transformers.json", st_config)
    return folder


def embed(adapter: EmbeddingAdapter, texts: list[str]) -> np.ndarray:
    """Encode, pad, forward and decode as a reader does (one padded batch of mixed lengths)."""
    inputs = Inputs(kind=InputKind.SINGLE, items=texts, options=EmbedOptions())
    adapter.check(inputs)
    features = adapter.encode(inputs)
    batch = pad_batch(features.input_ids, features.token_type_ids, adapter.pad_token_id, adapter.loaded.device)
    return np.stack(adapter.decode(inputs, features, adapter.forward(batch)))


def assert_equal_to_sentence_transformers(folder: Path, *, normalize_reference: bool = False) -> EmbeddingAdapter:
    adapter = adapter_for(load_model(str(folder), dtype="float32"))
    assert isinstance(adapter, EmbeddingAdapter)
    got = embed(adapter, TEXTS)
    expected = SentenceTransformer(str(folder), device="cpu").encode(TEXTS)
    if normalize_reference:
        expected = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    assert got.shape == expected.shape
    cosines = (got * expected).sum(axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1))
    assert cosines.min() >= 0.9999, cosines
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
    return adapter


@pytest.mark.parametrize(
    ("pooling", "normalize", "modes"),
    [
        ({"pooling_mode": "cls"}, False, 1),
        ({"pooling_mode": "max"}, True, 1),
        ({"pooling_mode": ["max", "mean"]}, True, 2),
        ({"pooling_mode_mean_tokens": True}, True, 1),
        ({"pooling_mode_mean_sqrt_len_tokens": True, "pooling_mode_weightedmean_tokens": True,
          "pooling_mode_lasttoken": True}, False, 3),
        ({"pooling_mode_cls_token": False, "pooling_mode_mean_tokens": False}, True, 1),
    ],
    ids=["cls", "max", "max+mean", "legacy-mean", "legacy-sqrt+weighted+last", "legacy-none-is-mean"],
)
def test_pooling_modes_equal_sentence_transformers(models, tmp_path, pooling, normalize, modes):
    folder = sentence_folder(models, tmp_path / "model", pooling, normalize=normalize)
    adapter = assert_equal_to_sentence_transformers(folder)
    assert adapter.dimensions == 64 * modes


def test_max_seq_length_and_lowercasing_follow_sentence_bert_config(models, tmp_path):
    folder = sentence_folder(models, tmp_path / "model", {"pooling_mode": "mean"},
                             bert_config={"max_seq_length": 16, "do_lower_case": True})
    adapter = assert_equal_to_sentence_transformers(folder)
    assert adapter.loaded.max_length == 16
    vectors = embed(adapter, TEXTS[:2])
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)  # "Hello World" lowercased is "hello world"
    features = adapter.encode(Inputs(kind=InputKind.SINGLE, items=TEXTS, options=EmbedOptions()))
    assert features.truncated == [3]


def test_the_default_prompt_is_prepended(models, tmp_path):
    folder = sentence_folder(models, tmp_path / "model", {"pooling_mode": "mean"},
                             st_config={"prompts": {"query": "query: ", "passage": "passage: "},
                                        "default_prompt_name": "query"})
    adapter = assert_equal_to_sentence_transformers(folder)
    assert adapter.sentence.prompt == "query: "


def test_old_layout_with_the_transformer_in_a_subfolder(models, tmp_path):
    folder = sentence_folder(models, tmp_path / "model", {"pooling_mode_mean_tokens": True},
                             bert_config={"max_seq_length": 32}, subfolder="0_Transformer")
    assert not (folder / "config.json").exists()
    adapter = assert_equal_to_sentence_transformers(folder)
    assert adapter.loaded.max_length == 32


def test_a_bare_encoder_is_mean_pooled_and_normalized(models, tmp_path):
    folder = bare_encoder(models, tmp_path / "model")
    adapter = assert_equal_to_sentence_transformers(folder, normalize_reference=True)
    assert adapter.loaded.task is Task.EMBEDDING
    assert np.linalg.norm(embed(adapter, ["anything"])[0]) == pytest.approx(1.0, abs=1e-6)


def test_a_task_head_wins_over_sentence_transformers_files(models, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(models["tiny-roberta"], folder)
    write_json(folder / "modules.json", [TRANSFORMER, POOLING])
    write_json(folder / "1_Pooling" / "config.json", {"pooling_mode": "mean"})
    loaded = load_model(str(folder), dtype="float32")
    assert loaded.task is Task.CLASSIFICATION and loaded.sentence is None


def test_a_masked_lm_without_sentence_transformers_files_is_refused(models, tmp_path):
    folder = bare_encoder(models, tmp_path / "model", architectures=["RobertaForMaskedLM"])
    with pytest.raises(ModelLoadError, match="no supported head"):
        load_model(str(folder))


@pytest.mark.parametrize(
    ("modules", "pooling", "words"),
    [
        ([TRANSFORMER, POOLING, DENSE], {"pooling_mode": "mean"}, "Transformer -> Pooling -> Dense"),
        ([TRANSFORMER], {}, "Transformer;"),
        ([TRANSFORMER, POOLING], {"pooling_mode": "median"}, "'median'"),
        ({"not": "a list"}, {}, "not a list of modules"),
    ],
    ids=["dense", "no-pooling", "unknown-mode", "malformed"],
)
def test_what_cannot_be_reproduced_is_refused_by_name(tmp_path, modules, pooling, words):
    write_json(tmp_path / "modules.json", modules)
    write_json(tmp_path / "1_Pooling" / "config.json", pooling)
    with pytest.raises(ModelLoadError) as raised:
        read_sentence_config(str(tmp_path))
    assert words in str(raised.value)


def test_a_folder_without_modules_json_has_no_sentence_config(tmp_path):
    assert read_sentence_config(str(tmp_path)) is None
