"""Reading what a JetStream stream keeps on one subject, once, through a throwaway consumer.

History and presence both read stored messages of one subject (a channel's
events, or a channel's presence keys). JetStream 2.9 has no "last N of a
subject" and cannot walk a subject backwards, so each read makes an
ephemeral pull consumer filtered to the subject, pulls its messages oldest
first in bounded batches (``no_wait``: the server says when there are no
more), and deletes the consumer afterwards; an abandoned one is removed by
the server after ``inactive_threshold``. The consumer's creation time is
the *server's* clock, which presence uses as "now", so members expire by the
server's clock as they do on Redis, whatever the client's clock says.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext

__all__ = ["READER_DESCRIPTION", "Reading", "Stored", "reading"]

#: The description of the consumers made here, so occupancy does not count them as subscribers.
READER_DESCRIPTION = "realtime-bridge: one read of stored messages"
#: Messages asked for per pull; with the subscription's byte limit, bounds what is in flight.
PULL_BATCH = 64
_END_STATUSES = frozenset({"404", "408"})  # "No Messages", "Request Timeout" (no_wait done)


@dataclass(frozen=True, slots=True)
class Stored:
    """One stored message: its subject, stream sequence, server timestamp, headers and data."""

    subject: str
    sequence: int
    time: datetime
    headers: Mapping[str, str]
    data: bytes


class Reading:
    """The messages a throwaway consumer delivers, oldest first; ``next()`` until ``None``."""

    def __init__(
        self,
        nc: Client,
        subscription: Subscription,
        inbox: str,
        next_subject: str,
        *,
        now: datetime,
        pending: int,
        timeout: float,
    ) -> None:
        #: The server's clock when the consumer was made.
        self.now = now
        #: How many messages matched when the consumer was made.
        self.pending = pending
        self._nc = nc
        self._subscription = subscription
        self._inbox = inbox
        self._next_subject = next_subject
        self._timeout = timeout
        self._remaining = pending
        self._in_batch = 0

    async def next(self) -> Stored | None:
        """The next stored message, or ``None`` once those that matched at the start are read."""
        if self._remaining <= 0:
            return None
        if self._in_batch == 0:
            self._in_batch = min(self._remaining, PULL_BATCH)
            request = json.dumps({"batch": self._in_batch, "no_wait": True}).encode()
            await self._nc.publish(self._next_subject, request, reply=self._inbox)
        msg = await self._subscription.next_msg(timeout=self._timeout)
        if _status(msg) in _END_STATUSES:  # fewer than expected: some were removed meanwhile
            self._remaining = 0
            return None
        self._in_batch -= 1
        self._remaining -= 1
        return _stored(msg)


def _status(msg: Msg) -> str | None:
    if msg.data or not msg.headers:
        return None
    return msg.headers.get("Status")


def _stored(msg: Msg) -> Stored:
    metadata = msg.metadata
    return Stored(
        subject=msg.subject,
        sequence=metadata.sequence.stream,
        time=metadata.timestamp,
        headers=msg.headers or {},
        data=msg.data,
    )


@contextlib.asynccontextmanager
async def reading(
    nc: Client,
    js: JetStreamContext,
    stream: str,
    subject: str,
    *,
    request_timeout: float,
    last_per_subject: bool = False,
    since: datetime | None = None,
) -> AsyncIterator[Reading]:
    """A ``Reading`` of what ``stream`` keeps on ``subject``: all of it, the newest per
    subject (``last_per_subject``), or what was stored at or after ``since`` (server time)."""
    policy = DeliverPolicy.ALL
    if last_per_subject:
        policy = DeliverPolicy.LAST_PER_SUBJECT
    elif since is not None:
        policy = DeliverPolicy.BY_START_TIME
    config = ConsumerConfig(
        description=READER_DESCRIPTION,
        filter_subject=subject,
        deliver_policy=policy,
        opt_start_time=since,
        ack_policy=AckPolicy.NONE,
        inactive_threshold=max(5.0, 2 * request_timeout),
        mem_storage=True,
    )
    info = await js.add_consumer(stream, config, timeout=request_timeout)
    inbox = nc.new_inbox()
    subscription = await nc.subscribe(inbox, pending_bytes_limit=2 * PULL_BATCH * nc.max_payload)
    try:
        yield Reading(
            nc,
            subscription,
            inbox,
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{info.name}",
            now=info.created,
            pending=info.num_pending or 0,
            timeout=request_timeout,
        )
    finally:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
            # No need to wait for the answer: the server drops the consumer either way.
            await nc.publish(f"$JS.API.CONSUMER.DELETE.{stream}.{info.name}", b"")
