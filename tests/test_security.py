"""Security defaults: the management port binds loopback, a bearer token guards every management call when set,
readers added at run time load local folders only below the model roots, and model code is never executed."""

from __future__ import annotations

import json
import shutil

import httpx
import pytest

from assay.errors import ModelLoadError
from assay.models.loading import load_model
from tests.conftest import MODEL_CACHE
from tests.server import start_server

TOKEN = "correct horse battery staple"


@pytest.fixture(scope="module")
def guarded(models, tmp_path_factory):
    env = {"TAKEOFF_MANAGEMENT_TOKEN": TOKEN, "TAKEOFF_MODEL_ROOTS": str(MODEL_CACHE)}
    running = start_server(tmp_path_factory.mktemp("security"), env=env,
                           args=["--model", str(models["tiny-roberta"]), "--reader-id", "main"])
    yield running
    running.stop()


CALLS = [("GET", "/reader_groups"), ("GET", "/status"), ("GET", "/metrics"), ("GET", "/config/main"),
         ("GET", "/openapi.json"), ("DELETE", "/reader/nobody"), ("POST", "/reader")]


@pytest.mark.parametrize(("method", "path"), CALLS)
def test_every_management_call_needs_the_token(guarded, method, path):
    url = guarded.management_url + path
    body = {"model_name": "x"} if method == "POST" else None
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": TOKEN}):
        response = httpx.request(method, url, json=body, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.json()["error"]["type"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
        assert TOKEN not in response.text
    response = httpx.request(method, url, json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code != 401
    assert response.status_code < 500


def test_the_inference_port_needs_no_token(guarded):
    assert httpx.post(guarded.url + "/classify", json={"text": "open"}).status_code == 200


def test_management_binds_loopback_by_default(guarded):
    assert f"management http://127.0.0.1:{guarded.management_port}" in guarded.log()


def test_run_time_readers_load_only_below_the_model_roots(guarded, models, tmp_path):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    outside = tmp_path / "copied-model"
    shutil.copytree(models["tiny-distilbert"], outside)
    for name in (str(outside), f"{MODEL_CACHE}/../{MODEL_CACHE.name}-elsewhere", "/etc"):
        response = httpx.post(guarded.management_url + "/reader", headers=auth,
                              json={"model_name": name, "consumer_group": "outside"})
        assert response.status_code == 422, response.text
        assert "model roots" in response.json()["error"]["message"]
    response = httpx.post(guarded.management_url + "/reader", headers=auth,
                          json={"model_name": str(models["tiny-distilbert"]), "consumer_group": "inside"})
    assert response.status_code == 201, response.text


def test_model_code_is_never_executed(models, tmp_path):
    folder = tmp_path / "remote-code-model"
    shutil.copytree(models["tiny-roberta"], folder)
    sentinel = tmp_path / "code-ran"
    (folder / "evil.py").write_text(
        f"open({str(sentinel)!r}, 'w').write('ran')\n"
        "from transformers import PretrainedConfig\n"
        "class EvilConfig(PretrainedConfig):\n    model_type = 'assay-evil'\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="assay-evil", auto_map={"AutoConfig": "evil.EvilConfig"})
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError):
        load_model(str(folder))
    assert not sentinel.exists()
