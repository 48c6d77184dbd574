"""The chat example: FastAPI, PostgreSQL, the outbox, the relay in the lifespan, presence.

``uvicorn --factory examples.chat.app:create_app`` (README.md beside this file
says more). Two environment variables decide everything:

- ``REALTIME_BRIDGE_DATABASE_URL``: the PostgreSQL database holding the chat's
  tables and the outbox;
- ``REALTIME_BRIDGE_URL``: where events go. On ``memory://`` or ``redis://``
  (with ``?gateway_secret=``) the self-hosted gateway is mounted at
  ``/realtime`` and the page talks to it; on a vendor, the vendor's own
  service carries the events, and ``/realtime/auth`` answers in its format.

Users are whoever ``?user=`` (or the ``X-User`` header) says: it is an example.
Put your own login behind ``current_user``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi import Path as PathParameter
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from starlette.applications import Starlette

from realtime_bridge import Bridge, Member
from realtime_bridge.gateway import Gateway, GatewaySettings, MemoryFeed
from realtime_bridge.gateway import create_app as create_gateway
from realtime_bridge.integrations.channels import ChannelAuth
from realtime_bridge.integrations.fastapi import realtime_lifespan, realtime_router
from realtime_bridge.outbox import Outbox
from realtime_bridge.settings import BridgeSettings

from .rooms import ChatDatabase, presence_channel, room_channel

PAGE = Path(__file__).with_name("static") / "index.html"
USER_NAME = re.compile(r"[a-z0-9_-]{1,32}")
#: Adapters whose browsers connect to the self-hosted gateway rather than to a vendor.
GATEWAY_SCHEMES = frozenset({"memory", "redis", "rediss"})

RoomId = Annotated[int, PathParameter(ge=1, description="a room's number")]


class NewMessage(BaseModel):
    body: str = Field(min_length=1, max_length=2000)


def current_user(request: Request) -> str | None:
    """Who is asking: ``?user=`` or ``X-User``. No password: an example's stand-in for a login."""
    user = request.query_params.get("user") or request.headers.get("x-user")
    if user is None:
        return None
    if not USER_NAME.fullmatch(user):
        raise HTTPException(400, f"user must be 1-32 of a-z 0-9 _ -, got {user[:40]!r}")
    return user


def signed_in(user: Annotated[str | None, Depends(current_user)]) -> str:
    if user is None:
        raise HTTPException(401, "say who you are: ?user=NAME or the X-User header")
    return user


SignedIn = Annotated[str, Depends(signed_in)]


async def room_member(room_id: RoomId, user: SignedIn, request: Request) -> str:
    """The user, if a member of the room (403 otherwise)."""
    db: ChatDatabase = request.app.state.db
    if not await db.is_member(room_id, user):
        raise HTTPException(403, f"join room {room_id} first: POST /rooms/{room_id}/join")
    return user


RoomMember = Annotated[str, Depends(room_member)]


def channel_rules(db: ChatDatabase) -> ChannelAuth:
    """Who may join which channel: a room's members, and in its presence as themselves."""
    channels = ChannelAuth()

    async def as_member(user: str, room_id: int) -> Member | None:
        """The user as a Member of the room, or None (refused) if they have not joined it."""
        return Member(user, {"name": user}) if await db.is_member(room_id, user) else None

    # Declared first: a pattern without a prefix (below) would match presence-room.N too.
    @channels.channel("presence-room.{room_id:int}")
    async def room_presence(user: str, room_id: int) -> Member | None:
        """Members enter the room's presence as themselves."""
        return await as_member(user, room_id)

    @channels.channel("room.{room_id:int}")
    async def room(user: str, room_id: int) -> Member | None:
        """Members read the room's messages. Granted as the member, not just True: that is
        the identity vendors give the browser (Ably's clientId), and Liveblocks needs one."""
        return await as_member(user, room_id)

    return channels


def gateway_for(bridge: Bridge, settings: BridgeSettings) -> Starlette | None:
    """The gateway's ASGI app when browsers connect to it (memory, Redis); None for vendors."""
    scheme = bridge.primary.scheme
    if scheme not in GATEWAY_SCHEMES:
        return None
    if scheme == "memory":  # the gateway serves this process's memory adapter
        return create_gateway(GatewaySettings(), feed=MemoryFeed(bridge.primary))
    return create_gateway(GatewaySettings(redis_url=settings.url))  # the same keys as the relay


def postgres_url(database_url: str) -> str:
    if not database_url.startswith(("postgresql://", "postgres://")):
        raise ValueError(
            "REALTIME_BRIDGE_DATABASE_URL: the chat keeps its messages in PostgreSQL; set it to "
            f"postgresql://USER@HOST:5432/DATABASE (it names a {database_url.partition(':')[0]}: "
            "database, the outbox's default when it is unset)"
        )
    return database_url


def create_app() -> FastAPI:
    """The chat app, its vendor and database named by the environment alone."""
    settings = BridgeSettings()
    outbox = Outbox.from_settings(settings)
    bridge = outbox.bridge
    db = ChatDatabase(postgres_url(outbox.database_url), outbox)
    gateway_app = gateway_for(bridge, settings)

    @asynccontextmanager
    async def chat_lifespan(app: FastAPI) -> AsyncIterator[None]:
        await db.open()
        try:
            yield
        finally:
            await db.aclose()
            if gateway_app is not None:
                await gateway_app.state.gateway.aclose()  # a mounted app's lifespan does not run

    # The outbox's tables, then the relay, then ours; in reverse on shutdown.
    app = FastAPI(lifespan=realtime_lifespan(outbox, lifespan=chat_lifespan, migrate=True))
    app.state.db = db
    app.state.bridge = bridge
    # /realtime/auth: the vendor's credentials for the channels the callbacks grant.
    app.include_router(realtime_router(bridge, channels=channel_rules(db), get_user=current_user))
    add_chat_routes(app, db, bridge, gateway="/realtime" if gateway_app is not None else None)
    if gateway_app is not None:
        gateway: Gateway = gateway_app.state.gateway
        app.state.gateway = gateway  # the server ends its streams first when it stops
        app.mount("/realtime", gateway_app)  # after /realtime/auth, which stays ours
    return app


def add_chat_routes(app: FastAPI, db: ChatDatabase, bridge: Bridge, gateway: str | None) -> None:
    """The page and the room routes; the room routes are for the room's members only."""

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text("utf-8"), headers={"Cache-Control": "no-store"})

    @app.get("/config")
    async def config() -> dict[str, Any]:
        """What the page needs to know: the gateway's path, or the vendor to load an SDK for."""
        return {"vendor": bridge.primary.scheme, "gateway": gateway}

    @app.post("/rooms/{room_id}/join")
    async def join(room_id: RoomId, user: SignedIn) -> dict[str, Any]:
        """Open to anyone here; a real app checks an invitation first."""
        await db.join(room_id, user)
        channels = [room_channel(room_id), presence_channel(room_id)]
        return {"room_id": room_id, "user": user, "channels": channels}

    @app.get("/rooms/{room_id}/messages")
    async def messages(room_id: RoomId, user: RoomMember) -> list[dict[str, Any]]:
        return [message.as_data() for message in await db.recent(room_id)]

    @app.post("/rooms/{room_id}/messages", status_code=201)
    async def send(room_id: RoomId, new: NewMessage, user: RoomMember) -> dict[str, Any]:
        message, event = await db.post(room_id, user, new.body)
        return {"message": message.as_data(), "event_id": event.id}

    @app.get("/rooms/{room_id}/members")
    async def members(room_id: RoomId, user: RoomMember) -> list[dict[str, Any]]:
        """Who is in the room now: the presence channel's members, from the adapter."""
        present = await bridge.presence(presence_channel(room_id))
        return [{"id": m.id, "name": (m.info or {}).get("name", m.id)} for m in present]
