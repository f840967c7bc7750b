"""Both apps publish an OpenAPI schema that names every route, documents every request field and resolves."""

from __future__ import annotations

import json
import re

import httpx

INFERENCE_ROUTES = {"/classify", "/embed", "/rerank", "/v1/rerank", "/v2/rerank", "/zero_shot", "/healthz", "/status",
                    "/groups"}


def refs_resolve(spec: dict) -> list[str]:
    components = spec.get("components", {}).get("schemas", {})
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(spec)))
    return sorted(refs - set(components))


def assert_documented(spec: dict, path: str) -> None:
    """Every request field described, the errors listed, a real response schema."""
    operation = spec["paths"][path]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    undocumented = [name for name, field in body["properties"].items() if not field.get("description")]
    assert not undocumented, (path, undocumented)
    assert {"200", "404", "422", "500"} <= set(operation["responses"])
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] != {"type": "string"}


def test_inference_openapi_documents_every_route_and_field(server):
    spec = httpx.get(server.url + "/openapi.json").json()
    assert INFERENCE_ROUTES <= set(spec["paths"])
    assert refs_resolve(spec) == []
    for path in ("/classify", "/embed", "/rerank", "/v2/rerank", "/zero_shot"):
        assert_documented(spec, path)
    classify = spec["paths"]["/classify"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert classify["properties"]["return"]["default"] == "raw"
    assert classify["properties"]["qa"]["anyOf"][0]["properties"]["top_k"]["minimum"] == 1
    zero_shot = spec["paths"]["/zero_shot"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert zero_shot["properties"]["hypothesis_template"]["default"] == "This example is {}."
    groups = spec["paths"]["/groups"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert groups == {"$ref": "#/components/schemas/GroupsResponse"}
    fields = spec["components"]["schemas"]["GroupInfo"]["properties"]
    assert {"name", "model_name", "task", "dtype", "status", "labels", "reranker", "zero_shot"} <= set(fields)
    assert all(field.get("description") for field in fields.values())
    assert not {"/", "/playground"} & set(spec["paths"])  # the playground page is not API
    assert httpx.get(server.url + "/docs").status_code == 200


def test_management_openapi_resolves(server):
    spec = httpx.get(server.management_url + "/openapi.json").json()
    assert {"/reader_groups", "/reader", "/reader/{reader_id}", "/status"} <= set(spec["paths"])
    assert refs_resolve(spec) == []


def test_openai_openapi_documents_embeddings(server):
    spec = httpx.get(server.openai_url + "/openapi.json").json()
    assert set(spec["paths"]) == {"/v1/embeddings"}
    assert refs_resolve(spec) == []
    assert_documented(spec, "/v1/embeddings")
    body = spec["paths"]["/v1/embeddings"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["encoding_format"]["default"] == "float"
    assert httpx.get(server.openai_url + "/docs").status_code == 200
