"""The Liveblocks emulator, held to the official ``liveblocks`` SDK (3.x) and the REST reference.

Most tests drive the emulator with ``liveblocks.AsyncLiveblocks`` pointed at it
(``base_url``, as the SDK allows for "an alternative Liveblocks server"): what the
SDK sends and parses is the check, written by someone else. Its calls here:
``broadcast_event``, ``get_active_users``, ``create_room`` / ``get_room`` /
``get_rooms`` / ``update_room`` / ``delete_room``, ``prepare_session(...).authorize()``
(``authorize_user``) and ``identify_user``; one test uses the synchronous
``Liveblocks`` client. What the SDK never sends (the ``broadcast_event`` spelling the
REST reference and the adapter use, a public key, bodies it refuses to build, the
control API) is checked with plain httpx against the ASGI app.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from liveblocks import AsyncLiveblocks, Liveblocks
from liveblocks.errors import LiveblocksError
from liveblocks.models.create_room_request_body import CreateRoomRequestBody
from liveblocks.models.identify_user_request_body import IdentifyUserRequestBody
from liveblocks.models.update_room_request_body import UpdateRoomRequestBody

from realtime_bridge.testing.liveblocks import (
    DEFAULT_SECRET,
    LiveblocksEmulator,
    ManualClock,
    serve,
)

SECRET = DEFAULT_SECRET


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_700_000_000.0)


@pytest.fixture
def emulator(clock: ManualClock) -> LiveblocksEmulator:
    return LiveblocksEmulator(clock=clock)


@pytest.fixture
async def base_url(emulator: LiveblocksEmulator) -> AsyncIterator[str]:
    async with serve(emulator) as url:
        yield url


@pytest.fixture
async def sdk(base_url: str) -> AsyncIterator[AsyncLiveblocks]:
    async with AsyncLiveblocks(secret=SECRET, base_url=base_url) as client:
        yield client


@pytest.fixture
async def http(emulator: LiveblocksEmulator) -> AsyncIterator[httpx.AsyncClient]:
    """Plain HTTP against the ASGI app in process, with the secret key."""
    transport = httpx.ASGITransport(app=emulator.app)
    headers = {"Authorization": f"Bearer {SECRET}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://emulator.test", headers=headers
    ) as client:
        yield client


def error_of(response: httpx.Response) -> tuple[int, str]:
    """(HTTP status, Liveblocks' error code), checking the body has Liveblocks' shape."""
    body = response.json()
    assert set(body) == {"error", "message", "suggestion", "docs"}, body
    assert body["message"]
    return response.status_code, body["error"]


async def refused(call: Any) -> LiveblocksError:
    with pytest.raises(LiveblocksError) as caught:
        await call
    return caught.value


def room(room_id: str, *accesses: str, **fields: Any) -> CreateRoomRequestBody:
    return CreateRoomRequestBody.from_dict(
        {"id": room_id, "defaultAccesses": list(accesses), **fields}
    )


# -- broadcast and active users, through the SDK ----------------------------------------------


async def test_a_broadcast_reaches_every_connection_in_the_room_as_from_the_server(
    sdk: AsyncLiveblocks, emulator: LiveblocksEmulator
) -> None:
    alice = emulator.connect("orders.42", "alice", {"name": "Alice"})
    anonymous = emulator.connect("orders.42")
    elsewhere = emulator.connect("orders.43", "bob")
    await sdk.broadcast_event("orders.42", body={"type": "order.updated", "n": 1})
    await sdk.broadcast_event("orders.42", body=["any", "json", 1])

    for connection in (alice, anonymous):
        got = emulator.received("orders.42", connection)
        assert [item.wire() for item in got] == [
            {"event": {"type": "order.updated", "n": 1}, "connectionId": -1, "user": None},
            {"event": ["any", "json", 1], "connectionId": -1, "user": None},
        ]
    assert emulator.received("orders.43", elsewhere) == []
    [first, second] = emulator.broadcasts("orders.42")
    assert (first.route, first.delivered) == ("broadcast-event", (alice, anonymous))
    assert second.event == ["any", "json", 1]


async def test_a_connection_gets_only_what_was_broadcast_while_it_was_there(
    sdk: AsyncLiveblocks, emulator: LiveblocksEmulator
) -> None:
    early = emulator.connect("room")
    await sdk.broadcast_event("room", body={"n": 1})
    late = emulator.connect("room")
    await sdk.broadcast_event("room", body={"n": 2})
    emulator.disconnect("room", connection_id=early)
    await sdk.broadcast_event("room", body={"n": 3})
    assert [item.event["n"] for item in emulator.received("room", late)] == [2, 3]
    assert [b.delivered for b in emulator.broadcasts("room")] == [(early,), (early, late), (late,)]
    with pytest.raises(ValueError, match="no connection"):
        emulator.received("room", early)


async def test_a_room_that_does_not_exist_is_404_room_not_found(
    sdk: AsyncLiveblocks, emulator: LiveblocksEmulator
) -> None:
    error = await refused(sdk.broadcast_event("nobody.here", body={"n": 1}))
    assert error.status == 404 and "Room not found" in str(error)
    error = await refused(sdk.get_active_users("nobody.here"))
    assert error.status == 404
    assert emulator.broadcasts() == [] and emulator.rooms() == []


async def test_active_users_list_every_connection_with_its_user_and_info(
    sdk: AsyncLiveblocks, emulator: LiveblocksEmulator
) -> None:
    first = emulator.connect("doc", "alice", {"name": "Alice"})
    emulator.connect("doc")
    second = emulator.connect("doc", "alice", {"name": "Alice", "tab": 2})
    emulator.connect("doc", "alice", {"name": "Ada"}, connection_id=first)  # new info, same tab
    users = (await sdk.get_active_users("doc")).data
    assert [(u.id, u.connection_id, u.info.to_dict()) for u in users] == [
        ("alice", first, {"name": "Ada"}),
        (None, 2, {}),
        ("alice", second, {"name": "Alice", "tab": 2}),
    ]
    assert {u.type_ for u in users} == {"user"}
    assert emulator.disconnect("doc", user_id="alice") == 2
    assert [u.id for u in (await sdk.get_active_users("doc")).data] == [None]


async def test_the_rest_reference_spellings_are_served_too(
    http: httpx.AsyncClient, emulator: LiveblocksEmulator
) -> None:
    listener = emulator.connect("a/b c")  # quoted as one path segment
    response = await http.post("/v2/rooms/a%2Fb%20c/broadcast_event", json={"type": "x"})
    assert (response.status_code, response.content) == (204, b"")
    listed = await http.get("/v2/rooms/a%2Fb%20c/active_users")
    assert listed.json() == {"data": [{"type": "user", "id": None, "connectionId": 1, "info": {}}]}
    assert emulator.received("a/b c", listener)[0].event == {"type": "x"}
    assert emulator.broadcasts()[0].route == "broadcast_event"
    assert emulator.requests == {
        "POST /v2/rooms/{roomId}/broadcast_event": 1,
        "GET /v2/rooms/{roomId}/active_users": 1,
    }


async def test_the_synchronous_client_works_too(
    base_url: str, emulator: LiveblocksEmulator
) -> None:
    listener = emulator.connect("sync.1", "u")

    def use() -> list[str | None]:
        with Liveblocks(secret=SECRET, base_url=base_url) as client:
            client.broadcast_event("sync.1", body={"n": 1})
            return [user.id for user in client.get_active_users("sync.1").data]

    assert await asyncio.to_thread(use) == ["u"]
    assert [item.event for item in emulator.received("sync.1", listener)] == [{"n": 1}]


# -- rooms, through the SDK ----------------------------------------------------------------------


async def test_create_get_update_and_delete_a_room(
    sdk: AsyncLiveblocks, emulator: LiveblocksEmulator, clock: ManualClock
) -> None:
    body = room(
        "doc.1",
        "room:read",
        usersAccesses={"alice": ["room:write"], "bob": ["room:write"]},
        metadata={"color": "blue", "tags": ["a", "b"]},
    )
    created = await sdk.create_room(body=body)
    assert created.id == "doc.1" and created.organization_id == "default"
    assert created.created_at.timestamp() == clock()
    assert [access.value for access in created.default_accesses] == ["room:read"]
    assert sorted(created.users_accesses.to_dict()) == ["alice", "bob"]
    assert created.metadata.to_dict() == {"color": "blue", "tags": ["a", "b"]}

    error = await refused(sdk.create_room(body=room("doc.1", "room:write")))
    assert error.status == 409 and "already exists" in str(error)
    same = await sdk.create_room(body=room("doc.1", "room:write"), idempotent=True)
    assert [access.value for access in same.default_accesses] == ["room:read"]  # as it was

    change = UpdateRoomRequestBody.from_dict(
        {"defaultAccesses": [], "usersAccesses": {"bob": None}, "metadata": {"color": None}}
    )
    updated = await sdk.update_room("doc.1", body=change)
    assert updated.default_accesses == [] and list(updated.users_accesses.to_dict()) == ["alice"]
    assert updated.metadata.to_dict() == {"tags": ["a", "b"]}
    assert (await sdk.get_room("doc.1")).to_dict() == updated.to_dict()

    await sdk.delete_room("doc.1")
    assert (await refused(sdk.get_room("doc.1"))).status == 404
    assert (await refused(sdk.update_room("doc.1", body=change))).status == 404


async def test_get_rooms_pages_newest_first(
    sdk: AsyncLiveblocks, emulator: LiveblocksEmulator, clock: ManualClock
) -> None:
    for number in range(5):
        await sdk.create_room(body=room(f"r{number}", "room:write"))
        clock.advance(1)
    emulator.connect("entered")  # a browser entering creates the room
    seen: list[list[str]] = []
    page = await sdk.get_rooms(limit=2)
    seen.append([r.id for r in page.data])
    while page.next_cursor:
        page = await sdk.get_rooms(limit=2, starting_after=page.next_cursor)
        seen.append([r.id for r in page.data])
    assert seen == [["entered", "r4"], ["r3", "r2"], ["r1", "r0"]]
    entered = (await sdk.get_rooms(limit=1)).data[0]
    assert entered.last_connection_at is not None and entered.default_accesses == []
    assert len((await sdk.get_rooms()).data) == 6  # the SDK's default limit, 20


async def test_room_bodies_are_checked_as_liveblocks_documents(http: httpx.AsyncClient) -> None:
    for body, says in [
        ({"defaultAccesses": []}, "'id'"),
        ({"id": "x" * 129, "defaultAccesses": []}, "'id'"),
        ({"id": "r"}, "defaultAccesses"),
        ({"id": "r", "defaultAccesses": ["room:fly"]}, "room:fly"),
        ({"id": "r", "defaultAccesses": [], "metadata": {"k" * 41: "v"}}, "40 characters"),
        ({"id": "r", "defaultAccesses": [], "metadata": {"k": "v" * 257}}, "256"),
    ]:
        response = await http.post("/v2/rooms", json=body)
        assert error_of(response) == (422, "UNPROCESSABLE_ENTITY"), body
        assert says in response.json()["message"]
    for query in ("limit=0", "limit=101", "query=roomId", "startingAfter=nonsense"):
        assert error_of(await http.get(f"/v2/rooms?{query}"))[0] == 422, query


# -- tokens, through the SDK ---------------------------------------------------------------------


async def test_an_access_token_carries_the_user_and_the_permissions_of_the_session(
    sdk: AsyncLiveblocks, emulator: LiveblocksEmulator, clock: ManualClock
) -> None:
    session = sdk.prepare_session("user-7", user_info={"name": "Ada"}, organization_id="acme")
    session.allow("orders.42", ["room:read", "room:presence:write"])
    session.allow("drafts.*", ["*:write"])
    token = (await session.authorize()).token
    claims = emulator.verify_token(token)
    assert claims == {
        "k": "acc",
        "pid": "emulator",
        "uid": "user-7",
        "ui": {"name": "Ada"},
        "perms": {"orders.42": ["room:read", "room:presence:write"], "drafts.*": ["*:write"]},
        "iat": int(clock()),
        "exp": int(clock()) + 3600,
    }
    clock.advance(3600)
    with pytest.raises(ValueError, match="expired"):
        emulator.verify_token(token)


async def test_an_id_token_carries_the_user_and_groups(
    sdk: AsyncLiveblocks, emulator: LiveblocksEmulator
) -> None:
    body = IdentifyUserRequestBody.from_dict({"userId": "u1", "groupIds": ["eng", "ops"]})
    token = (await sdk.identify_user(body=body)).token
    claims = emulator.verify_token(token)
    assert (claims["k"], claims["uid"], claims["gids"]) == ("id", "u1", ["eng", "ops"])
    assert "perms" not in claims and "ui" not in claims
    with pytest.raises(ValueError, match="not signed"):
        LiveblocksEmulator().verify_token(token)  # another project's signing key


async def test_token_bodies_liveblocks_refuses_are_422(http: httpx.AsyncClient) -> None:
    perms = {"r": ["room:read"]}
    for path, body, says in [
        ("/v2/authorize-user", {"permissions": perms}, "'userId'"),
        ("/v2/authorize-user", {"userId": "u" * 129, "permissions": perms}, "'userId'"),
        ("/v2/authorize-user", {"userId": "u"}, "'permissions'"),
        ("/v2/authorize-user", {"userId": "u", "permissions": {"a*b": ["room:read"]}}, "a*b"),
        ("/v2/authorize-user", {"userId": "u", "permissions": {"r": ["fly"]}}, "fly"),
        ("/v2/authorize-user", {"userId": "u", "permissions": {"r": []}}, "non-empty"),
        (
            "/v2/authorize-user",
            {"userId": "u", "permissions": {f"r{n}": ["room:read"] for n in range(11)}},
            "at most 10",
        ),
        (
            "/v2/identify-user",
            {"userId": "u", "userInfo": {"bio": "x" * 1100}},
            "1024 characters",
        ),
        ("/v2/identify-user", {"userId": "u", "groupIds": "eng"}, "'groupIds'"),
        ("/v2/identify-user", ["u"], "JSON object"),
    ]:
        response = await http.post(path, json=body)
        assert error_of(response) == (422, "UNPROCESSABLE_ENTITY"), body
        assert says in response.json()["message"], response.json()


# -- keys, limits, faults ------------------------------------------------------------------------


async def test_keys_are_checked_as_liveblocks_answers(
    base_url: str, emulator: LiveblocksEmulator
) -> None:
    async with AsyncLiveblocks(secret="sk_another_project", base_url=base_url) as other:
        error = await refused(other.get_rooms())
    assert error.status == 403 and "Invalid secret key" in str(error)
    async with httpx.AsyncClient(base_url=base_url) as plain:
        assert error_of(await plain.get("/v2/rooms")) == (401, "MISSING_SECRET_KEY")
        public = {"Authorization": "Bearer pk_prod_abc"}
        assert error_of(await plain.get("/v2/rooms", headers=public)) == (401, "WRONG_KEY_USED")
    many = LiveblocksEmulator(["sk_one", "sk_two"])
    assert many.secret == "sk_one" and many.secrets == {"sk_one", "sk_two"}


async def test_a_broadcast_over_the_size_limit_is_413(
    http: httpx.AsyncClient, emulator: LiveblocksEmulator
) -> None:
    emulator.connect("big")
    limit = emulator.max_message_size
    at_limit = b'"' + b"x" * (limit - 2) + b'"'
    response = await http.post("/v2/rooms/big/broadcast_event", content=at_limit)
    assert response.status_code == 204
    response = await http.post("/v2/rooms/big/broadcast_event", content=at_limit + b" ")
    assert error_of(response) == (413, "PAYLOAD_TOO_LARGE")
    response = await http.post("/v2/rooms/big/broadcast_event", content=b"{not json")
    assert error_of(response) == (422, "UNPROCESSABLE_ENTITY")
    assert len(emulator.broadcasts("big")) == 1


async def test_injected_faults_reach_the_sdk(
    sdk: AsyncLiveblocks, emulator: LiveblocksEmulator, base_url: str
) -> None:
    listener = emulator.connect("room")
    emulator.fail_next(1, 503)
    error = await refused(sdk.broadcast_event("room", body={"n": 1}))
    assert error.status == 503 and "injected failure" in str(error)
    emulator.fail_next(1, 429, retry_after=7, path="/v2/rooms/room/broadcast")
    await sdk.get_active_users("room")  # another path: not this fault's
    async with httpx.AsyncClient(base_url=base_url) as plain:  # the SDK hides the headers
        response = await plain.post(
            "/v2/rooms/room/broadcast-event",
            json={"n": 2},
            headers={"Authorization": f"Bearer {SECRET}"},
        )
    assert (response.status_code, response.headers["retry-after"]) == (429, "7")
    assert response.json()["error"] == "TOO_MANY_REQUESTS"
    emulator.fail_next(1, 503, applied=True)  # Liveblocks broadcast it, then the answer was lost
    assert (await refused(sdk.broadcast_event("room", body={"n": 3}))).status == 503
    assert [item.event["n"] for item in emulator.received("room", listener)] == [3]
    log = [(entry.status, entry.fault) for entry in emulator.request_log]
    assert log == [(503, True), (200, False), (429, True), (503, True)]


async def test_errors_have_liveblocks_shape_even_for_unknown_routes_and_bugs(
    http: httpx.AsyncClient, emulator: LiveblocksEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert error_of(await http.get("/v2/nowhere")) == (404, "NOT_FOUND")
    assert error_of(await http.put("/v2/rooms")) == (405, "METHOD_NOT_ALLOWED")

    def broken(*args: Any) -> None:
        raise RuntimeError("a bug")

    emulator.connect("room")
    monkeypatch.setattr(emulator.store, "broadcast", broken)
    response = await http.post("/v2/rooms/room/broadcast_event", json={})
    assert error_of(response) == (500, "INTERNAL_SERVER_ERROR")
    assert "RuntimeError" in response.json()["message"]


async def test_control_api(http: httpx.AsyncClient, emulator: LiveblocksEmulator) -> None:
    body = {"room": "doc", "user_id": "alice", "info": {"name": "A"}}
    connection = (await http.post("/_emulator/connections", json=body)).json()["connection_id"]
    again = {**body, "info": {"name": "B"}, "connection_id": connection}
    assert (await http.post("/_emulator/connections", json=again)).json() == {
        "connection_id": connection
    }
    await http.post("/v2/rooms/doc/broadcast_event", json={"n": 1})
    received = await http.get("/_emulator/received", params={"room": "doc", "connection": "1"})
    assert received.json() == [{"event": {"n": 1}, "connectionId": -1, "user": None}]
    broadcasts = (await http.get("/_emulator/broadcasts", params={"room": "doc"})).json()
    assert [(b["room"], b["event"], b["delivered"]) for b in broadcasts] == [("doc", {"n": 1}, [1])]
    faults = await http.post(
        "/_emulator/faults", json={"fail_next": 2, "status": 502, "latency": 0}
    )
    assert faults.json() == {"pending": 2, "latency": 0.0}
    assert (await http.delete("/_emulator/faults")).json() == {"pending": 0, "latency": 0.0}
    described = (await http.get("/_emulator")).json()
    assert (described["rooms"], described["broadcasts"]) == (["doc"], 1)
    requests = (await http.get("/_emulator/requests")).json()
    assert requests == {"POST /v2/rooms/{roomId}/broadcast_event": 1}
    left = await http.request(
        "DELETE", "/_emulator/connections", json={"room": "doc", "user_id": "alice"}
    )
    assert left.json() == {"left": 1}
    assert (await http.post("/_emulator/reset")).json() == {"reset": True}
    assert emulator.rooms() == [] and emulator.requests == {}
    for method, path, payload in [
        ("POST", "/_emulator/connections", {"user_id": "a"}),
        ("POST", "/_emulator/nothing", {}),
        ("GET", "/_emulator/received?room=doc&connection=9", None),
        ("POST", "/_emulator/faults", {"fail_next": 1, "status": 200}),
    ]:
        response = await http.request(method, path, json=payload)
        assert response.status_code == 400 and response.json()["message"], path


def test_python_api_refuses_nonsense() -> None:
    for secrets in ("token", "pk_prod_x", "sk_bad/key", []):
        with pytest.raises(ValueError):
            LiveblocksEmulator(secrets)
    with pytest.raises(ValueError):
        LiveblocksEmulator(max_message_size=0)
    emulator = LiveblocksEmulator()
    for bad in (
        lambda: emulator.connect("r" * 129),
        lambda: emulator.connect("r", "u" * 129),
        lambda: emulator.connect("r", "u", info=["not", "a", "dict"]),  # type: ignore[arg-type]
        lambda: emulator.disconnect("r"),
        lambda: emulator.fail_next(1, status=200),
    ):
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(ValueError):
        emulator.latency = -1
