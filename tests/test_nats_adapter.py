"""The NATS JetStream adapter, beyond the contract suite (which runs on it too).

How channels become subjects and presence keys, the URL and its options, what the
adapter creates on the server, duplicates dropped by id across connections, presence
expiring by the server's clock, what it does when the server is missing, refuses the
credentials, lacks JetStream or takes smaller messages, and a server restarted under
load with nothing lost. Tests on the machine's NATS use a stream of their own
(``nats_names``); tests that stop, kill or misconfigure a server start their own
(``running_nats``). Waits are bounded polls; nothing here asserts a duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta

import nats
import nats.js.errors
import pytest
from conftest_nats import (
    PATIENCE,
    NatsProcess,
    adapter_url,
    eventually_true,
    running_nats,
)
from hypothesis import given
from hypothesis import strategies as st
from nats.js.api import ConsumerConfig, StreamConfig
from redis_servers import free_port

from realtime_bridge import (
    AuthenticationFailed,
    Bridge,
    ConfigurationError,
    Event,
    Member,
    PayloadTooLarge,
    PublishRejected,
    PublishResult,
    TransientError,
    VendorUnavailable,
)
from realtime_bridge.adapters._nats_errors import mapped_errors
from realtime_bridge.adapters._nats_subjects import (
    decode_token,
    encode_token,
    subject_matches,
)
from realtime_bridge.adapters.nats import HEADER_ROOM, NatsAdapter, NatsNames
from realtime_bridge.events import MAX_CHANNEL_LENGTH
from realtime_bridge.settings import adapter_from_url

PORTABLE = "ABCXYZabcxyz0189_-=@,.;"
#: A subject token, and the characters JetStream allows in a key-value key.
TOKEN = re.compile(r"[A-Za-z0-9_\-=]+")
KV_KEY = re.compile(r"[-/_=\.a-zA-Z0-9]+")


def ev(channel: str = "orders.1", n: int = 0) -> Event:
    return Event(channel=channel, type="order.updated", data={"n": n})


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[nats.js.JetStreamContext]:
    """A plain nats-py JetStream context, to look at the server from outside the adapter."""
    nc = await nats.connect(url, connect_timeout=int(PATIENCE), allow_reconnect=False)
    try:
        yield nc.jetstream(timeout=PATIENCE)
    finally:
        await nc.close()


# -- channels and member ids as subject tokens ---------------------------------------------


def test_every_portable_character_round_trips_through_one_token() -> None:
    channel = PORTABLE * (MAX_CHANNEL_LENGTH // len(PORTABLE))
    token = encode_token(channel)
    assert TOKEN.fullmatch(token)
    assert "." not in token
    assert decode_token(token) == channel
    assert encode_token("orders.42") == "orders=2E42"
    assert encode_token("presence-room_1") == "presence-room_1"  # kept as it is


def test_channels_that_look_alike_get_different_subjects() -> None:
    names = NatsNames(prefix="rb", stream="RB")
    lookalikes = ["a.b", "a=2Eb", "a_b", "a-b", "a,b", "a;b", "a@b", "a=b", "A.b"]
    subjects = [names.subject(channel) for channel in lookalikes]
    assert len(set(subjects)) == len(lookalikes)
    assert all(subject.count(".") == 1 for subject in subjects)  # prefix + one token


@given(st.text(min_size=1, max_size=60))
def test_any_member_id_is_one_valid_token_and_comes_back(member_id: str) -> None:
    token = encode_token(member_id)
    assert TOKEN.fullmatch(token)
    assert KV_KEY.fullmatch(f"{encode_token('presence-room.1')}.{token}")
    assert decode_token(token) == member_id


def test_an_empty_name_or_a_foreign_token_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        encode_token("")
    for foreign in ("a.b", "a=2", "a=zz", "a b", ""):
        with pytest.raises(ValueError):
            decode_token(foreign)


@pytest.mark.parametrize(
    ("pattern", "subject", "matches"),
    [
        ("rb.orders=2E1", "rb.orders=2E1", True),
        ("rb.orders=2E1", "rb.orders=2E2", False),
        ("rb.*", "rb.orders=2E1", True),
        ("rb.>", "rb.orders=2E1", True),
        (">", "rb.orders=2E1", True),
        ("rb.*.x", "rb.orders=2E1", False),
        ("rb", "rb.orders=2E1", False),
        ("rb.orders=2E1.>", "rb.orders=2E1", False),
        ("other.*", "rb.orders=2E1", False),
    ],
)
def test_subject_matching_follows_nats_wildcards(pattern: str, subject: str, matches: bool) -> None:
    assert subject_matches(pattern, subject) is matches


# -- the URL --------------------------------------------------------------------------------


def test_url_options_are_read() -> None:
    adapter = adapter_from_url(
        "nats://127.0.0.1:4222?prefix=app.rt&history=50&dedupe_window=90&presence_ttl=30"
        "&timeout=2.5&max_payload=4096"
    )
    assert isinstance(adapter, NatsAdapter)
    assert adapter.names == NatsNames(prefix="app.rt", stream="APP_RT")
    assert adapter.names.bucket == "APP_RT_presence"
    assert adapter.names.subject("orders.1") == "app.rt.orders=2E1"
    assert adapter.limits.max_payload_bytes == 4096
    assert adapter.name == "nats://127.0.0.1:4222"
    default = NatsAdapter.from_url("nats://localhost")
    assert default.names == NatsNames(prefix="rb", stream="RB")
    assert default.limits.max_payload_bytes == 1024 * 1024 - HEADER_ROOM
    assert NatsAdapter.from_url("nats://h?stream=Mine").names.stream == "Mine"


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("nats://h?history=0", "'history'"),
        ("nats://h?histroy=5", "histroy"),
        ("nats://h?prefix=a.*", "'prefix'"),
        ("nats://h?prefix=a..b", "'prefix'"),
        ("nats://h?stream=a.b", "'stream'"),
        ("nats://h?timeout=soon", "'timeout'"),
        ("nats://h/db", "no path"),
        ("nats://h:port", "port"),
        ("nats://?prefix=x", "HOST"),
    ],
)
def test_a_bad_url_is_a_configuration_error_naming_what(url: str, named: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(named)):
        NatsAdapter.from_url(url)


@pytest.mark.parametrize(
    ("url", "secret"),
    [("nats://ops:s3cret-pw@127.0.0.1:4222", "s3cret-pw"), ("nats://t0ken-s3cret@h", "t0ken")],
)
def test_credentials_are_never_shown(url: str, secret: str) -> None:
    adapter = NatsAdapter.from_url(url)
    assert secret not in adapter.name
    assert secret not in repr(adapter)
    assert "***" in adapter.name


def test_the_payload_limit_counts_the_whole_envelope_in_bytes() -> None:
    adapter = NatsAdapter.from_url("nats://h?max_payload=2000")
    event = Event(channel="big.1", type="t", data={"text": "\u2603" * 100})
    assert adapter.payload_size(event) == len(event.encode())
    assert adapter.limits.payload_measure.startswith("the JSON envelope")
    over = Event(channel="big.1", type="t", data={"text": "x" * 2000})
    with pytest.raises(PayloadTooLarge, match="2000"):
        adapter.check(over)


async def test_a_presence_ttl_over_the_buckets_age_is_refused_before_any_io() -> None:
    adapter = NatsAdapter.from_url(f"nats://127.0.0.1:{free_port()}?presence_ttl=30")
    for ttl in (0, -1, 30.5):
        with pytest.raises(ValueError, match=r"presence_ttl=30 seconds.*got"):
            await adapter.enter_presence("presence-room.1", Member("u1"), ttl=ttl)


# -- what the adapter makes on the server ----------------------------------------------------


async def test_the_stream_and_bucket_are_made_as_the_url_says(
    nats_server: str, nats_names: NatsNames
) -> None:
    url = adapter_url(nats_server, nats_names, history=7, dedupe_window=45, presence_ttl=20)
    async with NatsAdapter.from_url(url) as adapter:
        await adapter.ping()
    async with connected(nats_server) as js:
        stream = (await js.stream_info(nats_names.stream)).config
        bucket = (await js.stream_info(nats_names.presence_stream)).config
    assert stream.subjects == [f"{nats_names.prefix}.*"]
    assert (stream.max_msgs_per_subject, stream.duplicate_window) == (7, 45)
    assert bucket.max_age == 20
    assert bucket.max_msgs_per_subject == 1


async def test_an_existing_stream_is_brought_in_line_with_the_url(
    nats_server: str, nats_names: NatsNames
) -> None:
    other = f"{nats_names.prefix}-other.*"
    async with connected(nats_server) as js:
        await js.add_stream(
            StreamConfig(
                name=nats_names.stream,
                subjects=[other],
                max_msgs_per_subject=3,
                duplicate_window=30,
            )
        )
    url = adapter_url(nats_server, nats_names, history=9, dedupe_window=60)
    async with NatsAdapter.from_url(url) as adapter:
        assert (await adapter.publish([ev()])).published == 1
    async with connected(nats_server) as js:
        config = (await js.stream_info(nats_names.stream)).config
    assert config.subjects == [other, f"{nats_names.prefix}.*"]  # the other subjects stay
    assert (config.max_msgs_per_subject, config.duplicate_window) == (9, 60)


async def test_each_channel_is_one_subject_with_the_event_id_as_msg_id(
    nats_server: str, nats_adapter: NatsAdapter
) -> None:
    channel = PORTABLE
    event = ev(channel)
    assert await nats_adapter.publish([event, ev("orders.2")]) == PublishResult(published=2)
    subject = f"{nats_adapter.names.prefix}.{encode_token(channel)}"
    async with connected(nats_server) as js:
        stored = await js.get_last_msg(nats_adapter.names.stream, subject)
    assert stored.subject == subject
    assert stored.headers is not None and stored.headers["Nats-Msg-Id"] == event.id
    assert stored.data is not None and Event.decode(stored.data) == event
    assert [e.id for e in await nats_adapter.history(channel)] == [event.id]


async def test_history_since_reads_from_the_servers_time_on(
    nats_server: str, nats_adapter: NatsAdapter
) -> None:
    first, second, third = ev("orders.7", 1), ev("orders.7", 2), ev("orders.7", 3)
    await nats_adapter.publish([first, second])
    subject = f"{nats_adapter.names.prefix}.{encode_token('orders.7')}"
    async with connected(nats_server) as js:
        stored = await js.get_last_msg(nats_adapter.names.stream, subject)
    assert stored.time is not None  # when JetStream stored ``second``, by the server's clock
    await nats_adapter.publish([third, ev("orders.8", 4)])

    page = await nats_adapter.history_since("orders.7", stored.time)
    assert ([e.id for e in page], page.has_more) == ([second.id, third.id], False)
    page = await nats_adapter.history_since("orders.7", stored.time, limit=1)
    assert ([e.id for e in page], page.has_more) == ([second.id], True)
    later = stored.time + timedelta(days=1)
    assert list(await nats_adapter.history_since("orders.7", later)) == []
    with pytest.raises(ValueError, match="timezone-aware"):
        await nats_adapter.history_since("orders.7", datetime(2026, 1, 1))


async def test_duplicates_are_dropped_by_id_across_connections(
    nats_server: str, nats_names: NatsNames
) -> None:
    """Two relays publish the same rows at once (a lost lease): each id is stored once."""
    url = adapter_url(nats_server, nats_names)
    events = [ev(f"orders.{n % 3}", n) for n in range(60)]
    async with NatsAdapter.from_url(url) as first, NatsAdapter.from_url(url) as second:
        one, two = await asyncio.gather(first.publish(events), second.publish(events))
        assert one.published + two.published == len(events)
        assert sorted([*one.duplicates, *two.duplicates]) == sorted(e.id for e in events)
        retried = await second.publish(events[10:20])  # a retry whose ack was lost
        assert retried == PublishResult(published=0, duplicates=tuple(e.id for e in events[10:20]))
        for channel in ("orders.0", "orders.1", "orders.2"):
            page = await first.history(channel, limit=100)
            assert [e.id for e in page] == [e.id for e in events if e.channel == channel]
    async with connected(nats_server) as js:
        assert (await js.stream_info(nats_names.stream)).state.messages == len(events)


async def test_reads_leave_no_consumer_behind(nats_server: str, nats_adapter: NatsAdapter) -> None:
    events = [ev(n=n) for n in range(5)]
    await nats_adapter.publish(events)
    await nats_adapter.enter_presence("presence-room.1", Member("u1"))
    await nats_adapter.history("orders.1", limit=2)
    await nats_adapter.history("orders.1", after=events[0].id, limit=1)  # stops reading early
    await nats_adapter.occupancy("presence-room.1")
    names = nats_adapter.names

    async def no_consumers() -> bool:
        async with connected(nats_server) as js:
            counts = [
                (await js.stream_info(stream)).state.consumer_count
                for stream in (names.stream, names.presence_stream)
            ]
        return counts == [0, 0]

    await eventually_true(no_consumers, "the read consumers to be deleted")


async def test_occupancy_counts_the_consumers_that_receive_the_channel(
    nats_server: str, nats_adapter: NatsAdapter
) -> None:
    await nats_adapter.ping()
    names = nats_adapter.names
    async with connected(nats_server) as js:
        everything = await js.add_consumer(
            names.stream, ConsumerConfig(filter_subject=f"{names.prefix}.>")
        )
        one_room = await js.add_consumer(
            names.stream, ConsumerConfig(filter_subject=names.subject("room.1"))
        )
        assert (await nats_adapter.occupancy("room.1")).subscribers == 2
        assert (await nats_adapter.occupancy("room.2")).subscribers == 1
        await js.delete_consumer(names.stream, everything.name)
        await js.delete_consumer(names.stream, one_room.name)
    assert (await nats_adapter.occupancy("room.1")).subscribers == 0


# -- presence ---------------------------------------------------------------------------------


async def test_presence_expires_by_the_servers_clock_not_the_clients(
    nats_adapter: NatsAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entries are stamped by the server and compared with the server's clock: a client
    whose clock is an hour ahead neither expires members early nor keeps them."""
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600)
    channel = "presence-room.9"
    await nats_adapter.enter_presence(channel, Member("steady", {"n": 1}), ttl=60)
    await nats_adapter.enter_presence(channel, Member("brief"), ttl=0.3)
    assert [m.id for m in await nats_adapter.presence(channel)] == ["brief", "steady"]

    async def brief_gone() -> bool:
        return [m.id for m in await nats_adapter.presence(channel)] == ["steady"]

    await eventually_true(brief_gone, "the brief member to expire")
    assert (await nats_adapter.occupancy(channel)).members == 1


async def test_member_ids_and_channels_with_any_characters_come_back(
    nats_adapter: NatsAdapter,
) -> None:
    channel = "presence-a.b;c,d@e=f"
    ids = ["user 1", "ü.ß", "a*b>c", "=3D", "x" * 200]
    for member_id in ids:
        await nats_adapter.enter_presence(channel, Member(member_id, {"id": member_id}))
    members = await nats_adapter.presence(channel)
    assert members == [Member(member_id, {"id": member_id}) for member_id in sorted(ids)]
    assert await nats_adapter.presence("presence-a.b;c,d@e") == []  # a prefix of it: nobody


async def test_a_presence_entry_the_adapter_did_not_write_is_ignored(
    nats_server: str, nats_adapter: NatsAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    channel = "presence-room.2"
    await nats_adapter.enter_presence(channel, Member("real"))
    async with connected(nats_server) as js:
        kv = await js.key_value(nats_adapter.names.bucket)
        await kv.put(f"{encode_token(channel)}.stray", b"not json")
    assert await nats_adapter.presence(channel) == [Member("real")]
    assert "did not write" in caplog.text


async def test_replicas_beyond_a_single_server_are_a_configuration_error(
    nats_server: str, nats_names: NatsNames
) -> None:
    async with NatsAdapter.from_url(adapter_url(nats_server, nats_names, replicas=3)) as adapter:
        with pytest.raises(ConfigurationError, match="replicas > 1 not supported"):
            await adapter.ping()


# -- failures -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raised", "expected", "words"),
    [
        (nats.errors.NoServersError(), VendorUnavailable, "cannot reach NATS"),
        (nats.errors.TimeoutError(), VendorUnavailable, "cannot reach NATS"),
        (ConnectionRefusedError(111, "refused"), VendorUnavailable, "refused"),
        (nats.errors.OutboundBufferLimitError(), VendorUnavailable, "reconnecting"),
        (nats.errors.Error("nats: 'Authorization Violation'"), AuthenticationFailed, "refused"),
        (
            nats.errors.Error("nats: 'Permissions Violation for Publish'"),
            AuthenticationFailed,
            "Permissions",
        ),
        (nats.js.errors.ServiceUnavailableError(), VendorUnavailable, "is JetStream enabled"),
        (nats.js.errors.APIError(code=503, description="busy"), VendorUnavailable, "busy"),
        (nats.js.errors.APIError(code=403, description="no"), AuthenticationFailed, "code 403"),
        (nats.js.errors.BadRequestError(code=400, description="bad"), PublishRejected, "bad"),
        (nats.errors.MaxPayloadError(), PublishRejected, "max_payload"),
    ],
)
def test_nats_errors_become_the_librarys(
    raised: Exception, expected: type[Exception], words: str
) -> None:
    with pytest.raises(expected, match=words) as caught, mapped_errors("nats://h", "publishing"):
        raise raised
    assert caught.value.__cause__ is raised
    assert str(caught.value).startswith("nats://h: ")
    assert "publishing" in str(caught.value)


async def test_nothing_listening_is_vendor_unavailable_at_once() -> None:
    adapter = NatsAdapter.from_url(f"nats://127.0.0.1:{free_port()}?timeout=3")
    with pytest.raises(VendorUnavailable, match="cannot reach NATS while connecting") as caught:
        await adapter.publish([ev()])
    assert isinstance(caught.value, TransientError)
    assert caught.value.adapter == adapter.name
    await adapter.aclose()


async def test_a_server_without_jetstream_is_one_clear_error() -> None:
    with running_nats(jetstream=False) as server:
        async with NatsAdapter.from_url(server.url) as adapter:
            with pytest.raises(VendorUnavailable, match="is JetStream enabled"):
                await adapter.publish([ev()])


async def test_a_wrong_password_is_authentication_failed_and_never_shown() -> None:
    right, wrong = "correct-horse-battery", "wrong-staple-9f3a"
    with running_nats(args=["--user", "ops", "--pass", right]) as server:
        bad = f"nats://ops:{wrong}@127.0.0.1:{server.port}"
        bridge = Bridge.from_url(bad)
        async with bridge:
            with pytest.raises(AuthenticationFailed) as caught:
                await bridge.publish(ev())
            stats = bridge.stats()
        for shown in (str(caught.value), repr(caught.value), repr(bridge), str(stats)):
            assert wrong not in shown
            assert right not in shown
        # The user part is masked too: in a token URL (nats://TOKEN@host) it is the secret.
        assert caught.value.adapter == f"nats://***:***@127.0.0.1:{server.port}"
        good = f"nats://ops:{right}@127.0.0.1:{server.port}"
        async with NatsAdapter.from_url(good) as adapter:
            assert (await adapter.publish([ev()])).published == 1


async def test_a_payload_limit_over_the_servers_is_a_configuration_error(tmp_path: object) -> None:
    with _config_file("max_payload: 4096\n") as config, running_nats(args=["-c", config]) as server:
        async with NatsAdapter.from_url(server.url) as adapter:
            with pytest.raises(ConfigurationError, match=r"lower \?max_payload= to at most 3840"):
                await adapter.ping()
        async with NatsAdapter.from_url(f"{server.url}?max_payload=3840") as adapter:
            limit = adapter.limits.max_payload_bytes
            overhead = adapter.payload_size(Event(channel="big.1", type="t", data={"x": ""}))
            at_limit = Event(channel="big.1", type="t", data={"x": "y" * (limit - overhead)})
            assert adapter.payload_size(at_limit) == limit
            assert await adapter.publish([at_limit]) == PublishResult(published=1)
            assert list(await adapter.history("big.1")) == [at_limit]


@contextlib.contextmanager
def _config_file(text: str) -> Iterator[str]:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".conf", prefix="rb-nats-") as handle:
        handle.write(text)
        handle.flush()
        yield handle.name


async def test_a_deleted_stream_is_made_again_on_the_next_call(
    nats_server: str, nats_adapter: NatsAdapter
) -> None:
    await nats_adapter.publish([ev(n=1)])
    async with connected(nats_server) as js:
        await js.delete_stream(nats_adapter.names.stream)
    with pytest.raises(VendorUnavailable, match=r"was stream .* deleted"):
        await nats_adapter.publish([ev(n=2)])
    again = ev(n=3)
    assert await nats_adapter.publish([again]) == PublishResult(published=1)
    assert [e.id for e in await nats_adapter.history("orders.1")] == [again.id]


async def test_while_the_server_is_down_publish_fails_at_once_then_recovers() -> None:
    with running_nats() as server:
        async with NatsAdapter.from_url(f"{server.url}?timeout=2") as adapter:
            first = ev(n=1)
            await adapter.publish([first])
            server.stop()
            with pytest.raises(VendorUnavailable):
                await adapter.publish([ev(n=2)])
            server.start()
            later = ev(n=3)

            async def published() -> bool:
                with contextlib.suppress(VendorUnavailable):
                    return (await adapter.publish([later])).published == 1
                return False

            await eventually_true(published, "the adapter to reconnect by itself")
            assert [e.id for e in await adapter.history("orders.1")] == [first.id, later.id]


# -- a server restarted under load ---------------------------------------------------------------

BATCHES, BATCH, CHANNELS = 150, 40, 4


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_a_server_restart_under_load_loses_nothing(how: str) -> None:
    """A publisher sends batches as fast as acknowledgements come back, retrying a failed
    batch as the relay does (the same ids again), while the server is restarted under it
    (SIGTERM, or SIGKILL), wherever in a batch that lands. Afterwards every event is stored
    exactly once, in publish order per channel, and only events of a batch that failed
    and was sent again may be reported duplicates (stored before the drop)."""
    channels = [f"orders.{n}" for n in range(CHANNELS)]
    batches = [
        [
            Event(channel=channels[i % CHANNELS], type="t", data={"b": b, "i": i})
            for i in range(BATCH)
        ]
        for b in range(BATCHES)
    ]
    results: list[PublishResult] = []
    failures: list[VendorUnavailable] = []
    retried: set[str] = set()  # ids of the batches sent more than once
    with running_nats() as server:
        async with NatsAdapter.from_url(f"{server.url}?history=100000&timeout=2") as adapter:
            a_third_done = asyncio.Event()

            async def publish_everything() -> None:
                for batch in batches:
                    while True:
                        try:
                            results.append(await adapter.publish(batch))
                            if len(results) == BATCHES // 3:
                                a_third_done.set()
                            break
                        except VendorUnavailable as exc:
                            failures.append(exc)
                            retried.update(event.id for event in batch)
                            await asyncio.sleep(0.05)  # the relay's backoff, shortened

            async def restart_midway(server: NatsProcess) -> int:
                await a_third_done.wait()
                await asyncio.to_thread(server.kill if how == "kill" else server.stop)
                acknowledged_before = len(results)
                await asyncio.to_thread(server.start)
                return acknowledged_before

            _, acknowledged_before = await asyncio.gather(
                publish_everything(), restart_midway(server)
            )
            pages = {
                channel: await adapter.history(channel, limit=BATCHES * BATCH)
                for channel in channels
            }
        async with connected(server.url) as js:
            stored = (await js.stream_info(adapter.names.stream)).state.messages

    assert acknowledged_before < BATCHES  # the restart came while there was load
    assert failures and all("NATS" in str(failure) for failure in failures)
    every = [event for batch in batches for event in batch]
    for channel in channels:
        assert [e.id for e in pages[channel]] == [e.id for e in every if e.channel == channel]
    assert stored == len(every)
    duplicates = [event_id for result in results for event_id in result.duplicates]
    assert sum(result.published for result in results) + len(duplicates) == len(every)
    assert len(set(duplicates)) == len(duplicates)
    assert set(duplicates) <= retried  # only what a failed attempt had already stored
