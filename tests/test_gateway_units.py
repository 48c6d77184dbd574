"""The gateway's pure parts, without a server: tokens, cursors, inboxes, settings, errors,
and the Redis adapter's ``authorize``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from pydantic import SecretStr

from realtime_bridge import (
    Bridge,
    Capability,
    CapabilityNotSupported,
    ConfigurationError,
    InvalidChannel,
    Member,
    VendorUnavailable,
)
from realtime_bridge.adapters.redis import RedisAdapter
from realtime_bridge.gateway import GatewaySettings, Grant, TokenRejected, issue_token, verify_token
from realtime_bridge.gateway.cursor import format_cursor, parse_cursor, parse_stream_id
from realtime_bridge.gateway.entries import Entry
from realtime_bridge.gateway.errors import CLOSE_UNAVAILABLE, Problem, missing_extra, problem_of
from realtime_bridge.gateway.inbox import Closed, Inbox, Overflowed

SECRET = "unit-test-gateway-secret-0123456789abcdef"
NOW = 1_700_000_000.0


# -- tokens ---------------------------------------------------------------------------------


def claims_of(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


def test_a_token_is_an_hs256_jwt_any_library_can_check() -> None:
    ann = Member("u-1", {"name": "Ann"})
    token = issue_token(SECRET, channels=["orders.1", "room.2"], user=ann, now=NOW, ttl=60)
    header, body, signature = token.split(".")
    expected = hmac.new(SECRET.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(signature + "=") == expected
    assert claims_of(token) == {
        "aud": "realtime-bridge-gateway",
        "iat": int(NOW),
        "exp": int(NOW) + 60,
        "channels": ["orders.1", "room.2"],
        "presence": True,
        "sub": "u-1",
        "info": {"name": "Ann"},
    }
    assert verify_token(token, SECRET, now=NOW + 59) == Grant(
        channels=frozenset({"orders.1", "room.2"}),
        presence=True,
        user=ann,
        expires_at=int(NOW) + 60,
    )


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (issue_token(SECRET, channels=["a"], now=NOW, ttl=60), "token_expired"),
        (issue_token("another-secret-" + "y" * 30, channels=["a"], now=NOW + 100), "bad_signature"),
        ("a.b", "malformed_token"),
        ("!!.??.**", "malformed_token"),
    ],
    ids=["expired", "forged", "two-parts", "not-base64"],
)
def test_bad_tokens_are_rejected_with_a_reason_and_401(token: str, reason: str) -> None:
    with pytest.raises(TokenRejected) as caught:
        verify_token(token, SECRET, now=NOW + 100)
    assert (caught.value.reason, caught.value.status) == (reason, 401)
    assert SECRET not in str(caught.value)


def test_a_token_with_its_claims_edited_no_longer_verifies() -> None:
    token = issue_token(SECRET, channels=["orders.1"], now=NOW)
    header, _, signature = token.split(".")
    claims = claims_of(token) | {"channels": ["orders.2"]}
    edited = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenRejected, match="signature"):
        verify_token(f"{header}.{edited}.{signature}", SECRET, now=NOW)


def test_an_unsigned_alg_none_token_is_refused() -> None:
    header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    body = issue_token(SECRET, channels=["a"], now=NOW).split(".")[1]
    with pytest.raises(TokenRejected) as caught:
        verify_token(f"{header}.{body}.", SECRET, now=NOW)
    assert caught.value.reason == "malformed_token"


def test_a_grant_opens_exactly_its_channels_and_presence_only_with_a_user() -> None:
    grant = verify_token(issue_token(SECRET, channels=["orders.1"], now=NOW), SECRET, now=NOW)
    grant.check("orders.1")
    for channel in ("orders.10", "orders.", "orders"):
        with pytest.raises(TokenRejected) as caught:
            grant.check(channel)
        assert (caught.value.reason, caught.value.status) == ("channel_not_granted", 403)
    with pytest.raises(TokenRejected) as caught:
        grant.check("orders.1", presence=True)
    assert caught.value.reason == "presence_not_granted"


def test_issuing_refuses_short_secrets_and_bad_input_without_echoing_the_secret() -> None:
    with pytest.raises(ConfigurationError, match="at least 32 bytes") as caught:
        issue_token("short-secret", channels=["a"], now=NOW)
    assert "short-secret" not in str(caught.value)
    with pytest.raises(InvalidChannel):
        issue_token(SECRET, channels=["no spaces"], now=NOW)
    with pytest.raises(ValueError, match="at least one channel"):
        issue_token(SECRET, channels=[], now=NOW)


# -- the Redis adapter's client auth -----------------------------------------------------------


def test_the_redis_adapter_authorizes_only_with_a_gateway_secret() -> None:
    plain = RedisAdapter.from_url("redis://127.0.0.1:6379/0")
    assert not plain.supports(Capability.CLIENT_AUTH)
    with pytest.raises(CapabilityNotSupported, match="gateway_secret") as caught:
        plain.authorize("orders.1")
    assert caught.value.capability == "client_auth"

    signing = RedisAdapter.from_url(
        f"redis://127.0.0.1:6379/0?gateway_secret={SECRET}&gateway_token_ttl=120",
        clock=lambda: NOW,
    )
    assert signing.supports(Capability.CLIENT_AUTH)
    assert Capability.CLIENT_AUTH in RedisAdapter.capabilities
    grant = signing.authorize("presence-room.1", user=Member("u-1"), socket_id="ignored")
    assert grant["expires_at"] == int(NOW) + 120 and grant["expires_in"] == 120
    assert grant["channels"] == ["presence-room.1"] and grant["presence"] is True
    assert verify_token(grant["token"], SECRET, now=NOW).user == Member("u-1")
    with pytest.raises(ValueError, match="pass the channel"):
        signing.authorize(None)
    assert SECRET not in repr(signing) and SECRET not in signing.name


async def test_bridge_authorize_refuses_a_redis_url_without_a_secret_before_any_io() -> None:
    async with Bridge.from_url("redis://127.0.0.1:1/0") as bridge:  # nothing listens there
        with pytest.raises(CapabilityNotSupported):
            bridge.authorize("orders.1")
    async with Bridge.from_url(f"redis://127.0.0.1:1/0?gateway_secret={SECRET}") as bridge:
        assert verify_token(bridge.authorize("orders.1")["token"], SECRET, now=time.time())


# -- cursors --------------------------------------------------------------------------------


def test_stream_ids_compare_as_numbers() -> None:
    assert parse_stream_id("1700000000000-10") > parse_stream_id("1700000000000-9")
    assert parse_stream_id("999-0") < parse_stream_id("1000-0")
    for bad in ("", "1700", "a-1", "1-2-3", "-1-0", "1 -0"):
        with pytest.raises(ValueError):
            parse_stream_id(bad)


def test_an_sse_cursor_holds_one_position_per_channel() -> None:
    positions = {"a.1": "5-0", "b=2,c;d@e": "7-1"}
    text = format_cursor(positions, ["a.1", "b=2,c;d@e", "unseen"])
    assert text == "a.1:5-0|b=2,c;d@e:7-1"
    assert parse_cursor(text) == positions
    assert parse_cursor("") == {}
    for bad in ("a.1", "a.1:x", "bad channel:1-0", "x" * 40_000):
        with pytest.raises(ValueError):
            parse_cursor(bad)


# -- inboxes --------------------------------------------------------------------------------


def entry(n: int, channel: str = "c.1") -> Entry:
    return Entry(channel, f"{n}-0", b'{"n":%d}' % n)


async def test_an_inbox_hands_out_requests_first_then_events_in_order() -> None:
    inbox: Inbox[str] = Inbox(3)
    assert inbox.offer(entry(1)) and inbox.offer(entry(2))
    inbox.request("subscribe")
    assert await inbox.get(1) == "subscribe"
    assert [(await inbox.get(1)).id, (await inbox.get(1)).id] == ["1-0", "2-0"]  # type: ignore[union-attr]
    assert await inbox.get(0.01) is None  # idle: the caller's cue for a heartbeat


async def test_an_inbox_that_overflows_drops_everything_and_says_how_far_it_got() -> None:
    overflows = []
    inbox: Inbox[str] = Inbox(2, on_overflow=lambda: overflows.append(1))
    assert inbox.offer(entry(1)) and inbox.offer(entry(2))
    assert not inbox.offer(entry(3))
    assert not inbox.offer(entry(4))  # nothing more is taken, but the newest id is kept
    assert overflows == [1]
    assert await inbox.get(1) == Overflowed({"c.1": "4-0"})
    inbox.close("shutdown")
    assert await inbox.get(1) == Closed("shutdown")


async def test_closing_an_inbox_wakes_its_reader() -> None:
    inbox: Inbox[str] = Inbox(2)
    inbox.close("disconnected")
    inbox.close("shutdown")  # the first reason wins
    assert await inbox.get(10) == Closed("disconnected")


def test_an_entry_renders_each_wire_form_once() -> None:
    item = Entry("c.1", "5-1", b'{"v":1}')
    assert item.sse_data == b'data: {"v":1}\n'
    assert json.loads(item.ws_text) == {
        "type": "event",
        "channel": "c.1",
        "id": "5-1",
        "event": {"v": 1},
    }
    assert json.loads(item.page_json) == {"id": "5-1", "event": {"v": 1}}
    assert item.ws_text is item.ws_text
    assert Entry("c.1", "1-0", b"a\r\nb").sse_data == b"data: a\ndata: b\n"


# -- settings and errors --------------------------------------------------------------------


def test_settings_read_the_redis_adapter_url_and_its_options() -> None:
    settings = GatewaySettings(
        redis_url=SecretStr(
            f"redis://:pw@h:6380/2?prefix=app&history_ttl=60&gateway_secret={SECRET}"
        )
    )
    where = settings.location()
    assert (where.prefix, where.history_ttl, where.label) == ("app", 60, "redis://:***@h:6380/2")
    assert settings.token_secret(where.secret) == SECRET
    explicit = GatewaySettings(redis_url=settings.redis_url, secret=SecretStr("z" * 32))
    assert explicit.token_secret(explicit.location().secret) == "z" * 32


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("memory://", "redis:// or rediss://"),
        ("redis://h:6379/0?histroy=5", "unknown option"),
        ("redis://h:6379/0?cluster=true", "not Redis Cluster"),
        ("redis://h:6379/zero", "database number"),
    ],
)
def test_settings_refuse_what_the_gateway_cannot_use(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        GatewaySettings(redis_url=SecretStr(url)).location()


def test_the_gateway_needs_a_secret_and_never_shows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REALTIME_BRIDGE_GATEWAY_SECRET", "REALTIME_BRIDGE_GATEWAY_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = GatewaySettings()
    with pytest.raises(ConfigurationError, match="--secret"):
        settings.token_secret(settings.location().secret)
    monkeypatch.setenv("REALTIME_BRIDGE_GATEWAY_SECRET", "too-short")
    monkeypatch.setenv(
        "REALTIME_BRIDGE_GATEWAY_CORS_ORIGINS", "https://a.example, https://b.example"
    )
    settings = GatewaySettings()
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    with pytest.raises(ConfigurationError) as caught:
        settings.token_secret(settings.location().secret)
    assert "too-short" not in str(caught.value)


def test_errors_map_once_to_http_statuses_and_close_codes() -> None:
    rejected = problem_of(TokenRejected("channel_not_granted", "no", status=403))
    assert (rejected.status, rejected.close_code) == (403, 4403)
    unavailable = problem_of(VendorUnavailable("down"))
    assert (unavailable.status, unavailable.close_code) == (503, CLOSE_UNAVAILABLE)
    assert problem_of(ValueError("bad limit")) == Problem(400, "bad_request", "bad limit")
    with pytest.raises(KeyError):
        problem_of(KeyError("a bug is not a refusal"))


def test_a_missing_extra_is_one_line_naming_it() -> None:
    error = missing_extra(ModuleNotFoundError("No module named 'uvicorn'", name="uvicorn"))
    assert str(error) == (
        "the gateway needs uvicorn, from the 'gateway' extra: "
        "pip install 'realtime-bridge[gateway]'"
    )
    with pytest.raises(ModuleNotFoundError):
        missing_extra(ModuleNotFoundError("No module named 'oops'", name="oops"))
