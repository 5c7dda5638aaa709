"""HTTP/1.1 responses as bytes: built once where they never change, on demand otherwise."""

from __future__ import annotations

import json
from http import HTTPStatus

JSON = b"application/json"
JSON_UTF8 = b"application/json; charset=utf-8"


def reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"


def response(status: int, body: bytes = b"", content_type: bytes | None = JSON, headers: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    """A whole response: status line, headers, body. ``Content-Length`` is always set."""
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, reason(status))]
    if body and content_type is not None:
        parts.append(b"Content-Type: " + content_type + b"\r\n")
    for name, value in headers:
        parts.append(name + b": " + value + b"\r\n")
    parts.append(b"Content-Length: %d\r\n\r\n" % len(body))
    parts.append(body)
    return b"".join(parts)


def json_response(status: int, payload: object, content_type: bytes = JSON) -> bytes:
    return response(status, json.dumps(payload, separators=(",", ":")).encode(), content_type)


def error_json(status: int, message: str) -> bytes:
    """The daemon's error shape: ``{"error": "<message>"}``. Never a stack trace or a path."""
    return json_response(status, {"error": message})


def error_empty(status: int, message: str) -> bytes:
    """The processors' error shape (Kestrel): the status alone, an empty body."""
    return response(status)
