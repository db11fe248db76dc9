"""The ingress's HTTP plumbing: OpenAI error responses on every status, a request id per request, and
CORS only for the configured origins.

Kept apart from the deployments (:mod:`skillmoe_ray_actors.serve`): the routes' wrapper turns any
exception a route did not expect into a 500 in OpenAI's shape (the traceback goes to the log under the
request id), FastAPI's own 404/405/422 become OpenAI error objects, and :class:`ConfiguredCORS` applies
Starlette's CORS middleware with ``serve.cors_origins`` (none: no CORS headers at all, so browsers keep
other sites' pages from reading replies).
"""

from __future__ import annotations

import functools
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware

from skillmoe_ray.serving.errors import Refused, error_body, new_request_id, public_message

log = logging.getLogger(__name__)

# The origins browsers may call the service from (serve.cors_origins), set by the ingress replica at start.
CORS_ORIGINS: list[str] = []


def error_response(status: int, message: str, request_id: str, param: str | None = None,
                   headers: dict | None = None) -> JSONResponse:
    """OpenAI's error object with ``status``; the request id in the message and the x-request-id header."""
    return JSONResponse(error_body(message, status, param, request_id), status_code=status,
                        headers={**(headers or {}), "x-request-id": request_id})


def request_id(request: Request) -> str:
    """The id of ``request`` (made once, on first use)."""
    if not getattr(request.state, "request_id", None):
        request.state.request_id = new_request_id()
    return request.state.request_id


def guarded(route):
    """A route whose refusals (401, 415) answer in OpenAI's shape, and its unexpected exceptions a 500 whose
    details go to the log."""

    @functools.wraps(route)
    async def wrapper(self, request: Request):
        try:
            return await route(self, request)
        except Refused as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            return error_response(exc.status, str(exc), request_id(request), headers=headers)
        except Exception:
            rid = request_id(request)
            log.exception("request %s: %s %s failed", rid, request.method, request.url.path)
            return error_response(500, public_message(500, None), rid)

    return wrapper


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    messages = {404: f"no route {request.url.path}; see GET /v1/models and the README's Serve section",
                405: f"method {request.method} is not allowed on {request.url.path}"}
    message = messages.get(exc.status_code, str(exc.detail))
    headers = getattr(exc, "headers", None)
    return error_response(exc.status_code, message, request_id(request), headers=headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    why = exc.errors()[0].get("msg", "malformed") if exc.errors() else "malformed"
    return error_response(400, f"invalid request: {why}", request_id(request))


class ConfiguredCORS:
    """Starlette's CORSMiddleware over the app when ``serve.cors_origins`` lists origins; nothing otherwise.

    The origins are known only once the ingress replica has its config (after the app is built), so the
    middleware reads them from :data:`CORS_ORIGINS` at its first request.
    """

    def __init__(self, app):
        self.app = app
        self.cors = None

    async def __call__(self, scope, receive, send):
        if self.cors is None and CORS_ORIGINS:
            self.cors = CORSMiddleware(self.app, allow_origins=list(CORS_ORIGINS),
                                       allow_methods=["GET", "POST"],
                                       allow_headers=["Authorization", "Content-Type"])
        await (self.cors or self.app)(scope, receive, send)


def install(app: FastAPI) -> None:
    """OpenAI error objects for FastAPI's own errors, and the configured CORS."""
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(ConfiguredCORS)
