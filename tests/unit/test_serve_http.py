"""The ingress's HTTP plumbing on a FastAPI app of its own (no Serve): a 500 in OpenAI's shape whose
details go to the log only, FastAPI's 404/405 as OpenAI error objects, and CORS only for configured
origins."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from skillmoe_ray.serving.errors import check_key
from skillmoe_ray_actors import serve_http


class Routes:
    async def boom(self, request: Request):
        raise RuntimeError("engine died at /home/user/engine.py (pid=4242, ip=10.1.2.3, actor_id=abcdef0123)")

    async def ok(self, request: Request):
        check_key(frozenset({"k"}), request.headers.get("authorization"))
        return {"ok": True}


def app_with_routes() -> TestClient:
    app = FastAPI()
    serve_http.install(app)
    routes = Routes()
    boom, ok = serve_http.guarded(Routes.boom), serve_http.guarded(Routes.ok)

    @app.post("/boom")
    async def boom_route(request: Request):
        return await boom(routes, request)

    @app.post("/ok")
    async def ok_route(request: Request):
        return await ok(routes, request)

    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def no_cors(monkeypatch):
    monkeypatch.setattr(serve_http, "CORS_ORIGINS", [])


def test_an_unexpected_exception_is_a_500_error_object_with_the_details_in_the_log_only(no_cors, caplog):
    with caplog.at_level(logging.ERROR):
        reply = app_with_routes().post("/boom", json={})
    error = reply.json()["error"]
    assert reply.status_code == 500 and error["code"] == "internal_error" and error["type"] == "server_error"
    rid = reply.headers["x-request-id"]
    leaks = ("pid", "10.1.2.3", "/home", "actor", "Traceback")
    assert rid in error["message"] and not any(s in reply.text for s in leaks)
    assert rid in caplog.text and "pid=4242" in caplog.text  # the log holds what the client is not told


def test_fastapis_own_errors_and_a_refused_key_are_openai_error_objects(no_cors):
    api = app_with_routes()
    cases = [("GET", "/nowhere", 404, "not_found"), ("GET", "/ok", 405, "method_not_allowed"),
             ("POST", "/ok", 401, "invalid_api_key")]
    for method, path, status, code in cases:
        reply = api.request(method, path)
        error = reply.json()["error"]
        assert reply.status_code == status and error["code"] == code
        assert set(error) == {"message", "type", "param", "code"}


def test_cors_headers_only_for_configured_origins(monkeypatch):
    monkeypatch.setattr(serve_http, "CORS_ORIGINS", [])
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in app_with_routes().options("/ok", headers=preflight).headers
    monkeypatch.setattr(serve_http, "CORS_ORIGINS", ["https://app.example"])
    api = app_with_routes()
    allowed = api.options("/ok", headers={**preflight, "Origin": "https://app.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in api.options("/ok", headers=preflight).headers
