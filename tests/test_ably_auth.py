"""Ably signatures: the vendors.md vector, the ``ably`` SDK's signer, PyJWT, and webhooks.

Everything is pure, so TokenRequest MACs are compared with what the official
SDK (ably 3.1.4) computes from the same fields, JWTs are checked by PyJWT
with the key secret, and webhooks are built and signed here the way Ably's
docs describe batched, signed deliveries.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from ably import AblyRest
from ably.types.capability import Capability
from ably.types.tokenrequest import TokenRequest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime_bridge.adapters.ably_auth import (
    OPERATIONS,
    ably_jwt,
    canonical_capability,
    capability_for,
    parse_key,
    token_request,
    verify_webhook,
)
from realtime_bridge.errors import ConfigurationError, InvalidChannel, InvalidWebhook
from realtime_bridge.webhooks import WebhookKind

# The inputs of the vendors.md test vector.
KEY_NAME = "appid.keyid"
SECRET = "keysecret"
KEY = f"{KEY_NAME}:{SECRET}"
VECTOR = dict(
    capability={"*": ["*"]},
    client_id="bob",
    ttl_ms=3_600_000,
    timestamp_ms=1_700_000_000_000,
    nonce="0123456789abcdef",
)
VECTOR_MAC = "U1mjjsi2HkAPB/cuXYlfj6cZGxmX0nfqVeV/VrrARWQ="


# --- keys --------------------------------------------------------------------------------


def test_parse_key() -> None:
    assert parse_key(KEY) == (KEY_NAME, SECRET)
    assert parse_key(f" {KEY}\n") == (KEY_NAME, SECRET)  # as read from an env file


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("appid.keyid", "exactly one ':'"),
        ("appid.keyid:s3cr:et", "exactly one ':'"),
        ("appidkeyid:s3cret", "not appId.keyId"),
        ("a.b.c:s3cret", "not appId.keyId"),
        (".keyid:s3cret", "not appId.keyId"),
        ("appid.keyid:", "secret is empty"),
        ("s3cret:appid.keyid", "not appId.keyId"),  # swapped: the secret must not leak
    ],
)
def test_parse_key_rejects_without_echoing(key: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason) as caught:
        parse_key(key)
    message = str(caught.value)
    assert message.startswith("ably: ")
    assert "appId.keyId:secret" in message
    assert "s3cr" not in message


def test_parse_key_rejects_non_strings() -> None:
    with pytest.raises(ConfigurationError, match="must be a string"):
        parse_key(None)  # type: ignore[arg-type]


# --- capabilities ------------------------------------------------------------------------


def test_canonical_capability_is_compact_sorted_and_deduplicated() -> None:
    capability = {"b": ["subscribe", "publish", "subscribe"], "a": ("history",), "*": {"*"}}
    assert canonical_capability(capability) == (
        '{"*":["*"],"a":["history"],"b":["publish","subscribe"]}'
    )


def test_canonical_capability_matches_the_docs_example() -> None:
    # token-request-spec.mdx: the request's capability, and what Ably answers with.
    sent = '{"private":["subscribe","publish","presence"],"*":["subscribe"]}'
    assert canonical_capability(sent) == (
        '{"*":["subscribe"],"private":["presence","publish","subscribe"]}'
    )


def test_canonical_capability_accepts_the_sdks_spaced_form() -> None:
    spaced = str(Capability({"room": ["subscribe", "presence"]}))
    assert spaced == '{"room": ["presence", "subscribe"]}'
    assert canonical_capability(spaced) == '{"room":["presence","subscribe"]}'


def test_a_single_operation_string_is_one_operation() -> None:
    assert canonical_capability({"room": "subscribe"}) == '{"room":["subscribe"]}'
    assert canonical_capability('{"room":"subscribe"}') == '{"room":["subscribe"]}'


def test_canonical_capability_is_idempotent() -> None:
    once = canonical_capability({"z": ["publish"], "a:*": ["subscribe", "presence"]})
    assert canonical_capability(once) == once


def test_non_ascii_is_not_escaped_and_order_is_javascripts() -> None:
    # JSON.stringify (ably-js) leaves non-ASCII as is, and JavaScript sorts by UTF-16
    # code unit, which puts an astral character (a surrogate pair, D83D...) before U+FFFF.
    canonical = canonical_capability({"\uffff": ["subscribe"], "\U0001f600": ["subscribe"]})
    assert canonical == '{"\U0001f600":["subscribe"],"\uffff":["subscribe"]}'
    assert canonical_capability({"café": ["subscribe"]}) == '{"café":["subscribe"]}'


@pytest.mark.parametrize(
    ("capability", "reason"),
    [
        ({"room": ["subscribe", "statistics"]}, "unknown capability operation 'statistics'"),
        ({"room": ["Publish"]}, "unknown capability operation 'Publish'"),
        ({"room": [1]}, "unknown capability operation 1"),
        ({"room": []}, "'room' has no operations"),
        ({"room": {"publish": True}}, "must be a list of strings"),
        ({"room": 7}, "must be a list of strings"),
        ({"": ["subscribe"]}, "not a non-empty string"),
        ({1: ["subscribe"]}, "not a non-empty string"),
        ({}, "grants nothing"),
        ("{}", "grants nothing"),
        ('["subscribe"]', "must be a mapping"),
        ('{"room": ["subscribe"]', "not valid JSON"),
        ('{"room": NaN}', "not valid JSON"),
        ({"\ud800": ["subscribe"]}, "not valid Unicode"),
    ],
)
def test_canonical_capability_rejects(capability: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        canonical_capability(capability)


def test_every_documented_operation_is_accepted() -> None:
    canonical = canonical_capability({"*": sorted(OPERATIONS)})
    assert json.loads(canonical) == {"*": sorted(OPERATIONS)}
    assert "stats" in OPERATIONS and "statistics" not in OPERATIONS


def test_capability_for_defaults() -> None:
    assert capability_for(["orders", "presence-room"]) == {
        "orders": ["history", "presence", "subscribe"],
        "presence-room": ["history", "presence", "subscribe"],
    }


@pytest.mark.parametrize(
    ("flags", "ops"),
    [
        ({"presence": False, "history": False}, ["subscribe"]),
        ({"publish": True}, ["history", "presence", "publish", "subscribe"]),
        ({"publish": True, "history": False}, ["presence", "publish", "subscribe"]),
    ],
)
def test_capability_for_flags(flags: dict[str, bool], ops: list[str]) -> None:
    assert capability_for(["orders"], **flags) == {"orders": ops}


def test_capability_for_merges_duplicates_and_feeds_canonical() -> None:
    capability = capability_for(iter(["b", "a", "b"]), presence=False)
    assert (
        canonical_capability(capability)
        == '{"a":["history","subscribe"],"b":["history","subscribe"]}'
    )


@pytest.mark.parametrize("channels", [["bad channel"], ["*"], ["ns:*"], [""]])
def test_capability_for_validates_channel_names(channels: list[str]) -> None:
    with pytest.raises(InvalidChannel):
        capability_for(channels)


def test_capability_for_refuses_a_string_and_nothing() -> None:
    with pytest.raises(ValueError, match="not one string"):
        capability_for("orders")
    with pytest.raises(ValueError, match="no channels"):
        capability_for([])


# --- TokenRequests: the vector -----------------------------------------------------------


def test_token_request_vector() -> None:
    signed = token_request(KEY_NAME, SECRET, **VECTOR)  # type: ignore[arg-type]
    assert signed == {
        "keyName": KEY_NAME,
        "ttl": 3_600_000,
        "capability": '{"*":["*"]}',
        "clientId": "bob",
        "timestamp": 1_700_000_000_000,
        "nonce": "0123456789abcdef",
        "mac": VECTOR_MAC,
    }
    assert list(signed) == ["keyName", "ttl", "capability", "clientId", "timestamp", "nonce", "mac"]


def test_vector_by_hand() -> None:
    text = 'appid.keyid\n3600000\n{"*":["*"]}\nbob\n1700000000000\n0123456789abcdef\n'
    mac = hmac.new(SECRET.encode(), text.encode(), hashlib.sha256).digest()
    assert base64.b64encode(mac).decode() == VECTOR_MAC


def test_anonymous_token_request_omits_client_id_and_signs_it_empty() -> None:
    signed = token_request(KEY_NAME, SECRET, **{**VECTOR, "client_id": None})  # type: ignore[arg-type]
    assert "clientId" not in signed
    text = 'appid.keyid\n3600000\n{"*":["*"]}\n\n1700000000000\n0123456789abcdef\n'
    mac = hmac.new(SECRET.encode(), text.encode(), hashlib.sha256).digest()
    assert signed["mac"] == base64.b64encode(mac).decode()


def test_token_request_defaults() -> None:
    before = int(time.time() * 1000)
    first = token_request(KEY_NAME, SECRET, capability={"room": ["subscribe"]})
    second = token_request(KEY_NAME, SECRET, capability={"room": ["subscribe"]})
    after = int(time.time() * 1000)
    assert first["ttl"] == 3_600_000
    assert before <= first["timestamp"] <= after
    assert len(first["nonce"]) >= 16 and first["nonce"] != second["nonce"]
    assert first["mac"] != second["mac"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"ttl_ms": 0}, "ttl_ms must be an integer of at least 1"),
        ({"ttl_ms": 1.5}, "ttl_ms must be an integer"),
        ({"ttl_ms": True}, "ttl_ms must be an integer"),
        ({"timestamp_ms": -1}, "timestamp_ms must be an integer of at least 0"),
        ({"nonce": "short"}, "at least 16 characters"),
        ({"nonce": "0123456789abcdef\n"}, "nonce must not contain a newline"),
        ({"client_id": ""}, "non-empty string"),
        ({"client_id": "*"}, "act as any client"),
        ({"client_id": "bob\n1700000000000"}, "client_id must not contain a newline"),
        ({"client_id": 42}, "non-empty string"),
        ({"capability": {"*": ["everything"]}}, "unknown capability operation"),
    ],
)
def test_token_request_rejects(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        token_request(KEY_NAME, SECRET, **{**VECTOR, **change})


@pytest.mark.parametrize(("key_name", "secret"), [("appid", SECRET), (KEY_NAME, "")])
def test_token_request_checks_the_key_without_echoing(key_name: str, secret: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        token_request(key_name, secret, **VECTOR)  # type: ignore[arg-type]
    assert SECRET not in str(caught.value)


# --- TokenRequests: the SDK as the reference ---------------------------------------------
#
# ably 3.1.4 builds ``capability`` with ``json.dumps(sort_keys=True)``, i.e. with spaces
# ('{"*": ["*"]}'), where the spec (and ably-js) use compact JSON ('{"*":["*"]}'). The two
# strings differ, so the two MACs differ; both are valid, because Ably checks the MAC over
# the capability string exactly as it is sent in the request. What must agree is the
# signing itself, so: (1) the SDK's own signer (TokenRequest.sign_request), given our
# fields, gives our MAC; (2) the SDK's whole create_token_request, with its c14n switched
# to compact JSON, gives our TokenRequest field for field; (3) unpatched, it differs from
# ours only by that whitespace, and its MAC is the same HMAC over its own string.


def sdk_mac(signed: Mapping[str, Any]) -> str:
    """The SDK's signer over exactly the fields we send."""
    request = TokenRequest(
        key_name=signed["keyName"],
        client_id=signed.get("clientId"),
        nonce=signed["nonce"],
        capability=signed["capability"],
        ttl=signed["ttl"],
        timestamp=signed["timestamp"],
    )
    request.sign_request(SECRET)
    return str(request.mac)


def sdk_token_request(
    capability: Mapping[str, Any], client_id: str | None, ttl_ms: int, timestamp_ms: int, nonce: str
) -> dict[str, Any]:
    async def create() -> dict[str, Any]:
        rest = AblyRest(key=KEY)
        try:
            params: dict[str, Any] = {
                "capability": dict(capability),
                "ttl": ttl_ms,
                "timestamp": timestamp_ms,
                "nonce": nonce,
            }
            if client_id is not None:
                params["client_id"] = client_id
            made = await rest.auth.create_token_request(params)
        finally:
            await rest.close()
        return {k: v for k, v in made.to_dict().items() if v is not None}

    return asyncio.run(create())


@pytest.fixture
def compact_sdk(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The SDK with its capability c14n producing the spec's compact JSON."""
    monkeypatch.setattr(
        Capability, "c14n", staticmethod(lambda cap: canonical_capability(cap.to_dict()))
    )
    yield


def test_sdk_signer_reproduces_the_vector() -> None:
    assert sdk_mac(token_request(KEY_NAME, SECRET, **VECTOR)) == VECTOR_MAC  # type: ignore[arg-type]


def test_sdk_create_token_request_equals_ours_with_compact_c14n(compact_sdk: None) -> None:
    made = sdk_token_request({"*": ["*"]}, "bob", 3_600_000, 1_700_000_000_000, VECTOR["nonce"])  # type: ignore[arg-type]
    assert made == token_request(KEY_NAME, SECRET, **VECTOR)  # type: ignore[arg-type]
    assert made["mac"] == VECTOR_MAC


def test_unpatched_sdk_differs_only_by_whitespace_in_capability() -> None:
    capability = {"room": ["subscribe", "presence"], "*": ["subscribe"]}
    args = ("bob", 60_000, 1_700_000_000_000, "fedcba9876543210")
    made = sdk_token_request(capability, *args)
    ours = token_request(
        KEY_NAME,
        SECRET,
        capability=capability,
        client_id="bob",
        ttl_ms=60_000,
        timestamp_ms=1_700_000_000_000,
        nonce="fedcba9876543210",
    )
    assert made["capability"] == '{"*": ["subscribe"], "room": ["presence", "subscribe"]}'
    assert ours["capability"] == '{"*":["subscribe"],"room":["presence","subscribe"]}'
    assert json.loads(made["capability"]) == json.loads(ours["capability"])
    assert canonical_capability(made["capability"]) == ours["capability"]
    assert {k: v for k, v in made.items() if k not in {"capability", "mac"}} == {
        k: v for k, v in ours.items() if k not in {"capability", "mac"}
    }
    assert made["mac"] != ours["mac"]  # different strings signed...
    assert sdk_mac(made) == made["mac"]  # ...each MAC being the HMAC of its own string
    assert sdk_mac(ours) == ours["mac"]


# Channel-like resources, wildcards included; client ids are any text Ably would carry.
RESOURCES = st.text(alphabet="abcxyz019-_:*[]", min_size=1, max_size=12)
CAPABILITIES = st.dictionaries(
    RESOURCES, st.lists(st.sampled_from(sorted(OPERATIONS)), min_size=1, max_size=5), min_size=1
)
CLIENT_IDS = st.none() | st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\n"), min_size=1
).filter(lambda text: text != "*")
TTLS = st.integers(min_value=1, max_value=10**12)
TIMESTAMPS = st.integers(min_value=1, max_value=10**13)
NONCES = st.text(alphabet="0123456789abcdef", min_size=16, max_size=32)


@settings(max_examples=150, deadline=None)
@given(CAPABILITIES, CLIENT_IDS, TTLS, TIMESTAMPS, NONCES)
def test_mac_matches_the_sdk_signer(
    capability: dict[str, list[str]], client_id: str | None, ttl: int, stamp: int, nonce: str
) -> None:
    ours = token_request(
        KEY_NAME,
        SECRET,
        capability=capability,
        client_id=client_id,
        ttl_ms=ttl,
        timestamp_ms=stamp,
        nonce=nonce,
    )
    assert sdk_mac(ours) == ours["mac"]
    assert json.loads(ours["capability"]) == {k: sorted(set(v)) for k, v in capability.items()}


@settings(max_examples=40, deadline=None)
@given(CAPABILITIES, CLIENT_IDS, TTLS, TIMESTAMPS, NONCES)
def test_token_request_matches_the_sdk(
    capability: dict[str, list[str]], client_id: str | None, ttl: int, stamp: int, nonce: str
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            Capability, "c14n", staticmethod(lambda cap: canonical_capability(cap.to_dict()))
        )
        made = sdk_token_request(capability, client_id, ttl, stamp, nonce)
    ours = token_request(
        KEY_NAME,
        SECRET,
        capability=capability,
        client_id=client_id,
        ttl_ms=ttl,
        timestamp_ms=stamp,
        nonce=nonce,
    )
    assert made == ours


# --- Ably JWTs ---------------------------------------------------------------------------

# A secret as long as Ably's real ones (PyJWT warns about HMAC keys under 32 bytes).
JWT_SECRET = "wR4oJ2cT-XIs_0dNfQ8mYkP7vLb3uHe9aZg1KxVq6Sy"


def test_jwt_verifies_with_pyjwt() -> None:
    now = time.time()
    token = ably_jwt(KEY_NAME, JWT_SECRET, capability={"room": ["subscribe"]}, client_id="bob")
    assert jwt.get_unverified_header(token) == {"typ": "JWT", "alg": "HS256", "kid": KEY_NAME}
    claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"])
    assert claims == {
        "iat": claims["iat"],
        "exp": claims["iat"] + 3600,
        "x-ably-capability": '{"room":["subscribe"]}',
        "x-ably-clientId": "bob",
    }
    assert int(now) <= claims["iat"] <= time.time()


def test_jwt_fixed_clock_and_anonymous() -> None:
    token = ably_jwt(
        KEY_NAME,
        JWT_SECRET,
        capability='{"b":["publish"],"a":["subscribe"]}',
        ttl_s=60,
        now=1e9 + 0.9,
    )
    claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {
        "iat": 1_000_000_000,
        "exp": 1_000_000_060,
        "x-ably-capability": '{"a":["subscribe"],"b":["publish"]}',
    }
    assert "=" not in token and token.count(".") == 2


def test_jwt_signature_is_the_secrets() -> None:
    token = ably_jwt(KEY_NAME, JWT_SECRET, capability={"room": ["subscribe"]})
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, JWT_SECRET[::-1], algorithms=["HS256"])
    head, claims, _ = token.split(".")
    expected = hmac.new(JWT_SECRET.encode(), f"{head}.{claims}".encode(), hashlib.sha256).digest()
    assert token.endswith(base64.urlsafe_b64encode(expected).rstrip(b"=").decode())


def test_jwt_non_ascii_client_id() -> None:
    token = ably_jwt(KEY_NAME, JWT_SECRET, capability={"room": ["subscribe"]}, client_id="zoë")
    assert jwt.decode(token, JWT_SECRET, algorithms=["HS256"])["x-ably-clientId"] == "zoë"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"ttl_s": 0}, "ttl_s must be an integer"),
        ({"client_id": "*"}, "act as any client"),
        ({"capability": {}}, "grants nothing"),
    ],
)
def test_jwt_rejects(change: dict[str, Any], reason: str) -> None:
    args: dict[str, Any] = {"capability": {"room": ["subscribe"]}, **change}
    with pytest.raises(ValueError, match=reason):
        ably_jwt(KEY_NAME, JWT_SECRET, **args)


# --- webhooks ----------------------------------------------------------------------------

STAMP_MS = 1_700_000_000_000
NOW = STAMP_MS / 1000
AT = datetime.fromtimestamp(NOW, tz=UTC)


def item(source: str, name: str, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "webhookId": "ABcDEf",
        "source": source,
        "serial": "a7bcdEFghIjklm123456789:4",
        "timestamp": STAMP_MS,
        "name": name,
        "data": data,
        **extra,
    }


def batch(*items: dict[str, Any]) -> bytes:
    return json.dumps({"items": list(items)}).encode()


def signature(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def signed(body: bytes, key: str = "keyid") -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Ably-Version": "1.2",
        "X-Ably-Key": key,
        "X-Ably-Signature": signature(body),
    }


def verify(headers: Mapping[str, str], body: bytes, **options: Any) -> list[Any]:
    return verify_webhook(headers, body, key_name=KEY_NAME, key_secret=SECRET, **options)


def message(name: str, data: Any, encoding: str | None = None, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": "ABcDefgHIj:1:0", "clientId": "user-3"}
    entry["connectionId"] = "ABcDefgHIj"
    entry.update(timestamp=1_123_145_678_900, name=name, data=data, **extra)
    if encoding is not None:
        entry["encoding"] = encoding
    return entry


def presence(action: Any, client_id: str = "bob", **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": "abCdEFgHIJ:1:0", "clientId": client_id}
    entry["connectionId"] = "Ab1CDE2FGh"
    entry.update(timestamp=1_582_270_137_276, data="some data", action=action)
    entry.update(extra)
    return entry


def test_docs_message_payload() -> None:
    # The batched message example of Ably's webhooks docs, verbatim.
    body = batch(
        item(
            "channel.message",
            "channel.message",
            {
                "channelId": "chat-channel-4",
                "site": "eu-west-1-A",
                "messages": [message("a message name", "the message data")],
            },
        )
    )
    (event,) = verify(signed(body), body)
    assert (event.kind, event.channel, event.at, event.vendor) == (
        WebhookKind.MESSAGE,
        "chat-channel-4",
        AT,
        "ably",
    )
    assert (event.name, event.event, event.data, event.user_id) == (
        "channel.message",
        "a message name",
        "the message data",
        "user-3",
    )
    assert event.raw["id"] == "ABcDefgHIj:1:0"


def test_every_source_is_normalised() -> None:
    status = {"isActive": True, "occupancy": {"metrics": {"connections": 1}}}
    body = batch(
        item("channel.lifecycle", "channel.opened", {"channelId": "c1", "status": status}),
        item("channel.lifecycle", "channel.closed", {"channelId": "c1", "status": status}),
        item("channel.lifecycle", "channel.region.active", {"channelId": "c1"}),
        item(
            "channel.presence",
            "presence.message",
            {
                "channelId": "room",
                "site": "eu-west-1-A",
                "presence": [presence(1), presence(2), presence(3), presence(4), presence(9)],
            },
        ),
        item(
            "channel.message",
            "channel.message",
            {"channelId": "chat", "messages": [message("a", "x"), message("b", "y")]},
        ),
        item("channel.occupancy", "channel.occupancy", {"channelId": "c2", "status": status}),
        item("channel.annotation", "annotation.created", {"channelId": "c3"}),
        item("something.new", "thing", {}),
    )
    events = verify(signed(body), body)
    assert all(e.vendor == "ably" and e.at == AT for e in events)
    assert [(e.kind, e.name, e.channel, e.user_id) for e in events] == [
        (WebhookKind.CHANNEL_OCCUPIED, "channel.opened", "c1", None),
        (WebhookKind.CHANNEL_VACATED, "channel.closed", "c1", None),
        (WebhookKind.OTHER, "channel.region.active", "c1", None),
        (WebhookKind.MEMBER_ADDED, "present", "room", "bob"),
        (WebhookKind.MEMBER_ADDED, "enter", "room", "bob"),
        (WebhookKind.MEMBER_REMOVED, "leave", "room", "bob"),
        (WebhookKind.OTHER, "update", "room", "bob"),
        (WebhookKind.OTHER, "presence.message", "room", "bob"),
        (WebhookKind.MESSAGE, "channel.message", "chat", "user-3"),
        (WebhookKind.MESSAGE, "channel.message", "chat", "user-3"),
        (WebhookKind.OTHER, "channel.occupancy", "c2", None),
        (WebhookKind.OTHER, "annotation.created", "c3", None),
        (WebhookKind.OTHER, "thing", "", None),
    ]
    assert events[0].raw["data"]["status"] == status  # lifecycle/occupancy keep the item
    assert events[10].raw["data"]["status"]["occupancy"]["metrics"]["connections"] == 1
    assert events[3].data == "some data" and events[3].raw["action"] == 1
    assert [e.event for e in events[8:10]] == ["a", "b"]


def test_presence_actions_given_as_words() -> None:
    data = {"channelId": "room", "presence": [presence("enter"), presence("leave", "al")]}
    body = batch(item("channel.presence", "presence.message", data))
    assert [(e.kind, e.user_id) for e in verify(signed(body), body)] == [
        (WebhookKind.MEMBER_ADDED, "bob"),
        (WebhookKind.MEMBER_REMOVED, "al"),
    ]


def encoded(data: Any, encoding: str | None) -> Any:
    body = batch(
        item(
            "channel.message",
            "channel.message",
            {"channelId": "chat", "messages": [message("n", data, encoding)]},
        )
    )
    (event,) = verify(signed(body), body)
    return event.data


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("data", "encoding", "decoded"),
    [
        ('{"a": [1, 2]}', "json", {"a": [1, 2]}),
        ('{"a": 1}', None, '{"a": 1}'),  # no encoding: a string that merely looks like JSON
        (b64(b"\x00\xff"), "base64", b"\x00\xff"),
        (b64("héllo".encode()), "utf-8/base64", "héllo"),
        (b64(b'{"k": "v"}'), "json/utf-8/base64", {"k": "v"}),
        ("héllo", "utf-8", "héllo"),
        ({"already": "decoded"}, "json", {"already": "decoded"}),
        # Left exactly as sent when a step cannot be undone here.
        (b64(b"ciphertext"), "json/utf-8/cipher+aes-128-cbc/base64", b64(b"ciphertext")),
        ("{not json", "json", "{not json"),
        ("not base64!", "base64", "not base64!"),
        (b64(b"\xff"), "utf-8/base64", b64(b"\xff")),
        ("delta", "vcdiff", "delta"),
    ],
)
def test_message_data_is_decoded(data: Any, encoding: str | None, decoded: Any) -> None:
    assert encoded(data, encoding) == decoded


def test_presence_data_is_decoded() -> None:
    entry = presence(2, data='{"status": "online"}', encoding="json")
    body = batch(
        item("channel.presence", "presence.message", {"channelId": "r", "presence": [entry]})
    )
    (event,) = verify(signed(body), body)
    assert event.data == {"status": "online"}
    assert event.raw["encoding"] == "json"


def test_empty_batch_and_empty_lists() -> None:
    body = batch()
    assert verify(signed(body), body) == []
    body = batch(item("channel.message", "channel.message", {"channelId": "c", "messages": []}))
    assert verify(signed(body), body) == []


@pytest.mark.parametrize("key", ["keyid", KEY_NAME])
def test_key_header_may_be_the_key_id_or_the_key_name(key: str) -> None:
    body = batch(item("channel.lifecycle", "channel.opened", {"channelId": "c"}))
    assert len(verify(signed(body, key=key), body)) == 1


def test_headers_are_case_insensitive() -> None:
    body = batch(item("channel.lifecycle", "channel.opened", {"channelId": "c"}))
    headers = {k.lower(): v for k, v in signed(body).items()}
    assert len(verify(headers, body)) == 1


def test_any_age_is_accepted_unless_max_age_is_given() -> None:
    body = batch(item("channel.lifecycle", "channel.opened", {"channelId": "c"}))
    assert verify(signed(body), body, now=NOW + 86_400 * 365)
    assert verify(signed(body), body, now=NOW + 300, max_age=300)
    assert verify(signed(body), body, now=NOW - 300, max_age=300)


GOOD = batch(item("channel.lifecycle", "channel.opened", {"channelId": "c"}))


def resigned(body: bytes) -> tuple[dict[str, str], bytes]:
    return signed(body), body


def messages_item(messages: Any) -> bytes:
    return batch(
        item("channel.message", "channel.message", {"channelId": "c", "messages": messages})
    )


REJECTED: dict[str, tuple[Callable[[], tuple[dict[str, str], bytes]], dict[str, Any], str]] = {
    "forged signature": (
        lambda: ({**signed(GOOD), "X-Ably-Signature": signature(GOOD, "guess")}, GOOD),
        {},
        "X-Ably-Signature does not match",
    ),
    "tampered body": (lambda: (signed(GOOD), GOOD + b" "), {}, "does not match the body"),
    "hex signature": (
        lambda: (
            {
                **signed(GOOD),
                "X-Ably-Signature": hmac.new(SECRET.encode(), GOOD, "sha256").hexdigest(),
            },
            GOOD,
        ),
        {},
        "does not match",
    ),
    "non-ASCII signature": (
        lambda: ({**signed(GOOD), "X-Ably-Signature": "é"}, GOOD),
        {},
        "does not match",
    ),
    "wrong key": (lambda: (signed(GOOD, key="otherkey"), GOOD), {}, "X-Ably-Key is not"),
    "another app's key name": (
        lambda: (signed(GOOD, key="otherapp.otherkey"), GOOD),
        {},
        "X-Ably-Key is not",
    ),
    "empty key": (lambda: (signed(GOOD, key=""), GOOD), {}, "X-Ably-Key is not"),
    "no key header (single-request mode)": (
        lambda: ({"X-Ably-Signature": signature(GOOD)}, GOOD),
        {},
        "missing X-Ably-Key header .*batched webhooks only",
    ),
    "no signature header": (
        lambda: ({"X-Ably-Key": "keyid"}, GOOD),
        {},
        "missing X-Ably-Signature",
    ),
    "malformed JSON": (lambda: resigned(b'{"items": ['), {}, "not valid JSON"),
    "not UTF-8": (lambda: resigned(b"\xff\xfe"), {}, "not valid JSON"),
    "NaN": (lambda: resigned(b'{"items": [{"timestamp": NaN}]}'), {}, "not valid JSON"),
    "msgpack": (
        lambda: ({**signed(b"\x81"), "Content-Type": "application/x-msgpack"}, b"\x81"),
        {},
        "msgpack",
    ),
    "not an object": (lambda: resigned(b"[]"), {}, "not a JSON object"),
    "enveloped single request": (
        lambda: resigned(b'{"source": "channel.message", "messages": []}'),
        {},
        "no items list",
    ),
    "item not an object": (lambda: resigned(b'{"items": [1]}'), {}, "entry is not an object"),
    "no timestamp": (
        lambda: resigned(batch({**json.loads(GOOD)["items"][0], "timestamp": None})),
        {},
        "no numeric timestamp",
    ),
    "huge timestamp": (
        lambda: resigned(b'{"items": [{"timestamp": 1e999}]}'),
        {},
        "no numeric timestamp",
    ),
    "out-of-range timestamp": (
        lambda: resigned(b'{"items": [{"timestamp": 1e300}]}'),
        {},
        "out of range",
    ),
    "no channelId": (
        lambda: resigned(batch(item("channel.lifecycle", "channel.opened", {}))),
        {},
        "channel.lifecycle item has no data.channelId",
    ),
    "no data": (
        lambda: resigned(batch({**json.loads(GOOD)["items"][0], "data": None})),
        {},
        "no data.channelId",
    ),
    "messages not a list": (lambda: resigned(messages_item("x")), {}, "data.messages is not"),
    "message not an object": (lambda: resigned(messages_item([1])), {}, "data.messages is not"),
    "presence missing": (
        lambda: resigned(batch(item("channel.presence", "presence.message", {"channelId": "c"}))),
        {},
        "data.presence is not",
    ),
    "stale": (lambda: resigned(GOOD), {"now": NOW + 301, "max_age": 300}, "301s old"),
    "from the future": (
        lambda: resigned(GOOD),
        {"now": NOW - 400, "max_age": 300},
        "400s in the future",
    ),
}


@pytest.mark.parametrize("case", REJECTED)
def test_webhook_rejected(case: str) -> None:
    make, options, reason = REJECTED[case]
    headers, body = make()
    with pytest.raises(InvalidWebhook, match=reason) as caught:
        verify(headers, body, **options)
    text = str(caught.value)
    assert text.startswith("ably: ")
    assert SECRET not in text
    assert signature(body) not in text
    assert hmac.new(SECRET.encode(), body, "sha256").hexdigest() not in text


def test_webhook_with_a_malformed_key_name_is_a_configuration_error() -> None:
    # Otherwise an empty keyId part could match an empty X-Ably-Key header.
    with pytest.raises(ConfigurationError, match=r"appId\.keyId"):
        verify_webhook(signed(GOOD, key=""), GOOD, key_name="nodot", key_secret=SECRET)
