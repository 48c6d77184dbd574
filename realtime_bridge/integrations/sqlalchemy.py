"""SQLAlchemy: events written in the ORM session's own transaction.

Two ways in, both landing in the transaction that writes the rows, so the
row and its event commit together or not at all:

- **Explicit**: ``await outbox.enqueue(session, event)`` takes a ``Session``
  or an ``AsyncSession`` as it is. Synchronous code, which cannot await,
  calls ``enqueue(outbox, session, event)`` here instead.
- **Declared on the model**: ``@realtime(channel="orders.{id}", type=...)``
  says what a mapped class publishes when its rows are inserted, updated or
  deleted, and ``publish_changes(SessionLocal, outbox)`` hooks the session's
  ``after_flush``: every declared instance the flush wrote becomes one event,
  inserted on the flush's own connection. ``after_flush`` rather than
  ``before_commit``: the event is written next to the row it describes, so a
  savepoint that rolls back takes its events with it, and an instance flushed
  twice (inserted, then updated) publishes both changes in order.

A declaration is checked when the class is decorated (unknown attributes,
changes or types raise ``ConfigurationError`` at import); an event that
cannot be built from an instance (a channel attribute that is ``None``, data
that is not JSON, an event over an adapter's limit) raises inside the flush,
so the transaction rolls back and nothing is half-written.

Bulk statements (``session.execute(update(Order)...)``) bypass the unit of
work and so publish nothing: enqueue their events explicitly.
"""

from __future__ import annotations

import builtins
import inspect
import string
from collections.abc import Callable, Collection, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, TypeVar, get_args

from pydantic import BaseModel
from sqlalchemy import event as sa_event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstanceState, Mapper, Session, scoped_session, sessionmaker

from ..errors import ConfigurationError, InvalidChannel, InvalidEvent
from ..events import Event, validate_channel
from ..outbox import Outbox

__all__ = [
    "CHANGES",
    "Change",
    "RealtimeDeclaration",
    "declaration_of",
    "enqueue",
    "publish_changes",
    "realtime",
]

Change: TypeAlias = Literal["insert", "update", "delete"]
#: The changes a declaration can publish, in the order a flush's events are written.
CHANGES: tuple[Change, ...] = get_args(Change)

M = TypeVar("M")
Data: TypeAlias = Mapping[str, Any] | BaseModel
SessionTarget: TypeAlias = (
    Session
    | type[Session]
    | sessionmaker[Any]
    | scoped_session[Any]
    | AsyncSession
    | async_sessionmaker[Any]
)


# -- explicit enqueue from synchronous code -------------------------------------------------


def enqueue(
    outbox: Outbox, conn: Session | Connection | scoped_session[Any], *events: Event
) -> None:
    """Store ``events`` in the open transaction of a synchronous ``Session`` or ``Connection``.

    ``Outbox.enqueue`` is a coroutine, but on a synchronous connection it never
    suspends: it validates, then runs one blocking ``execute``. So it is driven
    to completion here without an event loop, which also works inside a running
    loop's thread and inside SQLAlchemy's event hooks, where nothing can await.
    """
    if inspect.iscoroutinefunction(getattr(conn, "execute", None)):
        raise ConfigurationError(
            f"enqueue() is for synchronous sessions and connections; a "
            f"{type(conn).__name__} is asynchronous: use `await outbox.enqueue(conn, ...)`"
        )
    _complete_without_suspending(outbox.enqueue(conn, *events))


def _complete_without_suspending(coroutine: Coroutine[Any, Any, None]) -> None:
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()  # it waited for I/O: the connection was asynchronous after all
    raise ConfigurationError(
        "the outbox insert waited for I/O: pass a synchronous connection to enqueue()"
    )


# -- declaring what a model publishes ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RealtimeDeclaration:
    """What a mapped class publishes on each change (built by ``@realtime``)."""

    model: str
    channel: str | Callable[[Any], str]
    #: The event type of each change published; a change not in here publishes nothing.
    types: Mapping[Change, str]
    data: Callable[[Any], Data] | None
    #: The attribute names ``channel`` (a template) formats.
    fields: tuple[str, ...]

    def event(self, instance: object, change: Change) -> Event:
        """The event of ``change`` on ``instance``, or ``InvalidEvent`` naming the model."""
        where = f"@realtime on {self.model} ({change})"
        try:
            return Event(
                channel=self._channel(instance),
                type=self.types[change],
                data=self.data(instance) if self.data else _columns(instance, change),
            )
        except InvalidEvent as exc:
            if type(exc) in (InvalidEvent, InvalidChannel):
                raise type(exc)(f"{where}: {exc}") from exc
            raise

    def _channel(self, instance: object) -> str:
        if callable(self.channel):
            return self.channel(instance)
        values = {name: getattr(instance, name) for name in self.fields}
        if missing := [name for name, value in values.items() if value is None]:
            raise InvalidChannel(
                f"channel {self.channel!r} needs {', '.join(missing)}, which is None"
            )
        return self.channel.format(**values)


def realtime(
    *,
    channel: str | Callable[[M], str],
    type: str | Mapping[Change, str],
    on: Collection[Change] | None = None,
    data: Callable[[M], Data] | None = None,
) -> Callable[[type[M]], type[M]]:
    """Declare the events a mapped class publishes when its rows change.

    ``channel``: a template formatted with the instance's attributes
    (``"orders.{id}"``), or a function of the instance. ``type``: one event type
    for every change in ``on`` (default ``("insert", "update")``), or one per
    change (``{"insert": "order.created", "delete": "order.deleted"}``; ``on``
    then defaults to its keys). ``data``: the event's data from the instance
    (a dict or a pydantic model), by default every mapped column, so a client
    can rebuild its state from one event. Takes effect in the sessions
    ``publish_changes`` watches.
    """

    def declare(cls: builtins.type[M]) -> builtins.type[M]:  # `type` is the event type here
        setattr(cls, "__realtime__", _declaration(cls, channel, type, on, data))  # noqa: B010
        return cls

    return declare


def _declaration(
    cls: type[Any],
    channel: str | Callable[[Any], str],
    type_: str | Mapping[Change, str],
    on: Collection[Change] | None,
    data: Callable[[Any], Data] | None,
) -> RealtimeDeclaration:
    where = f"@realtime on {cls.__name__}"
    if sa_inspect(cls, raiseerr=False) is None:
        raise ConfigurationError(
            f"{where}: the class is not mapped; put @realtime above any mapping decorator"
        )
    types = _types(where, type_, on)
    fields: tuple[str, ...] = ()
    if isinstance(channel, str):
        fields = _template_fields(where, cls, channel)
    elif not callable(channel):
        raise ConfigurationError(f"{where}: channel must be a template string or a function")
    if data is not None and not callable(data):
        raise ConfigurationError(f"{where}: data must be a function of the instance")
    return RealtimeDeclaration(cls.__name__, channel, types, data, fields)


def _types(
    where: str, type_: str | Mapping[Change, str], on: Collection[Change] | None
) -> dict[Change, str]:
    """One event type per published change, each checked against the envelope's rule."""
    if isinstance(type_, str):
        changes = ("insert", "update") if on is None else on
        by_change: Mapping[Change, str] = dict.fromkeys(changes, type_)
    else:
        by_change = type_
        if on is not None and (unnamed := [c for c in on if c not in by_change]):
            raise ConfigurationError(f"{where}: on names {unnamed} but type gives them no type")
        changes = by_change.keys() if on is None else on
    if unknown := [c for c in by_change if c not in CHANGES]:
        raise ConfigurationError(f"{where}: unknown change {unknown}; the changes are {CHANGES}")
    if not changes:
        raise ConfigurationError(f"{where}: on is empty, so nothing would be published")
    for change in changes:
        try:
            Event(channel="check", type=by_change[change])
        except InvalidEvent as exc:
            raise ConfigurationError(f"{where}: {change}: {exc}") from exc
    return {change: by_change[change] for change in CHANGES if change in changes}


def _template_fields(where: str, cls: type[Any], template: str) -> tuple[str, ...]:
    """The attribute names ``template`` formats, checked on ``cls``; the literal parts too."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ConfigurationError(f"{where}: channel {template!r}: {exc}") from exc
    for name in names:
        if not name.isidentifier():
            raise ConfigurationError(
                f"{where}: channel {template!r} formats {{{name}}}; a template names attributes "
                "of the instance ({id}), use a function for anything else"
            )
        if not hasattr(cls, name):
            raise ConfigurationError(
                f"{where}: channel {template!r} names {name!r}, which {cls.__name__} does not have"
            )
    try:
        validate_channel(template.format(**dict.fromkeys(names, 0)))
    except (InvalidChannel, ValueError) as exc:
        raise ConfigurationError(f"{where}: channel {template!r}: {exc}") from exc
    return tuple(dict.fromkeys(names))


def _columns(instance: object, change: Change) -> dict[str, Any]:
    """Every mapped column of ``instance``, for ``data`` when the model names no serialiser.

    A deleted row cannot be reloaded, so a delete carries the values loaded before it.
    """
    state: InstanceState[Any] = sa_inspect(instance)
    keys = [attribute.key for attribute in state.mapper.column_attrs]
    if change == "delete":
        return {key: state.dict[key] for key in keys if key in state.dict}
    return {key: getattr(instance, key) for key in keys}


def declaration_of(instance: object) -> RealtimeDeclaration | None:
    """The ``@realtime`` declaration of ``instance``'s class, if it has one."""
    declared = getattr(type(instance), "__realtime__", None)
    return declared if isinstance(declared, RealtimeDeclaration) else None


# -- writing the events of a flush ----------------------------------------------------------


def publish_changes(target: SessionTarget, outbox: Outbox) -> Callable[[], None]:
    """Write the events of declared models after every flush of ``target``'s sessions.

    ``target``: a ``sessionmaker`` (the usual choice), a ``scoped_session``, one
    ``Session`` or ``AsyncSession``, a ``Session`` subclass (every session of it),
    or an ``async_sessionmaker`` built with its own ``sync_session_class``.
    Returns a function that removes the hook again.
    """
    listened = _listen_target(target)

    def after_flush(session: Session, _flush_context: object) -> None:
        _write_flush_events(session, outbox)

    try:
        sa_event.listen(listened, "after_flush", after_flush)
    except InvalidRequestError as exc:
        raise ConfigurationError(
            f"publish_changes cannot watch a {type(target).__name__}: pass a sessionmaker, "
            "scoped_session, Session, AsyncSession or a Session subclass"
        ) from exc

    def stop() -> None:
        sa_event.remove(listened, "after_flush", after_flush)

    return stop


def _listen_target(target: SessionTarget) -> Any:
    """What SQLAlchemy's events accept for ``target`` (the sync side of the async forms)."""
    if isinstance(target, AsyncSession):
        return target.sync_session
    if isinstance(target, async_sessionmaker):
        session_class = target.kw.get("sync_session_class", Session)
        if session_class is Session:
            raise ConfigurationError(
                "publish_changes on an async_sessionmaker needs its own session class, or the "
                "hook would watch every Session of the process: build it with "
                "async_sessionmaker(engine, sync_session_class=YourSession), a Session subclass"
            )
        return session_class
    return target


def _write_flush_events(session: Session, outbox: Outbox) -> None:
    """Insert the events of this flush on the connection of each model's bind."""
    batches: dict[Connection, list[Event]] = {}
    for instance, change in _flushed_changes(session):
        declared = declaration_of(instance)
        if declared is None or change not in declared.types:
            continue
        mapper: Mapper[Any] = sa_inspect(instance).mapper
        connection = session.connection(bind_arguments={"mapper": mapper})
        batches.setdefault(connection, []).append(declared.event(instance, change))
    for connection, events in batches.items():
        try:
            enqueue(outbox, connection, *events)
        except InvalidEvent as exc:  # over an adapter's limit: say which models were flushed
            channels = sorted({e.channel for e in events})
            exc.add_note(f"raised by the @realtime events of this flush, channels {channels}")
            raise


def _flushed_changes(session: Session) -> Iterator[tuple[object, Change]]:
    """What the flush wrote; in ``after_flush`` the session still shows its pre-flush state."""
    for instance in session.new:
        yield instance, "insert"
    for instance in session.dirty:
        if session.is_modified(instance, include_collections=False):
            yield instance, "update"
    for instance in session.deleted:
        yield instance, "delete"
