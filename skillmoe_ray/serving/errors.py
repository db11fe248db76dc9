"""OpenAI's error object, and what the service lets a client read of its failures.

Every error status (400, 401, 404, 405, 415, 500, 502, 503, 504) answers ``{"error": {"message", "type",
"param", "code"}}`` with ``code`` a string (or null), as OpenAI's API does, so that its SDKs raise their
typed errors with the message. A failure's details (an engine's exception, a traceback, the actor that
died) go to the server's log under the request's id; the body carries a message written for the client
and that id, never a traceback, a file path, a pid, a node address or an actor id.

Also here: the request gate of an exposed service (an API key when ``serve.api_keys`` are set, JSON
bodies only), pure functions of the headers so that they are tested without a server.
"""

from __future__ import annotations

import hmac
import os
import uuid

# The environment variable whose comma-separated keys join serve.api_keys (keys stay out of config files).
API_KEYS_ENV = "SKILLMOE_API_KEYS"

# HTTP status -> (OpenAI's error type, the code string) of the service's own errors.
KINDS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    415: ("invalid_request_error", "unsupported_media_type"),
    500: ("server_error", "internal_error"),
    502: ("upstream_error", "upstream_error"),
    503: ("overloaded", "overloaded"),
    504: ("timeout", "timeout"),
}

# What a client reads of a failure whose details stay in the log (502 and 500 carry no engine text).
PUBLIC_MESSAGES = {
    500: "internal error of the service",
    502: "answering failed: an expert (or the keyword model) failed on this request",
}


def new_request_id() -> str:
    """A request's id: in the ``x-request-id`` header, the error bodies and the log lines about it."""
    return f"req-{uuid.uuid4().hex[:24]}"


def error_body(message: str, status: int, param: str | None = None, request_id: str | None = None,
               kind: str | None = None) -> dict:
    """OpenAI's error object for ``status``; ``param`` names the request field at fault."""
    fallback = ("invalid_request_error" if status < 500 else "server_error", None)
    default_kind, code = KINDS.get(status, fallback)
    if request_id:
        message = f"{message} (request id {request_id})"
    return {"error": {"message": message, "type": kind or default_kind, "param": param, "code": code}}


def public_message(status: int, message: str | None) -> str:
    """The message a client reads: the service's own for 500 and 502 (their details are logged)."""
    if status in PUBLIC_MESSAGES:
        tail = "; the server log has the details under the request id"
        return PUBLIC_MESSAGES[status] + tail
    return message or "request failed"


class Refused(Exception):
    """A request the gate refuses: HTTP ``status`` with ``message``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def api_keys(configured: tuple[str, ...] | list[str], environ: dict | None = None) -> frozenset[str]:
    """The accepted keys: ``serve.api_keys`` and those in ``$SKILLMOE_API_KEYS`` (comma-separated)."""
    env = (os.environ if environ is None else environ).get(API_KEYS_ENV, "")
    return frozenset(k for k in [*configured, *(part.strip() for part in env.split(","))] if k)


def check_key(keys: frozenset[str], authorization: str | None) -> None:
    """Refused (401) unless no key is set or ``Authorization: Bearer <a listed key>`` is given."""
    if not keys:
        return
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Refused(401, "missing API key: send 'Authorization: Bearer <key>'")
    # compare_digest against every key: the time taken does not tell how much of a key matched
    if not any(hmac.compare_digest(token.strip().encode(), key.encode()) for key in keys):
        raise Refused(401, "incorrect API key")


def check_json(content_type: str | None) -> None:
    """Refused (415) unless the body is declared ``application/json``: a browser's cross-site "simple"
    request (text/plain, a form) cannot be made with that type without a CORS preflight."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media != "application/json":
        raise Refused(415, f"Content-Type must be application/json, got {content_type or 'none'!r}")
