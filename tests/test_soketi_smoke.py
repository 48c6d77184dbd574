"""The soketi test infrastructure is real: the pusher SDK and a WebSocket client meet there.

Each test drives soketi the way an app and a browser drive Pusher: the official
``pusher`` SDK publishes and signs (sync, so it runs in ``asyncio.to_thread``), and
``PusherSocket`` subscribes. If these pass, tests built on ``conftest_pusher`` talk to
a working Pusher-protocol server, not to a stub that agrees with our own mistakes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import pusher
import pytest
from pusher_ws import PusherError, PusherSocket, SubscriptionError
from soketi_server import SoketiServer, WebhookReceiver, unique_name

pytest_plugins = ["conftest_pusher"]


def sdk(server: SoketiServer, *, secret: str | None = None) -> pusher.Pusher:
    """The pusher SDK aimed at ``server`` (with another ``secret`` to sign wrongly)."""
    return pusher.Pusher(
        app_id=server.app_id,
        key=server.key,
        secret=secret or server.secret,
        host="127.0.0.1",
        port=server.port,
        ssl=False,
    )


async def test_an_sdk_trigger_reaches_a_public_channel_subscriber(soketi: SoketiServer) -> None:
    channel = unique_name("orders-")
    async with PusherSocket.connect(soketi) as ws:
        assert await ws.subscribe(channel) is None
        await asyncio.to_thread(sdk(soketi).trigger, channel, "order.created", {"id": 42})
        event = await ws.next_event(timeout=5)
    assert event == {"event": "order.created", "channel": channel, "data": {"id": 42}}


async def test_private_channels_accept_sdk_auth_and_refuse_a_wrong_signature(
    soketi: SoketiServer,
) -> None:
    channel = unique_name("private-orders-")
    async with PusherSocket.connect(soketi) as good, PusherSocket.connect(soketi) as bad:
        auth = sdk(soketi).authenticate(channel=channel, socket_id=good.socket_id)
        await good.subscribe(channel, auth=auth["auth"])

        forged = sdk(soketi, secret="not-the-secret").authenticate(
            channel=channel, socket_id=bad.socket_id
        )
        with pytest.raises(SubscriptionError) as refused:
            await bad.subscribe(channel, auth=forged["auth"])
        assert refused.value.data["type"] == "AuthError"
        assert refused.value.data["status"] == 401

        await asyncio.to_thread(sdk(soketi).trigger, channel, "order.paid", {"id": 7})
        assert (await good.next_event(timeout=5))["data"] == {"id": 7}


async def test_presence_members_are_seen_by_sockets_and_by_the_rest_api(
    soketi: SoketiServer,
) -> None:
    channel = unique_name("presence-room-")
    client = sdk(soketi)
    async with PusherSocket.connect(soketi) as alice, PusherSocket.connect(soketi) as bob:
        joined = []
        for ws, user in ((alice, "alice"), (bob, "bob")):
            auth = client.authenticate(
                channel=channel,
                socket_id=ws.socket_id,
                custom_data={"user_id": user, "user_info": {"name": user.title()}},
            )
            joined.append(
                await ws.subscribe(channel, auth=auth["auth"], channel_data=auth["channel_data"])
            )
        assert joined[0]["presence"]["ids"] == ["alice"]
        assert sorted(joined[1]["presence"]["ids"]) == ["alice", "bob"]
        assert joined[1]["presence"]["hash"]["alice"] == {"name": "Alice"}

        added = await alice.next_protocol_message(timeout=5)
        assert added["event"] == "pusher_internal:member_added"
        assert added["data"] == {"user_id": "bob", "user_info": {"name": "Bob"}}

        users = await asyncio.to_thread(client.users_info, channel)
        info = await asyncio.to_thread(client.channel_info, channel, ["user_count"])
    assert sorted(user["id"] for user in users["users"]) == ["alice", "bob"]
    assert info["occupied"] is True
    assert info["user_count"] == 2


async def test_webhooks_arrive_signed_like_pushers(
    soketi_with_webhooks: SoketiServer, webhook_receiver: WebhookReceiver
) -> None:
    server = soketi_with_webhooks
    channel = unique_name("orders-")
    async with PusherSocket.connect(server) as ws:
        await ws.subscribe(channel)
        delivery, event = await webhook_receiver.event("channel_occupied", channel)
    assert event == {"name": "channel_occupied", "channel": channel}
    assert delivery.headers["x-pusher-key"] == server.key
    expected = hmac.new(server.secret.encode(), delivery.body, hashlib.sha256).hexdigest()
    assert delivery.headers["x-pusher-signature"] == expected
    # The SDK's own verifier (which also checks time_ms) accepts it too.
    validated = sdk(server).validate_webhook(
        key=server.key, signature=expected, body=delivery.body.decode()
    )
    assert validated is not None
    assert validated["events"] == [event]

    _, vacated = await webhook_receiver.event("channel_vacated", channel)
    assert vacated == {"name": "channel_vacated", "channel": channel}


async def test_a_socket_reconnects_after_a_restart_and_receives_new_triggers(
    fresh_soketi: SoketiServer,
) -> None:
    channel = unique_name("orders-")
    client = sdk(fresh_soketi)
    async with PusherSocket.connect(fresh_soketi) as ws:
        await ws.subscribe(channel)
        await asyncio.to_thread(client.trigger, channel, "before", {"n": 1})
        assert (await ws.next_event(timeout=5))["event"] == "before"
        old_socket_id, old_pid = ws.socket_id, fresh_soketi.pid

        await asyncio.to_thread(fresh_soketi.restart)
        await ws.wait_closed(timeout=10)
        assert fresh_soketi.pid != old_pid

        assert await ws.reconnect(timeout=20) != old_socket_id
        await asyncio.to_thread(client.trigger, channel, "after", {"n": 2})
        event = await ws.next_event(timeout=5)
    assert event == {"event": "after", "channel": channel, "data": {"n": 2}}


async def test_signin_with_sdk_user_auth_succeeds_and_a_forged_one_is_refused(
    soketi: SoketiServer,
) -> None:
    async with PusherSocket.connect(soketi) as good, PusherSocket.connect(soketi) as bad:
        user = {"id": unique_name("user-"), "name": "Ann"}
        auth = sdk(soketi).authenticate_user(good.socket_id, user)
        signed_in = await good.signin(auth["auth"], auth["user_data"])
        assert json.loads(signed_in["user_data"]) == user

        forged = sdk(soketi, secret="not-the-secret").authenticate_user(bad.socket_id, user)
        with pytest.raises(PusherError) as refused:
            await bad.signin(forged["auth"], forged["user_data"])
        assert refused.value.data["code"] == 4009
        assert await bad.wait_closed(timeout=5) == 4009


async def test_client_events_reach_the_other_subscribers_of_a_private_channel(
    soketi: SoketiServer,
) -> None:
    channel = unique_name("private-chat-")
    async with PusherSocket.connect(soketi) as alice, PusherSocket.connect(soketi) as bob:
        for ws in (alice, bob):
            auth = sdk(soketi).authenticate(channel=channel, socket_id=ws.socket_id)
            await ws.subscribe(channel, auth=auth["auth"])
        await alice.trigger_client_event(channel, "client-typing", {"who": "alice"})
        event = await bob.next_event(timeout=5)
    assert event == {"event": "client-typing", "channel": channel, "data": {"who": "alice"}}
