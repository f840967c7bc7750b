"""Server and reader settings: built-in defaults < manifest YAML < TAKEOFF_* environment < command-line flags.

The environment names are Titan Takeoff's own, so an existing Takeoff deployment's variables and manifest work
unchanged. Unknown manifest keys are errors that name the key: a typo must never be silently ignored.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from assay import builtin
from assay.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_CONSUMER_GROUP = "primary"

#: Takeoff reader keys that mean something only to Takeoff's generative backends; accepted so real manifests
#: and takeoff-client's create_reader() work, logged as ignored.
TAKEOFF_READER_KEYS_IGNORED = frozenset(
    {
        "log_level", "cuda_visible_devices", "tensor_parallel", "quant_type", "backend", "redis_host",
        "internal_gateway_ip", "access_token", "nvlink_unavailable", "disable_static", "disable_cuda_graph",
        "cuda_graph_cache_capacity", "disable_paged_attention", "page_cache_size", "buffer_requests",
        "prefill_chunk_size", "quantize_cache_bits", "ssd_cache_size", "constrained_decoding_backend",
        "lmfe_max_consecutive_whitespaces", "reader_log_as_json", "loras", "enable_document_processing",
    }
)

#: Takeoff server keys with no meaning for a scoring server; accepted and ignored.
TAKEOFF_SERVER_KEYS_IGNORED = frozenset(
    {"internal_port", "vertex_port", "snowflake_port", "heartbeat_check_interval", "echo", "allow_remote_images"}
)


class ReaderConfig(BaseModel):
    """One reader: a loaded model with its own batching settings, serving one consumer group."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_name: str = Field(description="A local model folder or a Hugging Face hub id.")
    device: Literal["cpu", "cuda"] = Field("cpu", description="Where the model runs.")
    consumer_group: str = Field(DEFAULT_CONSUMER_GROUP, description="The group whose requests this reader takes.")
    max_batch_size: int = Field(32, ge=1, description="Most inputs (sequences) in one forward pass.")
    batch_duration_millis: int = Field(
        10, ge=0, description="Upper bound on how long a waiting input is held to fill a batch."
    )
    max_sequence_length: int | None = Field(
        None, ge=8, description="Longest sequence in tokens; default the model's own maximum."
    )
    max_batch_tokens: int = Field(
        16384, ge=64, description="Most padded tokens (longest sequence x batch size) in one forward pass."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bfloat16 where the CPU (AMX/AVX512-BF16) or GPU supports it, else float32."
    )
    reader_id: str | None = Field(None, description="Stable id; a random one is made when absent.")

    @field_validator("consumer_group", mode="before")
    @classmethod
    def _empty_group_is_primary(cls, value: Any) -> Any:
        # takeoff-client sends "" when no group is given.
        return value or DEFAULT_CONSUMER_GROUP

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, where: str) -> ReaderConfig:
        """Validate a reader mapping, dropping Takeoff-only keys and naming any unknown or invalid one."""
        data = dict(data)
        ignored = sorted(k for k in data if k in TAKEOFF_READER_KEYS_IGNORED)
        if ignored:
            log.info("%s: ignoring Takeoff reader settings with no effect here: %s", where, ", ".join(ignored))
        for key in ignored:
            data.pop(key)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"{where}: {describe_validation_error(exc)}") from None


class GroupAutoscaling(BaseModel):
    """With --ray: Ray Serve scales one consumer group's replicas between these bounds."""

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(1, ge=1, description="Fewest replicas (readers) of the group.")
    max_replicas: int = Field(ge=1, description="Most replicas (readers) of the group.")
    target_queue_length: float = Field(
        2.0, gt=0, description="Requests queued or running per replica that Ray Serve scales to keep (its "
        "target_ongoing_requests)."
    )

    @model_validator(mode="after")
    def _bounds_in_order(self) -> GroupAutoscaling:
        if self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas must be at least min_replicas")
        return self


class ServerConfig(BaseModel):
    """Process-wide settings: ports, limits, security."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("0.0.0.0", description="Address of the inference API.")
    port: int = Field(3000, ge=0, le=65535, description="Port of the inference API (/classify).")
    management_host: str = Field("127.0.0.1", description="Address of the management API.")
    management_port: int = Field(3001, ge=0, le=65535, description="Port of the management API and /metrics.")
    openai_port: int = Field(
        3003, ge=0, le=65535, description="Port of the OpenAI-compatible API (/v1/embeddings), on the inference host."
    )
    enable_metrics: bool = Field(True, description="Serve Prometheus /metrics on the management port.")
    body_size_limit_bytes: int = Field(2 * 1024 * 1024, ge=1, description="Largest request body (413 over it).")
    max_user_batch_size: int = Field(1000, ge=1, description="Most texts or pairs in one request (413 over it).")
    max_prompt_string_bytes: int = Field(150_000, ge=1, description="Largest single text in UTF-8 bytes (413).")
    max_queued_requests: int = Field(
        100_000, ge=1, description="Most inputs waiting in one consumer group's queue (429 over it)."
    )
    drain_timeout_seconds: float = Field(30.0, ge=0, description="On SIGTERM, how long accepted work may finish.")
    management_token: str | None = Field(None, description="Bearer token required on management calls when set.")
    model_roots: list[str] = Field(
        default_factory=list, description="When set, readers added at run time may load local folders only below these."
    )
    ray: bool = Field(False, description="Run the readers as replicas of Ray Serve deployments on a Ray cluster.")
    ray_address: str | None = Field(
        None, description="The Ray cluster to join (implies ray); none: start a local Ray instance."
    )
    ray_replica_cpus: float = Field(1.0, ge=0, description="CPUs Ray reserves for each reader replica.")
    ray_autoscaling: dict[str, GroupAutoscaling] = Field(
        default_factory=dict, description="Consumer group -> replica bounds and target queue length (with ray)."
    )

    @model_validator(mode="after")
    def _address_means_ray(self) -> ServerConfig:
        if self.ray_address:
            self.ray = True
        return self


class AssayConfig(BaseModel):
    """Everything a server needs to start."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    readers: list[ReaderConfig] = Field(default_factory=list)


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, naming the key: `max_batch_size: Input should be greater than or equal to 1`."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(body)"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key '{loc}'")
        elif err["type"] == "missing":
            parts.append(f"missing required key '{loc}'")
        else:
            parts.append(f"{loc}: {str(err['msg']).removeprefix('Value error, ')}")
    return "; ".join(parts)


#: Reader settings that can come from TAKEOFF_* variables and flags, by field name.
READER_ENV = {
    "model_name": "TAKEOFF_MODEL_NAME",
    "device": "TAKEOFF_DEVICE",
    "consumer_group": "TAKEOFF_CONSUMER_GROUP",
    "max_batch_size": "TAKEOFF_MAX_BATCH_SIZE",
    "batch_duration_millis": "TAKEOFF_BATCH_DURATION_MILLIS",
    "max_sequence_length": "TAKEOFF_MAX_SEQUENCE_LENGTH",
    "max_batch_tokens": "TAKEOFF_MAX_BATCH_TOKENS",
    "dtype": "TAKEOFF_DTYPE",
    "reader_id": "TAKEOFF_READER_ID",
}

#: Server settings from TAKEOFF_* variables, by field name (Takeoff's own names where it has one).
SERVER_ENV = {name: f"TAKEOFF_{name.upper()}" for name in ServerConfig.model_fields if name != "ray_autoscaling"}


def load_manifest(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Read a Takeoff manifest: returns (server_config, readers_config by reader id)."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read manifest {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"manifest {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict) or "takeoff" not in raw:
        raise ConfigError(f"manifest {path}: no 'takeoff' key found at the top level")
    unknown_top = sorted(set(raw) - {"takeoff"})
    if unknown_top:
        raise ConfigError(f"manifest {path}: unknown top-level key(s) {unknown_top}")
    body = raw["takeoff"] or {}
    if not isinstance(body, dict):
        raise ConfigError(f"manifest {path}: 'takeoff' must be a mapping")
    unknown = sorted(set(body) - {"server_config", "readers_config"})
    if unknown:
        raise ConfigError(f"manifest {path}: unknown key(s) under 'takeoff': {', '.join(unknown)}")
    server = body.get("server_config") or {}
    readers = body.get("readers_config") or {}
    if not isinstance(server, dict) or not isinstance(readers, dict):
        raise ConfigError(f"manifest {path}: server_config and readers_config must be mappings")
    for reader_id, reader in readers.items():
        if not isinstance(reader, dict):
            raise ConfigError(f"manifest {path}: readers_config.{reader_id} must be a mapping")
    return server, readers


def build_config(
    *,
    config_file: str | None,
    server_flags: Mapping[str, Any],
    reader_flags: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> AssayConfig:
    """Merge defaults, manifest, environment and flags (in that order) into one validated config.

    ``server_flags`` and ``reader_flags`` hold only the flags the user gave (None values are dropped).
    """
    env = os.environ if environ is None else environ
    server_flags = {k: v for k, v in server_flags.items() if v is not None}
    reader_flags = {k: v for k, v in reader_flags.items() if v is not None}

    manifest_path = config_file or env.get("TAKEOFF_CONFIG_FILE")
    server_data: dict[str, Any] = {}
    manifest_readers: dict[str, dict[str, Any]] = {}
    if manifest_path:
        server_data, manifest_readers = load_manifest(Path(manifest_path))
        server_data = {k: v for k, v in server_data.items() if k not in TAKEOFF_SERVER_KEYS_IGNORED}

    for field, var in SERVER_ENV.items():
        if var in env and env[var] != "":
            server_data[field] = _parse_env_list(env[var]) if field == "model_roots" else env[var]
    server_data.update(server_flags)
    try:
        server = ServerConfig.model_validate(server_data)
    except ValidationError as exc:
        raise ConfigError(f"server settings: {describe_validation_error(exc)}") from None

    env_reader = {field: env[var] for field, var in READER_ENV.items() if env.get(var)}
    readers: list[ReaderConfig] = []
    if manifest_readers:
        if "model_name" in env_reader:
            raise ConfigError(
                f"readers_config already set by manifest {manifest_path}, and TAKEOFF_MODEL_NAME defines another "
                "reader. Please either remove the reader environment variables or the manifest's readers_config."
            )
        if "model_name" in reader_flags:
            raise ConfigError(
                f"readers_config already set by manifest {manifest_path}, and --model defines another reader. "
                "Please either drop --model or the manifest's readers_config."
            )
        for reader_id, data in manifest_readers.items():
            merged = {"reader_id": str(reader_id), **data, **reader_flags}
            readers.append(ReaderConfig.from_mapping(merged, where=f"readers_config.{reader_id}"))
    else:
        merged = {**env_reader, **reader_flags}
        if "model_name" in merged:
            readers.append(ReaderConfig.from_mapping(merged, where="reader settings"))
        elif not manifest_path:
            readers = builtin_readers(merged)

    seen: set[str] = set()
    for i, reader in enumerate(readers):
        if reader.reader_id is None:
            readers[i] = reader = reader.model_copy(update={"reader_id": new_reader_id()})
        if reader.reader_id in seen:
            raise ConfigError(f"reader id '{reader.reader_id}' is defined twice")
        seen.add(reader.reader_id)
    return AssayConfig(server=server, readers=readers)


def builtin_readers(settings: Mapping[str, Any]) -> list[ReaderConfig]:
    """With no model configured: one reader per built-in group; batching settings given apply to each."""
    for field in ("consumer_group", "reader_id"):
        if field in settings:
            raise ConfigError(f"{READER_ENV[field]} (or its flag) names one reader, but no model is configured: "
                              "name the model with --model or TAKEOFF_MODEL_NAME")
    return [
        ReaderConfig.from_mapping({**settings, "model_name": f"{builtin.PREFIX}{model}", "consumer_group": group,
                                   "reader_id": group}, where=f"built-in group {group}")
        for group, model in builtin.DEFAULT_GROUPS.items()
    ]


def new_reader_id() -> str:
    """A fresh reader id, as Takeoff makes them (uuid4)."""
    return str(uuid.uuid4())


def _parse_env_list(value: str) -> list[str]:
    return [part for part in value.split(os.pathsep if os.pathsep in value else ",") if part]
