"""Translating nats-py's errors (and JetStream's error answers) into the library's, once.

JetStream answers a refused request with a JSON error carrying an HTTP-like
``code``: 503 (JetStream or the stream is not available right now) and 5xx
are transient, 401/403 are refused credentials or permissions, anything else
(400, 404...) is a refusal that retrying the same request cannot fix. The
server refuses a connection's credentials or permissions with a protocol
error (``-ERR 'Authorization Violation'``), which nats-py raises as a plain
``nats.errors.Error`` carrying that text.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import nats.errors
import nats.js.errors

from ..errors import (
    AuthenticationFailed,
    PublishRejected,
    RealtimeBridgeError,
    VendorUnavailable,
)

__all__ = ["api_error", "mapped_errors", "translate"]

_NO_JETSTREAM = "is JetStream enabled on the server?"
_ACCESS_REFUSED = ("authorization violation", "permissions violation", "authentication")


def api_error(
    adapter: str, code: int, description: str, doing: str, event_id: str | None = None
) -> RealtimeBridgeError:
    """The library's error for a JetStream error answer with this ``code``."""
    text = f"JetStream refused {doing}: {description} (code {code})"
    if code in (401, 403):
        return AuthenticationFailed(text, adapter=adapter, event_id=event_id)
    if code >= 500 or code == 408:
        return VendorUnavailable(text, adapter=adapter)
    return PublishRejected(text, adapter=adapter, event_id=event_id)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _jetstream(exc: nats.js.errors.APIError, adapter: str, doing: str) -> RealtimeBridgeError:
    if isinstance(exc, nats.js.errors.ServiceUnavailableError) and exc.code is None:
        # nats-py's word for "no responders" to a JetStream API request.
        return VendorUnavailable(
            f"JetStream did not answer while {doing}: {_NO_JETSTREAM}", adapter=adapter
        )
    return api_error(adapter, exc.code or 500, exc.description or _describe(exc), doing)


def translate(exc: BaseException, adapter: str, doing: str) -> RealtimeBridgeError | None:
    """The library's error for ``exc``, a nats-py or network error; ``None`` for others."""
    if isinstance(exc, nats.js.errors.APIError):
        return _jetstream(exc, adapter, doing)
    if isinstance(exc, nats.errors.NoRespondersError):
        return VendorUnavailable(
            f"nothing answered while {doing}: {_NO_JETSTREAM}", adapter=adapter
        )
    if isinstance(exc, nats.errors.MaxPayloadError):
        return PublishRejected(
            f"a message is over the server's max_payload while {doing}", adapter=adapter
        )
    if isinstance(exc, nats.errors.OutboundBufferLimitError):
        return VendorUnavailable(
            f"not connected to NATS (reconnecting) while {doing}", adapter=adapter
        )
    refused = isinstance(
        exc, (nats.errors.AuthorizationError, nats.errors.InvalidUserCredentialsError)
    )
    if refused or (
        isinstance(exc, nats.errors.Error)
        and any(word in str(exc).lower() for word in _ACCESS_REFUSED)
    ):
        return AuthenticationFailed(
            f"NATS refused the credentials or permissions while {doing}: {_describe(exc)}",
            adapter=adapter,
        )
    if isinstance(exc, (nats.errors.Error, TimeoutError, OSError)):
        return VendorUnavailable(
            f"cannot reach NATS while {doing}: {_describe(exc)}", adapter=adapter
        )
    return None


@contextlib.contextmanager
def mapped_errors(adapter: str, doing: str) -> Iterator[None]:
    """Raise the library's error for any nats-py error raised inside, naming what was being done."""
    try:
        yield
    except RealtimeBridgeError:
        raise
    except Exception as exc:
        mapped = translate(exc, adapter, doing)
        if mapped is None:
            raise
        raise mapped from exc
