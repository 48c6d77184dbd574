"""The NATS JetStream adapter: a second self-hosted path, one that scales out as a cluster.

Events are published to one JetStream stream per subject prefix, one subject
per channel (``<prefix>.<channel token>``), each with ``Nats-Msg-Id`` set to
the event id, so the stream's duplicate window drops a retried event and the
acknowledgement says so (``duplicate``): duplicates are reported in
``PublishResult.duplicates``. The stream keeps the newest ``history`` events
of each channel (``max_msgs_per_subject``), which history pages through with
event-id cursors. Presence lives in a JetStream key-value bucket (key
``<channel token>.<member token>``), each member stamped with its own ttl and
expired by the server's clock.

URL: ``nats://[USER:PASSWORD@|TOKEN@]HOST[:PORT][?option=value...]``. Options:
``prefix`` (subject prefix, default ``rb``), ``stream`` (stream name, default
the prefix in upper case with ``_`` for ``.``), ``history`` (events kept per
channel, default 1000), ``dedupe_window`` (seconds an id is remembered,
default 600), ``presence_ttl`` (seconds: the bucket's max age, and the longest
ttl a member may have, default 600), ``replicas`` (copies of the stream and
bucket in a cluster, default 1; 3 survives the loss of a server), ``timeout``
(seconds, default 5), ``max_payload`` (bytes of the JSON envelope, default the
server's 1 MiB less 256 bytes for headers).

The parts live beside this module: ``_nats_subjects`` (channels as subject
tokens), ``_nats_setup`` (connecting; the stream and bucket), ``_nats_acks``
(a batch's acknowledgements), ``_nats_reader`` and ``_nats_pages`` (reading
history and presence), ``_nats_errors`` (nats-py's errors as the library's).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Self
from urllib.parse import SplitResult, urlsplit

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue

from ..errors import ConfigurationError, CursorNotFound, PublishRejected, VendorUnavailable
from ..events import Event
from ..settings import redact_url
from ._nats_acks import Acks
from ._nats_errors import api_error, mapped_errors
from ._nats_pages import MSG_ID, live_member, read_first, read_page
from ._nats_reader import READER_DESCRIPTION, reading
from ._nats_setup import StreamPlan, connect, prepare
from ._nats_subjects import NatsNames, check_name, check_prefix, subject_matches
from ._query import QueryOptions
from .base import (
    SELF_HOSTED_CAPABILITIES,
    Adapter,
    Capability,
    HistoryPage,
    Limits,
    Member,
    Occupancy,
    PublishResult,
)

__all__ = ["NatsAdapter", "NatsNames"]

log = logging.getLogger("realtime_bridge.nats")

_OPTIONS = frozenset(
    {
        "prefix",
        "stream",
        "history",
        "dedupe_window",
        "presence_ttl",
        "replicas",
        "timeout",
        "max_payload",
    }
)
#: Bytes kept free for the headers (``Nats-Msg-Id``: an id is at most 128 characters).
HEADER_ROOM = 256
#: NATS's default ``max_payload``: the limit assumed until the server says otherwise.
DEFAULT_SERVER_MAX_PAYLOAD = 1024 * 1024
_CONSUMER_PAGE = 256  # consumers JetStream lists per request


@dataclass
class _Link:
    """One connection and what was set up on it."""

    nc: Client
    js: JetStreamContext
    acks: Acks
    kv: KeyValue | None = None


class NatsAdapter(Adapter):
    """Publish, history, presence and occupancy on a NATS server (or cluster) with JetStream."""

    scheme = "nats"
    capabilities: ClassVar[frozenset[Capability]] = SELF_HOSTED_CAPABILITIES

    def __init__(
        self,
        servers: str,
        *,
        label: str = "nats://",
        prefix: str = "rb",
        stream: str | None = None,
        history: int = 1000,
        dedupe_window: float = 600.0,
        presence_ttl: float = 600.0,
        replicas: int = 1,
        timeout: float = 5.0,
        max_payload: int = DEFAULT_SERVER_MAX_PAYLOAD - HEADER_ROOM,
        max_batch: int = 1000,
    ) -> None:
        stream = stream or prefix.replace(".", "_").upper()
        for option, value, problem in (
            ("prefix", prefix, check_prefix(prefix)),
            ("stream", stream, check_name(stream)),
        ):
            if problem:
                raise ConfigurationError(
                    f"option {option!r} of the nats:// URL {problem}, got {value!r}"
                )
        self.limits = Limits(
            max_payload_bytes=max_payload,
            max_events_per_batch=max_batch,
            payload_measure="the JSON envelope (the message body)",
        )
        self.names = NatsNames(prefix, stream)
        self._plan = StreamPlan(self.names, history, dedupe_window, presence_ttl, replicas)
        self._servers = servers
        self._label = label
        self._presence_ttl = presence_ttl
        self._timeout = timeout
        self._link: _Link | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Build from ``nats://``; connects lazily, on first use."""
        parts = urlsplit(url)
        query = QueryOptions(parts.query, adapter="nats", known=_OPTIONS)
        base = SplitResult(parts.scheme, parts.netloc, "", "", "").geturl()
        try:
            host = parts.hostname
            parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
        except ValueError as exc:
            raise ConfigurationError(f"bad NATS URL {redact_url(url)!r}: {exc}") from exc
        if not host or parts.path not in ("", "/"):
            raise ConfigurationError(
                f"bad NATS URL {redact_url(url)!r}: it must be nats://[credentials@]HOST[:PORT], "
                "with no path"
            )
        options.setdefault("label", redact_url(base))
        options.setdefault("prefix", query.text("prefix", "rb"))
        options.setdefault("stream", query.text("stream", "") or None)
        options.setdefault("history", query.integer("history", 1000))
        options.setdefault("dedupe_window", query.number("dedupe_window", 600.0))
        options.setdefault("presence_ttl", query.number("presence_ttl", 600.0))
        options.setdefault("replicas", query.integer("replicas", 1))
        options.setdefault("timeout", query.number("timeout", 5.0))
        options.setdefault(
            "max_payload", query.integer("max_payload", DEFAULT_SERVER_MAX_PAYLOAD - HEADER_ROOM)
        )
        return cls(base, **options)

    @property
    def name(self) -> str:
        return self._label

    def payload_size(self, event: Event) -> int:
        """The message body is the whole envelope, so that is what the server's limit counts."""
        return len(event.encode())

    # -- connecting ---------------------------------------------------------------------

    async def _ready(self) -> _Link:
        """The connection, with the stream and bucket in place: made on first use."""
        link = self._link
        if link is not None and link.kv is not None and not link.nc.is_closed:
            return link
        async with self._lock:
            if self._link is None or self._link.nc.is_closed:
                nc = await connect(
                    self._servers,
                    label=self.name,
                    within=self._timeout,
                    on_error=self._error,
                    on_disconnect=self._disconnected,
                    on_reconnect=self._reconnected,
                )
                self._link = await self._linked(nc)
            link = self._link
            if link.kv is None:
                link.kv = await prepare(link.js, self._plan, self.name)
            return link

    async def _linked(self, nc: Client) -> _Link:
        if self.limits.max_payload_bytes + HEADER_ROOM > nc.max_payload:
            await nc.close()
            raise ConfigurationError(
                f"{self.name}: max_payload={self.limits.max_payload_bytes} bytes plus "
                f"{HEADER_ROOM} for headers is over the server's max_payload of "
                f"{nc.max_payload}; lower ?max_payload= to at most {nc.max_payload - HEADER_ROOM}"
            )
        acks = Acks()
        with mapped_errors(self.name, "subscribing to acknowledgements"):
            await acks.start(nc)
        return _Link(nc, nc.jetstream(timeout=self._timeout), acks)

    async def _error(self, exc: Exception) -> None:
        log.warning("%s: %s", self.name, exc)

    async def _disconnected(self) -> None:
        link = self._link
        if link is not None and not link.nc.is_closed:  # a drop, not our own aclose
            log.warning("%s: connection lost; reconnecting in the background", self.name)

    async def _reconnected(self) -> None:
        log.info("%s: reconnected", self.name)

    # -- publishing ---------------------------------------------------------------------

    async def publish(self, events: Sequence[Event]) -> PublishResult:
        """Send the whole batch in one write, then wait for every acknowledgement at once.

        nats-py queues the messages without yielding and writes them together,
        so the stream stores them in the batch's order; if the connection
        drops, the stream holds a prefix of the batch and the retry (the same
        ids) stores the rest after it, the prefix reported as duplicates.
        """
        if not events:
            return PublishResult(published=0)
        link = await self._ready()
        replies = link.acks.expect(len(events))
        try:
            with mapped_errors(self.name, "publishing"):
                for event, reply in zip(events, replies, strict=True):
                    await link.nc.publish(
                        self.names.subject(event.channel),
                        event.encode(),
                        reply=reply,
                        headers={MSG_ID: event.id},
                    )
        except BaseException:
            link.acks.forget(replies)
            raise
        answers = await link.acks.gather(replies, self._timeout)
        return self._outcome(link, events, answers)

    def _outcome(
        self, link: _Link, events: Sequence[Event], answers: list[Msg | None]
    ) -> PublishResult:
        duplicates: list[str] = []
        missing = 0
        for event, answer in zip(events, answers, strict=True):
            if answer is None:
                missing += 1
            elif self._acknowledged(link, event, answer):
                duplicates.append(event.id)
        if missing:
            raise VendorUnavailable(
                f"NATS acknowledged {len(events) - missing} of {len(events)} events within "
                f"{self._timeout:g}s; sending them again is safe (JetStream drops ids it stored)",
                adapter=self.name,
            )
        return PublishResult(published=len(events) - len(duplicates), duplicates=tuple(duplicates))

    def _acknowledged(self, link: _Link, event: Event, answer: Msg) -> bool:
        """Check one acknowledgement: True for a duplicate; raises if the event was refused."""
        if not answer.data and answer.headers and answer.headers.get("Status") == "503":
            link.kv = None  # the stream is gone: create it again on the next call
            raise VendorUnavailable(
                f"no stream takes subject {self.names.subject(event.channel)!r} (was stream "
                f"{self.names.stream!r} deleted?); it is created again on the next call",
                adapter=self.name,
            )
        try:
            ack = json.loads(answer.data)
            error = ack.get("error")
        except (ValueError, AttributeError) as exc:
            raise PublishRejected(
                f"event {event.id}: something other than JetStream answered on "
                f"{self.names.subject(event.channel)!r}: {answer.data[:80]!r}",
                adapter=self.name,
                event_id=event.id,
            ) from exc
        if error is not None:
            raise api_error(
                self.name,
                int(error.get("code", 500)),
                str(error.get("description", "")),
                f"event {event.id}",
                event_id=event.id,
            )
        return bool(ack.get("duplicate"))

    # -- history ------------------------------------------------------------------------

    async def history(
        self,
        channel: str,
        *,
        limit: int = 50,
        before: str | None = None,
        after: str | None = None,
    ) -> HistoryPage:
        """A page of the channel's kept events, read from the stream oldest first.

        JetStream cannot read a subject backwards, so the newest page (and a
        page ``before`` a cursor) reads the channel's kept events up to there
        (at most ``history``); a page ``after`` a cursor stops once it is full.
        """
        link = await self._ready()
        subject = self.names.subject(channel)
        with mapped_errors(self.name, f"reading the history of {channel}"):
            async with reading(
                link.nc, link.js, self.names.stream, subject, request_timeout=self._timeout
            ) as found:
                outcome = await read_page(found, limit, before=before, after=after)
        if outcome is None:
            raise CursorNotFound(
                f"event {after or before} is not in the kept history of {channel} (trimmed, "
                "or never published there); re-fetch the state instead",
                adapter=self.name,
            )
        page, has_more = outcome
        return HistoryPage(tuple(Event.decode(stored.data) for stored in page), has_more=has_more)

    async def history_since(self, channel: str, since: datetime, *, limit: int = 50) -> HistoryPage:
        """The channel's kept events stored at or after ``since``, oldest first.

        Time is the NATS server's (when JetStream stored each event), so a
        client's clock skew cannot reorder or skip anything. ``since`` must be
        timezone-aware. Page on with ``history(channel, after=<last id>)``.
        """
        if since.tzinfo is None:
            raise ValueError("history_since needs a timezone-aware datetime (e.g. in UTC)")
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        link = await self._ready()
        subject = self.names.subject(channel)
        with mapped_errors(self.name, f"reading the history of {channel}"):
            async with reading(
                link.nc,
                link.js,
                self.names.stream,
                subject,
                request_timeout=self._timeout,
                since=since,
            ) as found:
                page, has_more = await read_first(found, limit)
        return HistoryPage(tuple(Event.decode(stored.data) for stored in page), has_more=has_more)

    # -- presence and occupancy ------------------------------------------------------------

    async def enter_presence(self, channel: str, member: Member, *, ttl: float = 60.0) -> None:
        """Add or refresh ``member``; it leaves by itself ``ttl`` seconds after the last refresh.

        ``ttl`` is at most ``presence_ttl``, the bucket's max age, after which
        JetStream removes the entry whatever the member's own ttl says.
        """
        if not 0 < ttl <= self._presence_ttl:
            raise ValueError(
                f"presence ttl must be more than 0 and at most presence_ttl="
                f"{self._presence_ttl:g} seconds (the bucket's max age), got {ttl!r}"
            )
        value = {"ttl_ms": max(1, round(ttl * 1000)), "info": member.info}
        link = await self._ready()
        assert link.kv is not None
        with mapped_errors(self.name, f"entering presence on {channel}"):
            await link.kv.put(
                self.names.presence_key(channel, member.id),
                json.dumps(value, separators=(",", ":")).encode(),
            )

    async def leave_presence(self, channel: str, member_id: str) -> None:
        link = await self._ready()
        assert link.kv is not None
        with mapped_errors(self.name, f"leaving presence on {channel}"):
            await link.kv.delete(self.names.presence_key(channel, member_id))

    async def presence(self, channel: str) -> list[Member]:
        """The members whose last refresh plus ttl is later than the server's clock now."""
        link = await self._ready()
        members: list[Member] = []
        with mapped_errors(self.name, f"reading presence on {channel}"):
            async with reading(
                link.nc,
                link.js,
                self.names.presence_stream,
                self.names.presence_subjects(channel),
                request_timeout=self._timeout,
                last_per_subject=True,
            ) as found:
                while (stored := await found.next()) is not None:
                    member = live_member(stored, found.now)
                    if member is not None:
                        members.append(member)
        return sorted(members, key=lambda member: member.id)

    async def occupancy(self, channel: str) -> Occupancy:
        """Members from presence; subscribers are the JetStream consumers of the channel.

        A consumer counts when its filter takes the channel's subject (``rb.>``
        counts on every channel). Plain core-NATS subscriptions are invisible
        to a client without the system account, so they are not counted.
        """
        members = len(await self.presence(channel))
        link = await self._ready()
        subject = self.names.subject(channel)
        subscribers = 0
        with mapped_errors(self.name, f"listing the consumers of {self.names.stream}"):
            offset = 0
            while True:
                page = await link.js.consumers_info(self.names.stream, offset=offset)
                for info in page:
                    config = info.config
                    filters = config.filter_subjects or [config.filter_subject or ">"]
                    if config.description != READER_DESCRIPTION and any(
                        subject_matches(pattern, subject) for pattern in filters
                    ):
                        subscribers += 1
                if len(page) < _CONSUMER_PAGE:
                    break
                offset += len(page)
        return Occupancy(channel, subscribers=subscribers, members=members)

    # -- lifecycle ------------------------------------------------------------------------

    async def ping(self) -> None:
        link = await self._ready()
        if not link.nc.is_connected:  # nats-py's flush returns at once while reconnecting
            raise VendorUnavailable("not connected to NATS (reconnecting)", adapter=self.name)
        with mapped_errors(self.name, "pinging"):
            await link.nc.flush(timeout=math.ceil(self._timeout))

    async def aclose(self) -> None:
        link, self._link = self._link, None
        if link is None:
            return
        with contextlib.suppress(Exception):
            await link.acks.stop()
        with contextlib.suppress(Exception):
            await link.nc.close()
