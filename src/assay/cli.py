"""The ``assay`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any

from assay import __version__
from assay.config import ReaderConfig, ServerConfig, build_config
from assay.errors import ConfigError

#: (flag, config field, env var, type, help) for reader settings.
READER_FLAGS: list[tuple[str, str, str, type, str]] = [
    ("--model", "model_name", "TAKEOFF_MODEL_NAME", str, "model to serve: a local folder or a Hugging Face hub id"),
    ("--device", "device", "TAKEOFF_DEVICE", str, "cpu or cuda"),
    ("--consumer-group", "consumer_group", "TAKEOFF_CONSUMER_GROUP", str, "consumer group the reader serves"),
    ("--max-batch-size", "max_batch_size", "TAKEOFF_MAX_BATCH_SIZE", int, "most sequences per forward pass"),
    ("--batch-duration-millis", "batch_duration_millis", "TAKEOFF_BATCH_DURATION_MILLIS", int,
     "upper bound on how long an input is held to fill a batch (a lone request is not held)"),
    ("--max-sequence-length", "max_sequence_length", "TAKEOFF_MAX_SEQUENCE_LENGTH", int,
     "longest sequence in tokens, none meaning the model's maximum"),
    ("--max-batch-tokens", "max_batch_tokens", "TAKEOFF_MAX_BATCH_TOKENS", int,
     "most padded tokens (longest sequence x batch size) per forward pass"),
    ("--dtype", "dtype", "TAKEOFF_DTYPE", str,
     "auto, float32, bfloat16 or float16 (auto: bf16 where the hardware has it)"),
    ("--reader-id", "reader_id", "TAKEOFF_READER_ID", str, "id of the reader (default: a random uuid)"),
]

#: (flag, config field, env var, type, help) for server settings.
SERVER_FLAGS: list[tuple[str, str, str, type, str]] = [
    ("--host", "host", "TAKEOFF_HOST", str, "address of the inference API"),
    ("--port", "port", "TAKEOFF_PORT", int, "port of the inference API"),
    ("--management-host", "management_host", "TAKEOFF_MANAGEMENT_HOST", str, "address of the management API"),
    ("--management-port", "management_port", "TAKEOFF_MANAGEMENT_PORT", int, "port of the management API"),
    ("--openai-port", "openai_port", "TAKEOFF_OPENAI_PORT", int,
     "port of the OpenAI-compatible API (/v1/embeddings), on the inference host"),
]


def _default(model: type, field: str) -> Any:
    info = model.model_fields[field]  # type: ignore[attr-defined]
    return None if info.is_required() else info.get_default(call_default_factory=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="assay", description="Assay: a Takeoff-compatible text scoring server.")
    parser.add_argument("--version", action="version", version=f"assay {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="start the server",
        description="Start the inference API, the management API and the OpenAI-compatible API. Flags win over "
        "TAKEOFF_* variables, which win over the manifest (--config), which wins over the defaults.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for flag, field, env, typ, text in READER_FLAGS:
        default = _default(ReaderConfig, field)
        shown = "none" if default is None else default
        serve.add_argument(flag, dest=field, type=typ, default=None, help=f"{text} (default: {shown}; env {env})")
    for flag, field, env, typ, text in SERVER_FLAGS:
        default = _default(ServerConfig, field)
        serve.add_argument(flag, dest=field, type=typ, default=None, help=f"{text} (default: {default}; env {env})")
    serve.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="run the readers on a Ray cluster (Ray Serve): join ADDRESS (e.g. 10.0.0.1:6379 or auto), "
                       "or start a local Ray instance without one; needs the ray extra (pip install assay[ray])")
    serve.add_argument("--config", dest="config_file", default=None,
                       help="a Takeoff manifest (YAML) with server_config and readers_config (env TAKEOFF_CONFIG_FILE)")
    serve.add_argument("--log-level", default=os.environ.get("ASSAY_LOG_LEVEL", "info"),
                       choices=["debug", "info", "warning", "error"], help="log level (default: info)")
    commands.add_parser("models", help="list the built-in models", description="List the built-in models "
                        "(served by `assay serve` with no model configured, or by name: --model builtin:NAME).")
    return parser


def models_command() -> int:
    from assay import builtin

    groups = {model: group for group, model in builtin.DEFAULT_GROUPS.items()}
    for name, entry in builtin.catalog().items():
        figures = ", ".join(f"{k} {v}" for k, v in entry.metrics.items() if isinstance(v, int | float))
        print(f"{builtin.PREFIX}{name}  task {entry.task}; default group '{groups.get(name, '-')}'")
        print(f"    {entry.description}")
        if figures:
            print(f"    held-out: {figures}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve_command(args)
    if args.command == "models":
        return models_command()
    return 2


def ray_flags(value: str | None) -> dict[str, Any]:
    """``--ray`` alone starts a local Ray instance; ``--ray ADDRESS`` joins a cluster; absent leaves the config."""
    if value is None:
        return {}
    return {"ray": True, "ray_address": value or None}


def serve_command(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        config = build_config(
            config_file=args.config_file,
            server_flags={**{field: getattr(args, field) for _, field, *_ in SERVER_FLAGS}, **ray_flags(args.ray)},
            reader_flags={field: getattr(args, field) for _, field, *_ in READER_FLAGS},
        )
    except ConfigError as exc:
        print(f"assay: {exc}", file=sys.stderr)
        return 2
    if not config.readers:
        print(
            "assay: the manifest defines no readers. Add readers_config to it, or name a model with --model (or "
            "TAKEOFF_MODEL_NAME), e.g. `assay serve --model /path/to/model`.",
            file=sys.stderr,
        )
        return 2
    # One request's texts are tokenized in one call; parallelism comes from the worker pool and the readers'
    # torch threads, and tokenizer threads on top of those would only oversubscribe the cores.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if config.server.ray:
        from assay.distributed.cluster import serve_on_ray  # Ray is imported only here

        return serve_on_ray(config, log_level=args.log_level)
    from assay.server import serve  # heavy imports (torch, transformers) only when serving

    asyncio.run(serve(config, log_level=args.log_level))
    return 0


if __name__ == "__main__":
    sys.exit(main())
