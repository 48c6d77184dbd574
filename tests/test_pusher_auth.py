"""Pusher signatures: Pusher's published vectors, and the ``pusher`` SDK as the reference.

Everything is pure, so every output is compared byte for byte with what the
official SDK (pusher 3.3.4) makes from the same inputs, and webhooks are
accepted or rejected exactly when the SDK accepts or rejects them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import string
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypedDict

import nacl.secret
import nacl.utils
import pusher
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pusher.crypto import encrypt as sdk_encrypt

from realtime_bridge.adapters import pusher_auth
from realtime_bridge.adapters.base import Member
from realtime_bridge.adapters.pusher_auth import (
    authenticate_user,
    authorize_channel,
    encrypt_payload,
    parse_master_key,
    sign_query,
    verify_webhook,
)
from realtime_bridge.errors import ConfigurationError, InvalidChannel, InvalidWebhook
from realtime_bridge.webhooks import WebhookKind

# The credentials of Pusher's worked examples (auth-signatures.md, rest-api.md).
KEY = "278d425bdf160c739803"
SECRET = "7ad3773142a6692b25b8"
MASTER_KEY = bytes(range(32))
MASTER_KEY_B64 = base64.b64encode(MASTER_KEY).decode()

SDK = pusher.Pusher(app_id="1", key=KEY, secret=SECRET, encryption_master_key_base64=MASTER_KEY_B64)


class Credentials(TypedDict):
    key: str
    secret: str


CREDENTIALS = Credentials(key=KEY, secret=SECRET)


def hmac_hex(message: str) -> str:
    return hmac.new(SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()


# --- Pusher's published vectors ----------------------------------------------------------


def test_rest_vector() -> None:
    body = b'{"name":"foo","channels":["project-3"],"data":"{\\"some\\":\\"data\\"}"}'
    query = sign_query("POST", "/apps/3/events", {}, body, timestamp=1353088179, **CREDENTIALS)
    assert query["body_md5"] == "ec365a775a4cd0599faeb73354201b6f"
    assert query["auth_signature"] == (
        "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
    )


def test_private_channel_vector() -> None:
    body = authorize_channel("private-foobar", "1234.1234", **CREDENTIALS)
    key, signature = body["auth"].split(":")
    assert key == KEY
    assert signature.startswith("58df8b0c") and signature.endswith("51c3a4")  # vendors.md
    assert signature == "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
    assert body == {"auth": f"{KEY}:{signature}"}


def test_user_sign_in_vector() -> None:
    # The docs sign compact JSON; the Python SDK (and we) sign json.dumps' default
    # ", " / ": " form. Pusher checks the signature against the user_data sent
    # back, so both are valid: the docs' vector checks the string-to-sign format.
    signature = hmac_hex('1234.1234::user::{"id":"12345"}')
    assert signature.startswith("4708d583") and signature.endswith("e336ba")
    ours = authenticate_user("1234.1234", Member("12345"), **CREDENTIALS)
    assert ours["user_data"] == '{"id": "12345"}'
    assert ours["auth"] == f"{KEY}:{hmac_hex('1234.1234::user::' + ours['user_data'])}"


@pytest.mark.parametrize(
    ("name", "prefix", "suffix"),
    [("Mr. Pusher", "afaed369", "6304c"), ("Mr. Channels", "31935e7d", "bc80")],
)
def test_presence_doc_example(name: str, prefix: str, suffix: str) -> None:
    """The docs print "Mr. Channels" but their hash is the one of "Mr. Pusher"."""
    channel_data = json.dumps({"user_id": 10, "user_info": {"name": name}}, separators=(",", ":"))
    signature = hmac_hex(f"1234.1234:presence-foobar:{channel_data}")
    assert signature.startswith(prefix) and signature.endswith(suffix)


# --- conformance with the SDK: channel authorisation and sign-in -------------------------


def sdk_authorize(channel: str, socket_id: str, user: Member | None = None) -> dict[str, Any]:
    custom: dict[str, Any] | None = None
    if user is not None:
        custom = {"user_id": user.id, **({"user_info": user.info} if user.info else {})}
    body: dict[str, Any] = SDK.authenticate(channel, socket_id, custom)
    if "shared_secret" in body:  # the SDK returns bytes here, not JSON-ready text
        body["shared_secret"] = body["shared_secret"].decode()
    return body


INFOS = [
    {},
    {"name": "Mr. Pusher"},
    {"name": "Zoë Ångström", "city": "東京", "mood": "🚀"},
    {"roles": ["admin", "editor"], "age": 42, "score": 1.5, "away": None, "ok": True},
    {"nested": {"deep": {"list": [1, "two", {"three": 3}]}}},
]


def test_private_matches_sdk() -> None:
    assert authorize_channel("private-orders", "123.456", **CREDENTIALS) == sdk_authorize(
        "private-orders", "123.456"
    )


@pytest.mark.parametrize("info", INFOS, ids=range(len(INFOS)))
def test_presence_matches_sdk(info: dict[str, Any]) -> None:
    user = Member("user-1", info)
    ours = authorize_channel("presence-room", "1.2", user=user, **CREDENTIALS)
    assert ours == sdk_authorize("presence-room", "1.2", user)
    assert json.loads(ours["channel_data"]) == {
        "user_id": "user-1",
        **({"user_info": info} if info else {}),
    }


def test_presence_omits_empty_user_info() -> None:
    ours = authorize_channel("presence-room", "1.2", user=Member("7"), **CREDENTIALS)
    assert ours["channel_data"] == '{"user_id": "7"}'


def test_encrypted_matches_sdk() -> None:
    ours = authorize_channel(
        "private-encrypted-vault", "9.9", encryption_master_key=MASTER_KEY, **CREDENTIALS
    )
    assert ours == sdk_authorize("private-encrypted-vault", "9.9")
    assert (
        base64.b64decode(ours["shared_secret"])
        == hashlib.sha256(b"private-encrypted-vault" + MASTER_KEY).digest()
    )


def test_user_passed_to_a_private_channel_is_ignored() -> None:
    ours = authorize_channel("private-x", "1.2", user=Member("u", {"a": 1}), **CREDENTIALS)
    assert ours == sdk_authorize("private-x", "1.2")


@pytest.mark.parametrize(
    ("info", "watchlist"),
    [({}, ()), ({"name": "Zoë 東京"}, ()), ({"name": "Ann"}, ("u-2", "u-3")), ({}, ("u-9",))],
)
def test_user_sign_in_matches_sdk(info: dict[str, Any], watchlist: tuple[str, ...]) -> None:
    user_data: dict[str, Any] = {"id": "u-1"}
    if info:
        user_data["user_info"] = info
    if watchlist:
        user_data["watchlist"] = list(watchlist)
    ours = authenticate_user("55.66", Member("u-1", info), watchlist=watchlist, **CREDENTIALS)
    assert ours == SDK.authenticate_user("55.66", user_data)


PORTABLE = string.ascii_letters + string.digits + "_-=@,.;"
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
channels = st.builds(
    "".join,
    st.tuples(
        st.sampled_from(["private-", "presence-", "private-encrypted-"]),
        st.text(PORTABLE, min_size=1, max_size=140),
    ),
)
socket_ids = st.builds("{}.{}".format, st.integers(0, 10**15), st.integers(0, 10**15))
members = st.builds(
    Member,
    st.text(PORTABLE, min_size=1, max_size=128),
    st.dictionaries(st.text(max_size=10), json_values, max_size=4),
)


@given(channel=channels, socket_id=socket_ids, user=members)
def test_authorize_matches_sdk_everywhere(channel: str, socket_id: str, user: Member) -> None:
    assume(len(json.dumps(user.info)) <= pusher_auth.MAX_USER_INFO_BYTES)
    ours = authorize_channel(
        channel, socket_id, user=user, encryption_master_key=MASTER_KEY, **CREDENTIALS
    )
    presence = channel.startswith("presence-")
    assert ours == sdk_authorize(channel, socket_id, user if presence else None)


@given(socket_id=socket_ids, user=members)
def test_sign_in_matches_sdk_everywhere(socket_id: str, user: Member) -> None:
    user_data: dict[str, Any] = {"id": user.id, **({"user_info": user.info} if user.info else {})}
    ours = authenticate_user(socket_id, user, **CREDENTIALS)
    assert ours == SDK.authenticate_user(socket_id, user_data)


# --- clear errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "socket_id", ["1234", "1234.", ".1234", "12a.34", "1.2:3", "1.2\n", " 1.2", "١٢.٣٤", ""]
)
def test_bad_socket_id(socket_id: str) -> None:
    with pytest.raises(ValueError, match="socket_id") as caught:
        authorize_channel("private-x", socket_id, **CREDENTIALS)
    assert repr(socket_id) in str(caught.value)
    with pytest.raises(ValueError, match="socket_id"):
        authenticate_user(socket_id, Member("u"), **CREDENTIALS)


def test_public_channel_needs_no_authorisation() -> None:
    with pytest.raises(ValueError, match="public channels need no authorisation"):
        authorize_channel("orders", "1.2", **CREDENTIALS)


def test_invalid_channel_name() -> None:
    with pytest.raises(InvalidChannel):
        authorize_channel("private-a:b", "1.2", **CREDENTIALS)


def test_presence_needs_a_user() -> None:
    with pytest.raises(ValueError, match="presence channel 'presence-room' needs a user"):
        authorize_channel("presence-room", "1.2", **CREDENTIALS)


def test_presence_user_id_limit() -> None:
    authorize_channel("presence-r", "1.2", user=Member("u" * 128), **CREDENTIALS)
    with pytest.raises(ValueError, match="129 characters, over Pusher's limit of 128"):
        authorize_channel("presence-r", "1.2", user=Member("u" * 129), **CREDENTIALS)
    with pytest.raises(ValueError, match="non-empty"):
        authorize_channel("presence-r", "1.2", user=Member(""), **CREDENTIALS)


def test_presence_user_info_limit() -> None:
    padding = 1024 - len(json.dumps({"n": ""}))
    authorize_channel("presence-r", "1.2", user=Member("u", {"n": "x" * padding}), **CREDENTIALS)
    with pytest.raises(ValueError, match=r"1025 bytes of JSON, over .* limit of 1024 bytes"):
        authorize_channel(
            "presence-r", "1.2", user=Member("u", {"n": "x" * (padding + 1)}), **CREDENTIALS
        )


def test_user_info_is_measured_as_sent() -> None:
    """Non-ASCII is sent escaped (as the SDK does), so "é" counts 6 bytes, not 2."""
    with pytest.raises(ValueError, match="1029 bytes"):
        authorize_channel("presence-r", "1.2", user=Member("u", {"n": "é" * 170}), **CREDENTIALS)


def test_user_info_must_be_json() -> None:
    with pytest.raises(ValueError, match="user info is not JSON-serialisable"):
        authorize_channel("presence-r", "1.2", user=Member("u", {"n": {1, 2}}), **CREDENTIALS)
    with pytest.raises(ValueError, match="user info is not JSON-serialisable"):
        authorize_channel("presence-r", "1.2", user=Member("u", {"n": float("nan")}), **CREDENTIALS)


def test_sign_in_user_id_rules() -> None:
    with pytest.raises(ValueError, match="characters Pusher does not accept"):
        authenticate_user("1.2", Member("a b"), **CREDENTIALS)
    with pytest.raises(ValueError, match="over Pusher's limit of 200"):
        authenticate_user("1.2", Member("u" * 201), **CREDENTIALS)
    with pytest.raises(ValueError, match="watchlist"):
        authenticate_user("1.2", Member("u"), watchlist="u-2", **CREDENTIALS)


# --- encrypted channels ------------------------------------------------------------------


def open_box(channel: str, sealed: str) -> bytes:
    message = json.loads(sealed)
    key = hashlib.sha256(channel.encode() + MASTER_KEY).digest()
    return nacl.secret.SecretBox(key).decrypt(
        base64.b64decode(message["ciphertext"]), base64.b64decode(message["nonce"])
    )


@pytest.mark.parametrize("data", [b"", b'{"total": 3}', "héllo 東京 🚀".encode(), bytes(300)])
def test_encrypt_payload_decrypts(data: bytes) -> None:
    sealed = encrypt_payload("private-encrypted-vault", data, MASTER_KEY)
    assert set(json.loads(sealed)) == {"nonce", "ciphertext"}
    assert open_box("private-encrypted-vault", sealed) == data


def test_encrypt_payload_uses_a_fresh_nonce() -> None:
    first = encrypt_payload("private-encrypted-v", b"same", MASTER_KEY)
    assert first != encrypt_payload("private-encrypted-v", b"same", MASTER_KEY)


def test_encrypt_payload_matches_sdk_with_the_same_nonce(monkeypatch: pytest.MonkeyPatch) -> None:
    nonce = bytes(range(24))
    monkeypatch.setattr(nacl.utils, "random", lambda size: nonce[:size])
    ours = encrypt_payload("private-encrypted-v", "héllo".encode(), MASTER_KEY)
    theirs = json.dumps(sdk_encrypt("private-encrypted-v", "héllo", MASTER_KEY), ensure_ascii=False)
    assert ours == theirs


def test_sdk_trigger_payload_decrypts_with_the_shared_secret() -> None:
    """The SDK's published payload opens with the key our authorisation hands browsers."""
    batch = [{"channel": "private-encrypted-v", "name": "e", "data": "secret plans"}]
    request = SDK._pusher_client.trigger_batch.make_request(batch)
    sealed = json.loads(request.params["batch"][0]["data"])
    auth = authorize_channel(
        "private-encrypted-v", "1.2", encryption_master_key=MASTER_KEY, **CREDENTIALS
    )
    box = nacl.secret.SecretBox(base64.b64decode(auth["shared_secret"]))
    opened = box.decrypt(base64.b64decode(sealed["ciphertext"]), base64.b64decode(sealed["nonce"]))
    assert opened == b"secret plans"


def test_encrypt_payload_refuses_other_channels() -> None:
    with pytest.raises(ValueError, match="not encrypted"):
        encrypt_payload("private-v", b"x", MASTER_KEY)


def test_encrypt_without_pynacl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nacl.secret", None)
    with pytest.raises(ConfigurationError, match=r"install realtime-bridge\[pusher\]"):
        encrypt_payload("private-encrypted-v", b"x", MASTER_KEY)


def test_encrypted_channel_needs_the_master_key() -> None:
    with pytest.raises(ConfigurationError, match="encryption_master_key"):
        authorize_channel("private-encrypted-v", "1.2", **CREDENTIALS)
    with pytest.raises(ConfigurationError, match="must be 32 bytes, got 31"):
        authorize_channel(
            "private-encrypted-v", "1.2", encryption_master_key=bytes(31), **CREDENTIALS
        )


def test_parse_master_key_matches_sdk() -> None:
    assert parse_master_key(MASTER_KEY_B64) == MASTER_KEY
    assert parse_master_key(MASTER_KEY_B64 + "\n") == MASTER_KEY
    assert parse_master_key(MASTER_KEY_B64) == SDK._authentication_client._encryption_master_key


@pytest.mark.parametrize(
    ("encoded", "reason"),
    [
        ("not base64 at all!!", "not valid base64"),
        (MASTER_KEY_B64[:-2], "not valid base64"),
        (base64.b64encode(b"k" * 31).decode(), "32 bytes, got 31"),
        (base64.b64encode(b"k" * 33).decode(), "32 bytes, got 33"),
    ],
)
def test_parse_master_key_rejects(encoded: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason) as caught:
        parse_master_key(encoded)
    assert encoded not in str(caught.value)


# --- webhooks ----------------------------------------------------------------------------

NOW = 1_700_000_000.0


def webhook_body(*events: dict[str, Any], time_ms: Any = None) -> bytes:
    stamp = int(NOW * 1000) if time_ms is None else time_ms
    return json.dumps({"time_ms": stamp, "events": list(events)}).encode()


def signed(body: bytes, key: str = KEY) -> dict[str, str]:
    return {"X-Pusher-Key": key, "X-Pusher-Signature": hmac_hex_bytes(body)}


def hmac_hex_bytes(body: bytes) -> str:
    return hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def test_webhook_normalises_every_kind() -> None:
    body = webhook_body(
        {"name": "channel_occupied", "channel": "orders"},
        {"name": "channel_vacated", "channel": "orders"},
        {"name": "member_added", "channel": "presence-r", "user_id": "u-1"},
        {"name": "member_removed", "channel": "presence-r", "user_id": "u-1"},
        {
            "name": "client_event",
            "channel": "presence-r",
            "event": "client-typing",
            "data": '{"typing": true}',
            "socket_id": "1.2",
            "user_id": "u-1",
        },
        {"name": "client_event", "channel": "private-r", "event": "client-x", "data": "hi"},
        {"name": "cache_miss", "channel": "cache-prices"},
        {"name": "subscription_count", "channel": "orders", "subscription_count": 3},
    )
    events = verify_webhook(signed(body), body, now=NOW, **CREDENTIALS)
    at = datetime.fromtimestamp(NOW, tz=UTC)
    assert all(e.vendor == "pusher" and e.at == at for e in events)
    assert [(e.kind, e.name, e.channel, e.user_id) for e in events] == [
        (WebhookKind.CHANNEL_OCCUPIED, "channel_occupied", "orders", None),
        (WebhookKind.CHANNEL_VACATED, "channel_vacated", "orders", None),
        (WebhookKind.MEMBER_ADDED, "member_added", "presence-r", "u-1"),
        (WebhookKind.MEMBER_REMOVED, "member_removed", "presence-r", "u-1"),
        (WebhookKind.CLIENT_EVENT, "client_event", "presence-r", "u-1"),
        (WebhookKind.CLIENT_EVENT, "client_event", "private-r", None),
        (WebhookKind.OTHER, "cache_miss", "cache-prices", None),
        (WebhookKind.OTHER, "subscription_count", "orders", None),
    ]
    typing, plain = events[4], events[5]
    assert (typing.event, typing.data, typing.socket_id) == (
        "client-typing",
        {"typing": True},
        "1.2",
    )
    assert (plain.event, plain.data, plain.socket_id) == ("client-x", "hi", None)
    assert events[7].raw["subscription_count"] == 3


def test_webhook_headers_are_case_insensitive() -> None:
    body = webhook_body({"name": "channel_occupied", "channel": "c"})
    headers = {k.lower(): v for k, v in signed(body).items()}
    assert len(verify_webhook(headers, body, now=NOW, **CREDENTIALS)) == 1


def test_webhook_numeric_user_id_becomes_text() -> None:
    body = webhook_body({"name": "member_added", "channel": "presence-r", "user_id": 10})
    assert verify_webhook(signed(body), body, now=NOW, **CREDENTIALS)[0].user_id == "10"


def test_webhook_age_limits() -> None:
    body = webhook_body({"name": "channel_occupied", "channel": "c"})
    assert verify_webhook(signed(body), body, now=NOW + 300, **CREDENTIALS)
    assert verify_webhook(signed(body), body, now=NOW - 300, **CREDENTIALS)
    assert verify_webhook(signed(body), body, now=NOW + 3000, max_age=3600, **CREDENTIALS)


GOOD = webhook_body({"name": "channel_occupied", "channel": "c"})


def forged(body: bytes) -> dict[str, str]:
    return {"X-Pusher-Key": KEY, "X-Pusher-Signature": hmac_hex_bytes(body + b" ")}


def resigned(body: bytes) -> tuple[dict[str, str], bytes]:
    return signed(body), body


REJECTED: dict[str, tuple[Callable[[], tuple[dict[str, str], bytes]], float, str]] = {
    "forged signature": (lambda: (forged(GOOD), GOOD), NOW, "X-Pusher-Signature does not match"),
    "tampered body": (lambda: (signed(GOOD), GOOD + b" "), NOW, "does not match the body"),
    "wrong key": (lambda: (signed(GOOD, key="other"), GOOD), NOW, "X-Pusher-Key is not"),
    "no key header": (lambda: ({"X-Pusher-Signature": "ab"}, GOOD), NOW, "missing X-Pusher-Key"),
    "no signature header": (lambda: ({"X-Pusher-Key": KEY}, GOOD), NOW, "missing X-Pusher-Sig"),
    "non-ASCII signature": (
        lambda: ({"X-Pusher-Key": KEY, "X-Pusher-Signature": "é"}, GOOD),
        NOW,
        "does not match",
    ),
    "stale": (lambda: resigned(GOOD), NOW + 301, "time_ms is 301s old"),
    "from the future": (lambda: resigned(GOOD), NOW - 400, "400s in the future"),
    "malformed JSON": (lambda: resigned(b'{"time_ms": 1, "events": ['), NOW, "not valid JSON"),
    "not UTF-8": (lambda: resigned(b"\xff\xfe"), NOW, "not valid JSON"),
    "NaN time_ms": (lambda: resigned(b'{"time_ms": NaN, "events": []}'), NOW, "not valid JSON"),
    "huge time_ms": (lambda: resigned(b'{"time_ms": 1e999, "events": []}'), NOW, "numeric time_ms"),
    "no time_ms": (lambda: resigned(b'{"events": []}'), NOW, "no numeric time_ms"),
    "not an object": (lambda: resigned(b"[]"), NOW, "not a JSON object"),
    "no events": (lambda: resigned(b'{"time_ms": %d}' % (NOW * 1000)), NOW, "no events list"),
    "bad entry": (lambda: resigned(webhook_body({"channel": "c"})), NOW, "entry is not an object"),
    "entry without channel": (
        lambda: resigned(webhook_body({"name": "member_added"})),
        NOW,
        "member_added entry has no",
    ),
}


@pytest.mark.parametrize("case", REJECTED)
def test_webhook_rejected(case: str) -> None:
    make, now, reason = REJECTED[case]
    headers, body = make()
    with pytest.raises(InvalidWebhook, match=reason) as caught:
        verify_webhook(headers, body, now=now, **CREDENTIALS)
    message = str(caught.value)
    assert message.startswith("pusher: ")
    assert SECRET not in message
    assert hmac_hex_bytes(body) not in message


def test_unknown_entries_without_channel_are_kept() -> None:
    body = webhook_body({"name": "something_new"})
    (event,) = verify_webhook(signed(body), body, now=NOW, **CREDENTIALS)
    assert (event.kind, event.name, event.channel) == (WebhookKind.OTHER, "something_new", "")


# The SDK reads the clock itself, so these bodies are stamped relative to now.
def live_body(
    age_s: float, events: str = '[{"name": "channel_occupied", "channel": "c"}]'
) -> bytes:
    return f'{{"time_ms": {int((time.time() - age_s) * 1000)}, "events": {events}}}'.encode()


def uppercase_signature(body: bytes) -> tuple[dict[str, str], bytes]:
    return {"X-Pusher-Key": KEY, "X-Pusher-Signature": hmac_hex_bytes(body).upper()}, body


SDK_CASES: dict[str, Callable[[], tuple[dict[str, str], bytes]]] = {
    "valid": lambda: resigned(live_body(5)),
    "valid, batch of two": lambda: resigned(
        live_body(
            5,
            '[{"name": "member_added", "channel": "presence-a", "user_id": "1"},'
            ' {"name": "cache_miss", "channel": "cache-a"}]',
        )
    ),
    "forged": lambda: (forged(live_body(5)), live_body(5)),
    "wrong key": lambda: (signed(live_body(5), key="other"), live_body(5)),
    "stale": lambda: resigned(live_body(1000)),
    "from the future": lambda: resigned(live_body(-1000)),
    "malformed JSON": lambda: resigned(b'{"time_ms": '),
    "no time_ms": lambda: resigned(b'{"events": []}'),
    "uppercase signature": lambda: uppercase_signature(live_body(5)),
}


def sdk_accepts(headers: dict[str, str], body: bytes) -> bool:
    return (
        SDK.validate_webhook(
            key=headers["X-Pusher-Key"], signature=headers["X-Pusher-Signature"], body=body
        )
        is not None
    )


def we_accept(headers: dict[str, str], body: bytes) -> bool:
    try:
        verify_webhook(headers, body, **CREDENTIALS)
    except InvalidWebhook:
        return False
    return True


@pytest.mark.parametrize("case", SDK_CASES)
def test_webhook_decision_matches_sdk(case: str) -> None:
    headers, body = SDK_CASES[case]()
    assert we_accept(headers, body) == sdk_accepts(headers, body)


def test_webhook_without_events_is_where_we_differ_from_sdk() -> None:
    """The SDK returns any signed, fresh body; we need ``events`` to normalise anything."""
    headers, body = resigned(f'{{"time_ms": {int(time.time() * 1000)}}}'.encode())
    assert sdk_accepts(headers, body)
    assert not we_accept(headers, body)


@given(body=st.binary(max_size=64), flip=st.integers(0, 63))
def test_any_changed_signature_is_rejected(body: bytes, flip: int) -> None:
    signature = hmac_hex_bytes(body)
    changed = signature[:flip] + ("0" if signature[flip] != "0" else "1") + signature[flip + 1 :]
    headers = {"X-Pusher-Key": KEY, "X-Pusher-Signature": changed}
    with pytest.raises(InvalidWebhook, match="does not match"):
        verify_webhook(headers, body, now=NOW, **CREDENTIALS)
    if body.isascii():  # the SDK cannot even decode other bodies
        assert not sdk_accepts(headers, body)
