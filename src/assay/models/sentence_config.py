"""A sentence-transformers model (local folder or hub repo): how it pools, normalizes, truncates and prompts.

Read from the files sentence-transformers itself reads: ``modules.json`` (the chain of modules), the Pooling
module's ``config.json``, ``sentence_bert_config.json`` (``max_seq_length``, ``do_lower_case``) and
``config_sentence_transformers.json`` (the default prompt). Only chains Assay reproduces exactly are accepted:
Transformer, Pooling, then optionally Normalize. Any other module (Dense, LayerNorm, ...) would change the
vectors, so such a model is refused at load time rather than served with embeddings that differ from
``SentenceTransformer.encode``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from transformers.utils import cached_file

from assay.errors import ModelLoadError
from assay.models.pooling import Pooling, PoolingMode

#: The legacy boolean keys of a Pooling config, in the order sentence-transformers concatenates their modes.
LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": PoolingMode.CLS,
    "pooling_mode_max_tokens": PoolingMode.MAX,
    "pooling_mode_mean_tokens": PoolingMode.MEAN,
    "pooling_mode_mean_sqrt_len_tokens": PoolingMode.MEAN_SQRT_LEN,
    "pooling_mode_weightedmean_tokens": PoolingMode.WEIGHTED_MEAN,
    "pooling_mode_lasttoken": PoolingMode.LAST_TOKEN,
}


@dataclass(frozen=True)
class SentenceConfig:
    """Everything besides the transformer's weights that decides a model's sentence vectors."""

    #: Where the transformer lives inside the model ("" usually; "0_Transformer" in old sentence-transformers).
    subfolder: str = ""
    #: Pooling modes and normalization.
    pooling: Pooling = field(default_factory=Pooling)
    #: sentence-transformers truncates inputs here (sentence_bert_config.json); None: the model's own limit.
    max_seq_length: int | None = None
    #: Lowercase texts before tokenizing (sentence_bert_config.json's do_lower_case).
    do_lower_case: bool = False
    #: Prepended to every text, as ``encode`` does with the model's default prompt ("" for none).
    prompt: str = ""


def read_sentence_config(name: str) -> SentenceConfig | None:
    """The model's sentence-transformers settings, or None when it has no ``modules.json``."""
    modules = _read_json(name, "modules.json")
    if modules is None:
        return None
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ModelLoadError(f"model '{name}': modules.json is not a list of modules")
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise ModelLoadError(
            f"model '{name}' chains the sentence-transformers modules {' -> '.join(kinds) or 'none'}; Assay "
            "reproduces only Transformer -> Pooling (-> Normalize) exactly and would serve other embeddings"
        )
    subfolder = str(modules[0].get("path") or "")
    pooling_path = str(modules[1].get("path") or "")
    pooling_config = _read_mapping(name, _join(pooling_path, "config.json"))
    transformer_config = _read_mapping(name, _join(subfolder, "sentence_bert_config.json"))
    model_config = _read_mapping(name, "config_sentence_transformers.json")
    prompt = _default_prompt(name, model_config)
    if prompt and pooling_config.get("include_prompt") is False:
        raise ModelLoadError(
            f"model '{name}' leaves its default prompt out of the pooling (include_prompt: false), which Assay "
            "does not support"
        )
    max_seq_length = transformer_config.get("max_seq_length")
    return SentenceConfig(
        subfolder=subfolder,
        pooling=Pooling(modes=pooling_modes(name, pooling_config), normalize=kinds[-1] == "Normalize"),
        max_seq_length=max_seq_length if isinstance(max_seq_length, int) and max_seq_length > 0 else None,
        do_lower_case=bool(transformer_config.get("do_lower_case", False)),
        prompt=prompt,
    )


def pooling_modes(name: str, config: dict[str, Any]) -> tuple[PoolingMode, ...]:
    """The modes a Pooling config names: ``pooling_mode`` (a name or a list) or the legacy boolean keys.

    No mode at all means mean pooling, sentence-transformers' own default.
    """
    declared = config.get("pooling_mode")
    if declared is None:
        names = [mode.value for key, mode in LEGACY_POOLING_KEYS.items() if config.get(key)]
    else:
        names = [declared] if isinstance(declared, str) else list(declared)
    try:
        modes = tuple(PoolingMode(mode) for mode in names)
    except ValueError:
        known = ", ".join(mode.value for mode in PoolingMode)
        raise ModelLoadError(f"model '{name}' pools with {names}; Assay knows the pooling modes {known}") from None
    return modes or (PoolingMode.MEAN,)


def _default_prompt(name: str, config: dict[str, Any]) -> str:
    default = config.get("default_prompt_name")
    if not default:
        return ""
    prompts = config.get("prompts") or {}
    if default not in prompts:
        raise ModelLoadError(f"model '{name}': its default prompt '{default}' is not among its prompts")
    return str(prompts[default])


def _join(folder: str, filename: str) -> str:
    return f"{folder.rstrip('/')}/{filename}" if folder else filename


def _read_mapping(name: str, filename: str) -> dict[str, Any]:
    """A JSON object file of the model, {} when it has none."""
    data = _read_json(name, filename)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ModelLoadError(f"model '{name}': {filename} is not a JSON object")
    return data


def _read_json(name: str, filename: str) -> Any:
    """A JSON file of the model's folder or hub repo (downloaded and cached like transformers' own files); None
    when absent or unreachable: loading the config then reports the real problem."""
    try:
        path = cached_file(
            name, filename, _raise_exceptions_for_missing_entries=False, _raise_exceptions_for_connection_errors=False
        )
    except (OSError, ValueError):
        return None
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"model '{name}': cannot read {filename}: {exc}") from None
