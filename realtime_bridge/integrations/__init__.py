"""Framework integrations: the library in the web frameworks its users already run.

- ``realtime_bridge.integrations.channels``: ``ChannelAuth``, channel authorisation
  callbacks declared by pattern (``"orders.{order_id}"``), refusing by default. It
  knows no framework, so every integration below shares it.
- ``realtime_bridge.integrations.credentials``: what a browser gets once its channels
  are granted, in the configured vendor's format (Pusher auth string, Ably
  TokenRequest, Supabase JWT, gateway token, Liveblocks access token).
- ``realtime_bridge.integrations.starlette``: the client-auth and webhook endpoints
  as Starlette routes, and a lifespan that runs the outbox relay in-process.
- ``realtime_bridge.integrations.fastapi``: the same endpoints as a FastAPI
  ``APIRouter`` (``pip install 'realtime-bridge[fastapi]'``), the user found
  through a FastAPI dependency.
- ``realtime_bridge.integrations.sqlalchemy``: events written in an ORM
  session's own transaction, enqueued explicitly or declared on the model and
  written by an ``after_flush`` hook.
- ``realtime_bridge.integrations.django``: events written through Django's
  connection inside ``transaction.atomic``; ``integrations.django_app`` adds the
  outbox migration and the relay's management command.

Nothing is imported here, so importing one integration never imports another
framework.
"""

from __future__ import annotations

__all__: list[str] = []
