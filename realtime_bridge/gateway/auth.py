"""Letting a request in: its token, what it grants, and the one JSON shape of a refusal.

A token travels as ``Authorization: Bearer <token>`` (servers, ``fetch``) or as
``?token=`` (``EventSource`` and ``WebSocket`` in a browser cannot set headers).
"""

from __future__ import annotations

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse

from .errors import Problem
from .service import Gateway
from .tokens import Grant, TokenRejected

__all__ = ["authenticate", "problem_response", "token_of"]

_NO_STORE = {"Cache-Control": "no-store"}


def token_of(connection: HTTPConnection) -> str:
    """The request's token; ``TokenRejected`` (401, ``missing_token``) if it has none."""
    header = connection.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    token = connection.query_params.get("token")
    if token:
        return token
    raise TokenRejected(
        "missing_token", "no token: send Authorization: Bearer <token> or ?token=<token>"
    )


def authenticate(gateway: Gateway, connection: HTTPConnection) -> Grant:
    """The grant of the request's token (``TokenRejected`` if it has none, or a bad one)."""
    return gateway.verify(token_of(connection))


def problem_response(problem: Problem) -> JSONResponse:
    """A refusal over HTTP: the status, ``{"error": ..., "message": ...}``, never cached."""
    headers = dict(_NO_STORE)
    if problem.status == 401:
        headers["WWW-Authenticate"] = (
            f'Bearer error="invalid_token", error_description="{problem.reason}"'
        )
    return JSONResponse(problem.json(), status_code=problem.status, headers=headers)
