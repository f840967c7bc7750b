"""Configuration: defaults < manifest < TAKEOFF_* environment < flags, conflicts and unknown keys by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from assay.config import build_config
from assay.errors import ConfigError


def manifest(tmp_path: Path, body: dict) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(body))
    return str(path)


def test_defaults():
    config = build_config(config_file=None, server_flags={}, reader_flags={}, environ={})
    assert config.server.port == 3000
    assert config.server.management_port == 3001
    assert config.server.management_host == "127.0.0.1"
    assert config.server.openai_port == 3003
    assert [r.model_name for r in config.readers] == [f"builtin:{m}" for m in
                                                      ("embed", "sentiment", "nli", "qa", "question-type")]


def test_openai_port_from_manifest_environment_and_flag(tmp_path):
    path = manifest(tmp_path, {"takeoff": {"server_config": {"openai_port": 3103}}})
    assert build_config(config_file=path, server_flags={}, reader_flags={}, environ={}).server.openai_port == 3103
    config = build_config(config_file=path, server_flags={}, reader_flags={}, environ={"TAKEOFF_OPENAI_PORT": "3203"})
    assert config.server.openai_port == 3203
    config = build_config(config_file=path, server_flags={"openai_port": 3303}, reader_flags={},
                          environ={"TAKEOFF_OPENAI_PORT": "3203"})
    assert config.server.openai_port == 3303


def test_environment_builds_a_reader_and_flags_win():
    env = {"TAKEOFF_MODEL_NAME": "/m", "TAKEOFF_DEVICE": "cpu", "TAKEOFF_MAX_BATCH_SIZE": "8",
           "TAKEOFF_BATCH_DURATION_MILLIS": "50", "TAKEOFF_PORT": "4000"}
    config = build_config(config_file=None, server_flags={"port": 5000}, reader_flags={"max_batch_size": 16},
                          environ=env)
    assert config.server.port == 5000
    (reader,) = config.readers
    assert (reader.model_name, reader.max_batch_size, reader.batch_duration_millis) == ("/m", 16, 50)
    assert reader.consumer_group == "primary"
    assert reader.reader_id


def test_manifest_then_environment_then_flags_for_server_settings(tmp_path):
    path = manifest(tmp_path, {"takeoff": {
        "server_config": {"port": 3100, "management_port": 3101, "max_user_batch_size": 10},
        "readers_config": {"r1": {"model_name": "/m", "device": "cpu", "consumer_group": "g", "max_batch_size": 4}},
    }})
    config = build_config(config_file=path, server_flags={}, reader_flags={}, environ={})
    assert (config.server.port, config.server.management_port, config.server.max_user_batch_size) == (3100, 3101, 10)
    assert config.readers[0].reader_id == "r1" and config.readers[0].max_batch_size == 4
    config = build_config(config_file=path, server_flags={}, reader_flags={},
                          environ={"TAKEOFF_PORT": "3200", "TAKEOFF_MAX_USER_BATCH_SIZE": "20"})
    assert (config.server.port, config.server.max_user_batch_size) == (3200, 20)
    config = build_config(config_file=path, server_flags={"port": 3300}, reader_flags={},
                          environ={"TAKEOFF_PORT": "3200"})
    assert config.server.port == 3300


def test_config_file_from_environment(tmp_path):
    path = manifest(tmp_path, {"takeoff": {"readers_config": {"a": {"model_name": "/m", "device": "cpu",
                                                                    "consumer_group": "x"}}}})
    config = build_config(config_file=None, server_flags={}, reader_flags={}, environ={"TAKEOFF_CONFIG_FILE": path})
    assert config.readers[0].consumer_group == "x"


def test_reader_in_manifest_and_environment_is_an_error(tmp_path):
    path = manifest(tmp_path, {"takeoff": {"readers_config": {"a": {"model_name": "/m", "device": "cpu",
                                                                    "consumer_group": "x"}}}})
    with pytest.raises(ConfigError, match="readers_config already set by manifest .*TAKEOFF_MODEL_NAME"):
        build_config(config_file=path, server_flags={}, reader_flags={},
                     environ={"TAKEOFF_MODEL_NAME": "/other", "TAKEOFF_DEVICE": "cpu"})


@pytest.mark.parametrize(("body", "message"), [
    ({"takeoff": {"server_config": {"prot": 1}}}, "unknown key 'prot'"),
    ({"takeoff": {"readers_config": {"a": {"model_name": "/m", "max_batch_sise": 3}}}},
     "readers_config.a: unknown key 'max_batch_sise'"),
    ({"takeoff": {"reader_config": {}}}, "unknown key(s) under 'takeoff': reader_config"),
    ({"nottakeoff": {}}, "no 'takeoff' key"),
    ({"takeoff": {"readers_config": {"a": {"device": "cpu"}}}}, "missing required key 'model_name'"),
    ({"takeoff": {"readers_config": {"a": {"model_name": "/m", "device": "tpu"}}}}, "device"),
])
def test_manifest_mistakes_are_named(tmp_path, body, message):
    with pytest.raises(ConfigError) as info:
        build_config(config_file=manifest(tmp_path, body), server_flags={}, reader_flags={}, environ={})
    assert message in str(info.value)


def test_takeoff_only_reader_keys_are_accepted(tmp_path):
    path = manifest(tmp_path, {"takeoff": {"readers_config": {"a": {
        "model_name": "/m", "device": "cpu", "consumer_group": "g", "tensor_parallel": 1, "log_level": "INFO"}}}})
    assert build_config(config_file=path, server_flags={}, reader_flags={}, environ={}).readers[0].model_name == "/m"


def test_empty_consumer_group_means_primary():
    config = build_config(config_file=None, server_flags={}, reader_flags={"model_name": "/m", "consumer_group": ""},
                          environ={})
    assert config.readers[0].consumer_group == "primary"


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "assay.cli", *args], capture_output=True, text=True, timeout=60,
                          env=env)


def test_no_model_configured_serves_the_builtin_groups_with_the_batching_settings_given():
    config = build_config(config_file=None, server_flags={}, reader_flags={"max_batch_size": 8}, environ={})
    assert {r.consumer_group: r.model_name for r in config.readers} == {
        "primary": "builtin:embed", "sentiment": "builtin:sentiment", "nli": "builtin:nli", "qa": "builtin:qa",
        "question-type": "builtin:question-type"}
    assert all(r.max_batch_size == 8 for r in config.readers)


def test_models_command_lists_each_builtin_with_its_group_and_held_out_figures():
    out = run_cli("models").stdout
    for name, group, figure in [("embed", "primary", "mrr_at_10_float32"),
                                ("sentiment", "sentiment", "accuracy_float32"), ("nli", "nli", "accuracy_float32"),
                                ("qa", "qa", "f1_float32"), ("question-type", "question-type", "accuracy_float32")]:
        line = next(line for line in out.splitlines() if line.startswith(f"builtin:{name} "))
        assert f"default group '{group}'" in line
        assert figure in out.split(f"builtin:{name} ", 1)[1].split("builtin:", 1)[0]


def test_a_group_without_a_model_is_an_error_naming_the_model_settings():
    with pytest.raises(ConfigError, match="TAKEOFF_CONSUMER_GROUP.*--model or TAKEOFF_MODEL_NAME"):
        build_config(config_file=None, server_flags={}, reader_flags={"consumer_group": "x"}, environ={})


def test_serve_with_a_manifest_without_readers_names_the_flag_and_variable(tmp_path):
    path = manifest(tmp_path, {"takeoff": {"server_config": {"port": 3000}}})
    result = run_cli("serve", "--config", path, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "--model" in result.stderr and "TAKEOFF_MODEL_NAME" in result.stderr


def test_serve_help_documents_each_flag_with_default_and_variable():
    out = run_cli("serve", "--help").stdout
    for flag, env in [("--model", "TAKEOFF_MODEL_NAME"), ("--device", "TAKEOFF_DEVICE"),
                      ("--consumer-group", "TAKEOFF_CONSUMER_GROUP"), ("--max-batch-size", "TAKEOFF_MAX_BATCH_SIZE"),
                      ("--batch-duration-millis", "TAKEOFF_BATCH_DURATION_MILLIS"),
                      ("--max-sequence-length", "TAKEOFF_MAX_SEQUENCE_LENGTH"), ("--port", "TAKEOFF_PORT"),
                      ("--management-port", "TAKEOFF_MANAGEMENT_PORT"), ("--openai-port", "TAKEOFF_OPENAI_PORT"),
                      ("--dtype", "TAKEOFF_DTYPE")]:
        assert flag in out and env in out
    assert "default: 3000" in out and "default: 3003" in out and "default: primary" in out


def test_bad_manifest_exits_with_its_message(tmp_path):
    path = manifest(tmp_path, {"takeoff": {"server_config": {"prot": 1}}})
    result = run_cli("serve", "--config", path, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2 and "unknown key 'prot'" in result.stderr


def test_ray_flag_and_manifest_settings(tmp_path):
    from assay.cli import ray_flags

    assert ray_flags(None) == {}
    assert ray_flags("") == {"ray": True, "ray_address": None}
    config = build_config(config_file=None, server_flags=ray_flags("10.0.0.1:6379"), reader_flags={}, environ={})
    assert config.server.ray and config.server.ray_address == "10.0.0.1:6379"
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "takeoff:\n  server_config:\n    ray_address: auto\n    ray_replica_cpus: 0.5\n"
        "    ray_autoscaling: {rerank: {min_replicas: 1, max_replicas: 3, target_queue_length: 4}}\n"
        "  readers_config:\n    r: {model_name: /m}\n"
    )
    config = build_config(config_file=str(manifest), server_flags={}, reader_flags={}, environ={})
    assert config.server.ray and config.server.ray_replica_cpus == 0.5
    assert config.server.ray_autoscaling["rerank"].max_replicas == 3
    manifest.write_text("takeoff:\n  server_config:\n    ray_autoscaling: {g: {min_replicas: 3, max_replicas: 2}}\n")
    with pytest.raises(ConfigError, match="max_replicas"):
        build_config(config_file=str(manifest), server_flags={}, reader_flags={}, environ={})


def test_the_single_machine_server_never_imports_ray():
    code = ("import sys, assay.cli, assay.server, assay.api.inference, assay.api.management; "
            "assert not any(m == 'ray' or m.startswith('ray.') for m in sys.modules), 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
