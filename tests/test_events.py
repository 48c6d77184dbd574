"""The event envelope: validation rules, errors, encoding, typed events, ids."""

from __future__ import annotations

import itertools
import json
import re
import sys
import textwrap
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

import realtime_bridge.ids as ids_module
from realtime_bridge import (
    ENVELOPE_VERSION,
    ConfigurationError,
    Event,
    EventCatalog,
    InvalidChannel,
    InvalidEvent,
    RealtimeBridgeError,
    channel_kind,
    new_event_id,
    validate_channel,
)
from realtime_bridge.events import MAX_CHANNEL_LENGTH

# The documented portable rule, written out independently of the implementation.
PORTABLE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789" + "_-=@,.;"
PORTABLE_RE = re.compile(r"[A-Za-z0-9_\-=@,.;]{1,164}")


def make(**fields: Any) -> Event:
    fields.setdefault("channel", "orders.42")
    fields.setdefault("type", "order.updated")
    return Event(**fields)


# -- typed events used below ----------------------------------------------------


class OrderData(BaseModel):
    order_id: int
    status: Literal["new", "paid", "shipped"]
    total_cents: int
    note: str | None = None


class OrderUpdated(Event):
    type: Literal["order.updated"] = "order.updated"
    data: OrderData


class OrderDeleted(Event):
    type: Literal["order.deleted"] = "order.deleted"
    data: dict[str, int]


# -- defaults ---------------------------------------------------------------------


def test_defaults_fill_the_envelope() -> None:
    event = Event(channel="orders.42", type="order.updated")
    assert event.v == ENVELOPE_VERSION == 1
    assert event.data == {}
    assert event.seq is None
    assert event.ts is None
    assert uuid.UUID(event.id).version == 7
    assert event.data_json == b"{}"


def test_each_event_gets_its_own_id() -> None:
    assert make().id != make().id


def test_an_explicit_id_is_kept() -> None:
    assert make(id="order-42:v3").id == "order-42:v3"


def test_events_are_immutable() -> None:
    event = make()
    with pytest.raises(pydantic.ValidationError):
        event.type = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("channel", "kind"),
    [
        ("presence-room.7", "presence"),
        ("private-user.1", "private"),
        ("orders.42", "public"),
        ("presence", "public"),
    ],
)
def test_channel_kind(channel: str, kind: str) -> None:
    assert channel_kind(channel) == kind
    assert make(channel=channel).kind == kind


# -- channel rule ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["a", "orders.42", "presence-room.7", "private-user_1", "x=y@z,w;v", "A" * MAX_CHANNEL_LENGTH],
)
def test_portable_channels_are_accepted(name: str) -> None:
    assert validate_channel(name) == name
    assert make(channel=name).channel == name


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "is empty"),
        ("a" * (MAX_CHANNEL_LENGTH + 1), "over the limit of 164"),
        ("orders 42", "' ' at position 6"),
        ("orders/42", "'/' at position 6"),
        ("[meta]x", "'[' at position 0"),
        (":x", "':' at position 0"),
        ("line\nbreak", "'\\n' at position 4"),
        ("caf\u00e9", "'\u00e9' at position 3"),
        ("realtime", "reserved"),
        ("a#b", "'#' at position 1"),
    ],
)
def test_non_portable_channels_are_refused_naming_rule_and_value(name: str, problem: str) -> None:
    with pytest.raises(InvalidChannel) as direct:
        validate_channel(name)
    message = str(direct.value)
    assert "channel" in message
    assert problem in message
    assert repr(name[:80]) in message or repr(name[:80] + "...") in message
    # Through the envelope: the same error class, naming the field.
    with pytest.raises(InvalidChannel) as through_event:
        make(channel=name)
    assert "channel" in str(through_event.value)
    assert problem in str(through_event.value)


def test_channel_rule_is_spelled_out_in_the_message() -> None:
    with pytest.raises(InvalidChannel, match=r"A-Z a-z 0-9 _ - = @ , \. ;"):
        validate_channel("no spaces")


@pytest.mark.parametrize("value", [None, 42, b"orders", ["orders"]])
def test_a_non_string_channel_is_invalid_channel(value: object) -> None:
    with pytest.raises(InvalidChannel, match="must be a string"):
        validate_channel(value)
    with pytest.raises(InvalidChannel):
        make(channel=value)


def test_invalid_channel_is_an_invalid_event_and_a_value_error() -> None:
    with pytest.raises(InvalidChannel) as caught:
        make(channel="bad name")
    assert isinstance(caught.value, InvalidEvent)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, RealtimeBridgeError)


def test_errors_do_not_chain_pydantics_traceback() -> None:
    with pytest.raises(InvalidEvent) as caught:
        make(type="")
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


@given(st.text(max_size=200))
def test_any_text_is_either_a_portable_channel_or_invalid_channel(name: str) -> None:
    try:
        accepted = validate_channel(name)
    except InvalidChannel as exc:
        assert "channel" in str(exc)
        assert not PORTABLE_RE.fullmatch(name) or name == "realtime"
    else:
        assert accepted == name
        assert PORTABLE_RE.fullmatch(name)
        assert name != "realtime"


@given(st.text(alphabet=PORTABLE_ALPHABET, min_size=1, max_size=MAX_CHANNEL_LENGTH))
def test_names_from_the_portable_alphabet_are_accepted(name: str) -> None:
    if name == "realtime":
        with pytest.raises(InvalidChannel):
            validate_channel(name)
        return
    assert validate_channel(name) == name
    assert make(channel=name).channel == name


# -- type, id and other field rules --------------------------------------------------


@pytest.mark.parametrize("value", ["order.updated", "a", "9lives", "x_y-z.w", "T" * 200])
def test_valid_types_are_accepted(value: str) -> None:
    assert make(type=value).type == value


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("", "1 to 200 characters"),
        ("T" * 201, "1 to 200 characters"),
        ("-leading", "starting with a letter"),
        (".leading", "starting with a letter"),
        ("has space", "1 to 200 characters"),
        ("slash/type", "1 to 200 characters"),
        ("client-typing", "reserved prefix"),
        ("phx_join", "reserved prefix"),
        ("pusher:subscribe", "type"),
        ("pusher_internal:member_added", "type"),
    ],
)
def test_invalid_types_name_field_rule_and_value(value: str, rule: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        make(type=value)
    assert not isinstance(caught.value, InvalidChannel)
    message = str(caught.value)
    assert "type:" in message
    assert rule in message
    assert repr(value)[:60] in message


@pytest.mark.parametrize("value", ["", "has space", "x" * 129, "slash/id", "caf\u00e9"])
def test_invalid_ids_name_field_rule_and_value(value: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        make(id=value)
    message = str(caught.value)
    assert "id:" in message
    assert "1 to 128 characters" in message
    assert repr(value)[:60] in message


@pytest.mark.parametrize("value", ["a", "x" * 128, "order-42:v3.1_b"])
def test_valid_ids_are_accepted(value: str) -> None:
    assert make(id=value).id == value


@pytest.mark.parametrize(
    ("data", "got"),
    [([1, 2], "list"), ("text", "str"), (42, "int"), (None, "NoneType"), ((1,), "tuple")],
)
def test_data_must_be_a_json_object(data: object, got: str) -> None:
    with pytest.raises(InvalidEvent, match=rf"data must be a JSON object \(a dict\), got {got}"):
        make(data=data)


@pytest.mark.parametrize(
    "data",
    [{"when": object()}, {"nested": {"deep": [1, {1, 2}, object()]}}, {"f": lambda: None}],
)
def test_non_serialisable_data_is_invalid_event(data: dict[str, Any]) -> None:
    with pytest.raises(InvalidEvent, match="data is not JSON-serialisable"):
        make(data=data)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_refused_because_json_cannot_carry_them(value: float) -> None:
    with pytest.raises(InvalidEvent, match="data"):
        make(data={"x": [1, {"y": value}]})


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"v": 0}, "v"),
        ({"seq": -1}, "seq"),
        ({"ts": "not a time"}, "ts"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_other_field_errors_name_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidEvent, match=rf"\b{field}: "):
        make(**fields)


def test_several_problems_are_all_reported() -> None:
    with pytest.raises(InvalidEvent) as caught:
        Event(channel="bad channel", type="", id="")
    message = str(caught.value)
    # Not only the channel is wrong, so the error is the broader InvalidEvent.
    assert not isinstance(caught.value, InvalidChannel)
    for field in ("channel 'bad channel'", "type:", "id:"):
        assert field in message


def test_missing_required_fields_are_named() -> None:
    with pytest.raises(InvalidEvent, match="type: Field required"):
        Event(channel="orders.1")  # type: ignore[call-arg]


# -- encoding ---------------------------------------------------------------------

TIMES = [
    None,
    datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
    datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
    datetime(2024, 5, 6, 7, 8, 9),
]


@pytest.mark.parametrize("ts", TIMES)
def test_encode_equals_model_dump_in_json_mode(ts: datetime | None) -> None:
    event = make(
        data={"status": "paid", "items": [1, 2.5, None, True], "nested": {"\u00e9": "\u2603"}},
        seq=7,
        ts=ts,
    )
    raw = event.encode()
    assert isinstance(raw, bytes)
    assert json.loads(raw) == event.model_dump(mode="json")
    assert list(json.loads(raw)) == list(Event.ENVELOPE_FIELDS)


@pytest.mark.parametrize("ts", TIMES)
def test_decode_of_encode_is_the_same_event(ts: datetime | None) -> None:
    event = make(data={"a": [1, {"b": None}], "c": '\u2603 "quoted" \\ \n'}, seq=3, ts=ts)
    decoded = Event.decode(event.encode())
    assert decoded == event
    assert decoded.data_json == event.data_json
    assert Event.decode(event.encode().decode()) == event


def test_encode_is_compact_and_utf8() -> None:
    event = make(data={"name": "caf\u00e9"})
    raw = event.encode()
    assert b" " not in raw
    assert "caf\u00e9".encode() in raw
    assert event.data_json == '{"name":"caf\u00e9"}'.encode()


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[]", b'{"type":"x"}', b'{"channel":"bad name","type":"x"}', b""],
)
def test_decode_refuses_malformed_input(raw: bytes) -> None:
    with pytest.raises(InvalidEvent):
        Event.decode(raw)


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=20,
)
PORTABLE_CHANNELS = st.text(alphabet=PORTABLE_ALPHABET, min_size=1, max_size=164).filter(
    lambda name: name != "realtime"
)


@given(
    channel=PORTABLE_CHANNELS,
    data=st.dictionaries(st.text(), JSON_VALUES, max_size=6),
    seq=st.none() | st.integers(min_value=0, max_value=2**63 - 1),
    ts=st.none() | st.datetimes(timezones=st.none() | st.just(UTC)),
)
def test_envelope_round_trip(
    channel: str, data: dict[str, Any], seq: int | None, ts: datetime | None
) -> None:
    event = Event(channel=channel, type="thing.changed", data=data, seq=seq, ts=ts)
    raw = event.encode()
    assert json.loads(raw) == event.model_dump(mode="json")
    assert json.loads(raw)["data"] == data
    decoded = Event.decode(raw)
    assert decoded == event
    assert decoded.encode() == raw


# -- typed events and the catalog ---------------------------------------------------


def test_typed_event_validates_its_data() -> None:
    event = OrderUpdated(
        channel="orders.42", data={"order_id": 42, "status": "paid", "total_cents": 100}
    )
    assert isinstance(event.data, OrderData)
    assert event.type == "order.updated"
    assert json.loads(event.encode())["data"] == {
        "order_id": 42,
        "status": "paid",
        "total_cents": 100,
        "note": None,
    }
    assert json.loads(event.encode()) == event.model_dump(mode="json")


def test_typed_event_errors_name_the_nested_field_and_value() -> None:
    with pytest.raises(InvalidEvent) as caught:
        OrderUpdated(channel="orders.42", data={"order_id": 42, "status": "lost", "total_cents": 1})
    message = str(caught.value)
    assert "OrderUpdated" in message
    assert "data.status" in message
    assert "'lost'" in message


def test_typed_event_refuses_another_type() -> None:
    with pytest.raises(InvalidEvent, match="type"):
        OrderUpdated(
            channel="orders.42",
            type="order.deleted",  # type: ignore[arg-type]
            data={"order_id": 1, "status": "new", "total_cents": 0},
        )


def test_typed_event_round_trips_through_its_class() -> None:
    event = OrderUpdated(
        channel="orders.42",
        data=OrderData(order_id=42, status="shipped", total_cents=999, note="\u2603"),
        seq=5,
        ts=datetime(2024, 1, 2, tzinfo=UTC),
    )
    assert OrderUpdated.decode(event.encode()) == event


def test_catalog_decodes_each_type_to_its_class() -> None:
    catalog = EventCatalog([OrderUpdated, OrderDeleted])
    assert len(catalog) == 2
    assert catalog.types == {"order.updated": OrderUpdated, "order.deleted": OrderDeleted}
    updated = OrderUpdated(channel="o.1", data={"order_id": 1, "status": "new", "total_cents": 5})
    deleted = OrderDeleted(channel="o.1", data={"order_id": 1})
    assert type(catalog.decode(updated.encode())) is OrderUpdated
    assert catalog.decode(updated.encode()) == updated
    assert type(catalog.decode(deleted.encode())) is OrderDeleted
    assert catalog.decode(deleted.encode()) == deleted


def test_catalog_decodes_unknown_types_as_plain_events() -> None:
    catalog = EventCatalog([OrderUpdated])
    other = make(type="something.else", data={"k": 1})
    decoded = catalog.decode(other.encode())
    assert type(decoded) is Event
    assert decoded == other


def test_catalog_refuses_an_event_that_does_not_match_its_class() -> None:
    catalog = EventCatalog([OrderUpdated])
    raw = make(type="order.updated", data={"order_id": "x"}).encode()
    with pytest.raises(InvalidEvent, match="OrderUpdated"):
        catalog.decode(raw)


def test_catalog_refuses_duplicate_types() -> None:
    class AlsoOrderUpdated(Event):
        type: Literal["order.updated"] = "order.updated"

    with pytest.raises(ConfigurationError, match=r"'order\.updated' is declared twice") as caught:
        EventCatalog([OrderUpdated, AlsoOrderUpdated])
    assert "OrderUpdated" in str(caught.value)
    assert "AlsoOrderUpdated" in str(caught.value)


def test_catalog_refuses_events_without_a_literal_type() -> None:
    class Untyped(Event):
        pass

    class TwoTypes(Event):
        type: Literal["a.b", "c.d"] = "a.b"

    for model in (Untyped, TwoTypes):
        with pytest.raises(ConfigurationError, match="single Literal"):
            EventCatalog([model])


def _resolve(schema: dict[str, Any], ref: str) -> dict[str, Any]:
    assert ref.startswith("#/$defs/")
    return schema["$defs"][ref.removeprefix("#/$defs/")]  # type: ignore[no-any-return]


def test_catalog_json_schema_has_one_of_a_discriminator_and_defs() -> None:
    schema = EventCatalog([OrderUpdated, OrderDeleted]).json_schema()
    json.dumps(schema)  # plain JSON data
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert len(schema["oneOf"]) == 2
    assert schema["discriminator"]["propertyName"] == "type"
    mapping = schema["discriminator"]["mapping"]
    assert set(mapping) == {"order.updated", "order.deleted"}
    assert {entry["$ref"] for entry in schema["oneOf"]} == set(mapping.values())
    for event_type, ref in mapping.items():
        definition = _resolve(schema, ref)
        assert definition["properties"]["type"]["const"] == event_type
        assert "channel" in definition["required"]
    updated = _resolve(schema, mapping["order.updated"])
    data = _resolve(schema, updated["properties"]["data"]["$ref"])
    assert set(data["required"]) == {"order_id", "status", "total_cents"}
    assert data["properties"]["status"]["enum"] == ["new", "paid", "shipped"]


def test_catalog_json_schema_refs_resolve_when_class_names_collide() -> None:
    def declare(event_type: str) -> type[Event]:
        class Changed(Event):
            type: Literal[event_type] = event_type  # type: ignore[valid-type]

        return Changed

    first, second = declare("a.changed"), declare("b.changed")
    schema = EventCatalog([first, second]).json_schema()
    targets = [_resolve(schema, entry["$ref"]) for entry in schema["oneOf"]]
    assert sorted(t["properties"]["type"]["const"] for t in targets) == ["a.changed", "b.changed"]
    for event_type, ref in schema["discriminator"]["mapping"].items():
        assert _resolve(schema, ref)["properties"]["type"]["const"] == event_type


def test_catalog_from_module_finds_the_typed_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "rb_test_catalog_events.py"
    module.write_text(
        textwrap.dedent(
            """
            from typing import Literal
            from realtime_bridge import Event

            class RoomJoined(Event):
                type: Literal["room.joined"] = "room.joined"

            class RoomLeft(Event):
                type: Literal["room.left"] = "room.left"

            class NotTyped(Event):
                pass

            Imported = Event
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "rb_test_catalog_events", raising=False)
    catalog = EventCatalog.from_module("rb_test_catalog_events")
    assert sorted(catalog.types) == ["room.joined", "room.left"]
    with pytest.raises(ConfigurationError, match="rb_test_no_such_module"):
        EventCatalog.from_module("rb_test_no_such_module")


# -- event ids ------------------------------------------------------------------------


def _uuid7_millis(value: str) -> int:
    return uuid.UUID(value).int >> 80


def test_new_event_id_is_a_valid_uuid7() -> None:
    before_ms = time.time_ns() // 1_000_000
    value = new_event_id()
    parsed = uuid.UUID(value)
    assert str(parsed) == value  # canonical lower-case form
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert _uuid7_millis(value) >= before_ms


def test_new_event_ids_strictly_increase() -> None:
    values = [new_event_id() for _ in range(20_000)]
    assert len(set(values)) == len(values)
    assert all(a < b for a, b in itertools.pairwise(values))
    assert all(uuid.UUID(v).int < uuid.UUID(w).int for v, w in itertools.pairwise(values))
    assert all(uuid.UUID(v).version == 7 for v in values)


class _FrozenTime:
    def __init__(self, ns: int) -> None:
        self.ns = ns

    def time_ns(self) -> int:
        return self.ns


def test_ids_keep_increasing_within_one_frozen_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    frozen = _FrozenTime(time.time_ns())
    monkeypatch.setattr(ids_module, "time", frozen)
    monkeypatch.setattr(ids_module, "_last_ms", 0)
    monkeypatch.setattr(ids_module, "_counter", 0)
    # More ids than the 12-bit counter holds: the generator must borrow the next millisecond.
    values = [new_event_id() for _ in range(10_000)]
    assert all(a < b for a, b in itertools.pairwise(values))
    assert _uuid7_millis(values[-1]) > _uuid7_millis(values[0])
    assert all(uuid.UUID(v).version == 7 and uuid.UUID(v).variant == uuid.RFC_4122 for v in values)


def test_ids_keep_increasing_when_the_clock_goes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _FrozenTime(time.time_ns())
    monkeypatch.setattr(ids_module, "time", clock)
    monkeypatch.setattr(ids_module, "_last_ms", 0)
    monkeypatch.setattr(ids_module, "_counter", 0)
    first = new_event_id()
    clock.ns -= 5_000_000_000  # five seconds back
    second = new_event_id()
    assert first < second
