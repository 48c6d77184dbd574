"""JetStream acknowledgements of a pipelined batch, matched to their messages by reply subject.

Waiting for each publish's acknowledgement before sending the next costs one
round trip per event. Instead every message of a batch is sent at once, each
with its own reply subject under one inbox subscription, and the batch waits
for all the answers together: one round trip per batch, as the Redis
adapter's one script per batch. The messages of a batch go out in one write,
in order, so the stream stores them in order; a connection lost mid-batch
stores a prefix of it, never a middle part (see ``NatsAdapter.publish``).
"""

from __future__ import annotations

import asyncio
import itertools

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

__all__ = ["Acks"]


class Acks:
    """One inbox subscription through which every acknowledgement of one connection arrives."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[Msg]] = {}
        self._numbers = itertools.count()
        self._prefix = ""
        self._subscription: Subscription | None = None

    async def start(self, nc: Client) -> None:
        self._prefix = f"{nc.new_inbox()}."
        self._subscription = await nc.subscribe(f"{self._prefix}*", cb=self._arrived)

    def expect(self, count: int) -> list[str]:
        """``count`` new reply subjects, whose acknowledgements ``gather`` then waits for."""
        loop = asyncio.get_running_loop()
        tokens = [str(next(self._numbers)) for _ in range(count)]
        for token in tokens:
            self._waiting[token] = loop.create_future()
        return [self._prefix + token for token in tokens]

    async def gather(self, replies: list[str], within: float) -> list[Msg | None]:
        """The acknowledgement to each reply, in order; ``None`` where none came ``within`` seconds.

        Only as many replies as were actually sent should be given; every one
        given is forgotten afterwards, answered or not.
        """
        futures = [self._waiting[reply[len(self._prefix) :]] for reply in replies]
        try:
            if futures:
                await asyncio.wait(futures, timeout=within)
            return [
                future.result() if future.done() and not future.cancelled() else None
                for future in futures
            ]
        finally:
            self.forget(replies)

    def forget(self, replies: list[str]) -> None:
        """Stop waiting for these replies (answered, timed out, or never sent)."""
        for reply in replies:
            future = self._waiting.pop(reply[len(self._prefix) :], None)
            if future is not None:
                future.cancel()

    async def _arrived(self, msg: Msg) -> None:
        future = self._waiting.get(msg.subject[len(self._prefix) :])
        if future is not None and not future.done():
            future.set_result(msg)

    async def stop(self) -> None:
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None
