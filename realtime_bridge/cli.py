"""The ``realtime-bridge`` command line: publish, inspect, check the configuration, demo.

Every subcommand reads the same configuration as ``Bridge.from_settings()``
(``REALTIME_BRIDGE_*`` variables, then ``realtime_bridge.toml``), so what the
CLI reaches is what the application reaches. ``--url`` overrides only the
primary adapter, for a quick look at another server.

An operator reads the output, so an expected failure (bad configuration, a
refused password, an unreachable server, a bad argument) is one line on
stderr, ``realtime-bridge: error: <message>``, never a traceback; the library
has already redacted any secret in that message. Exit codes: 0 success,
1 ``doctor`` found an unreachable adapter, 2 an error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import tomllib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from pydantic import SecretStr, ValidationError

from . import __version__
from .adapters.base import Adapter, HistoryPage, Member, Occupancy
from .bridge import Bridge, PublishReceipt
from .catalog import EventCatalog
from .cli_costs import add_costs_commands
from .cli_demo import add_demo_commands
from .cli_emulate import add_emulate_commands
from .cli_gateway import add_gateway_commands
from .cli_outbox import OutboxCommands, add_outbox_commands
from .errors import ConfigurationError, RealtimeBridgeError
from .events import Event
from .logs import JsonFormatter
from .settings import BridgeSettings, adapter_from_url

__all__ = ["main", "render_table"]

PROG = "realtime-bridge"
EXIT_OK = 0
EXIT_UNREACHABLE = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
DEFAULT_PING_TIMEOUT = 5.0

Handler = Callable[[argparse.Namespace], int]


# -- output helpers ----------------------------------------------------------


def one_line(text: str) -> str:
    """Collapse whitespace so a message can never spill over several lines."""
    return " ".join(text.split())


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table with aligned columns: readable in a terminal, a log or a pipe."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    rule = ["-" * width for width in widths]
    lines = [cells[0], rule, *cells[1:]]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _emit(args: argparse.Namespace, machine: object, human: str) -> None:
    """Print JSON with ``--json`` (for scripts), the readable text otherwise."""
    print(json.dumps(machine, indent=2) if args.json else human)


def _size(n: int) -> str:
    for unit, scale in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# -- configuration -----------------------------------------------------------


def _settings(args: argparse.Namespace) -> BridgeSettings:
    """The application's settings, with ``--url`` replacing only the primary adapter."""
    overrides: dict[str, Any] = {}
    if getattr(args, "url", None):
        overrides["url"] = SecretStr(args.url)
    try:
        return BridgeSettings(**overrides)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"cannot read realtime_bridge.toml: {exc}") from exc


def _bridge(args: argparse.Namespace) -> Bridge:
    return Bridge.from_settings(_settings(args))


def _describe_validation(exc: ValidationError) -> str:
    """Name each bad setting, the rule and the value; never a value of a ``*url*`` setting."""
    problems = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or "(settings)"
        shown = "" if "url" in field else f" (got {error.get('input')!r:.80})"
        problems.append(f"{field}: {error['msg']}{shown}")
    return f"invalid {exc.title}: " + "; ".join(problems)


# -- publish -----------------------------------------------------------------


def _parse_data(raw: str | None) -> object:
    if raw is None:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"DATA_JSON is not valid JSON: {exc}") from None


def cmd_publish(args: argparse.Namespace) -> int:
    """Publish one event, built before any connection so a bad event costs no I/O."""
    fields: dict[str, Any] = {
        "channel": args.channel,
        "type": args.type,
        "data": _parse_data(args.data),
    }
    if args.id is not None:
        fields["id"] = args.id
    event = Event(**fields)

    async def publish() -> PublishReceipt:
        async with _bridge(args) as bridge:
            return await bridge.publish(event)

    receipt = asyncio.run(publish())
    _emit(args, _receipt_json(event, receipt), _receipt_text(event, receipt))
    return EXIT_OK


def _receipt_json(event: Event, receipt: PublishReceipt) -> dict[str, object]:
    return {
        "id": event.id,
        "channel": event.channel,
        "type": event.type,
        "adapter": receipt.adapter,
        "published": receipt.published,
        "duplicates": list(receipt.duplicates),
        "failed_over": receipt.failed_over,
    }


def _receipt_text(event: Event, receipt: PublishReceipt) -> str:
    where = f"via {receipt.adapter}" + (" (failed over)" if receipt.failed_over else "")
    if receipt.duplicates:
        return f"duplicate {event.id} dropped {where}: an event with this id was already published"
    return f"published {event.type} to {event.channel} {where}: id {event.id}"


# -- presence, history, occupancy -----------------------------------------------


def cmd_presence(args: argparse.Namespace) -> int:
    """Who is on a channel now, as the primary adapter sees it (clients enter, not the CLI)."""

    async def read() -> list[Member]:
        async with _bridge(args) as bridge:
            return await bridge.presence(args.channel)

    members = asyncio.run(read())
    machine = {
        "channel": args.channel,
        "members": [{"id": m.id, "info": m.info} for m in members],
    }
    _emit(args, machine, _presence_text(args.channel, members))
    return EXIT_OK


def _presence_text(channel: str, members: list[Member]) -> str:
    if not members:
        return f"{channel}: no members present"
    rows = [(m.id, json.dumps(m.info, ensure_ascii=False)) for m in members]
    return f"{channel}: {_plural(len(members), 'member')}\n" + render_table(["id", "info"], rows)


def cmd_history(args: argparse.Namespace) -> int:
    """One page of history; the text output names the cursor that fetches the next page."""

    async def read() -> HistoryPage:
        async with _bridge(args) as bridge:
            return await bridge.history(
                args.channel, limit=args.limit, before=args.before, after=args.after
            )

    page = asyncio.run(read())
    machine = {
        "channel": args.channel,
        "events": [event.model_dump(mode="json") for event in page],
        "has_more": page.has_more,
    }
    _emit(args, machine, _history_text(args, page))
    return EXIT_OK


def _history_text(args: argparse.Namespace, page: HistoryPage) -> str:
    if not page.events:
        return f"{args.channel}: no events"
    rows = [(e.id, e.type, e.data_json.decode()) for e in page]
    text = f"{args.channel}: {_plural(len(page), 'event')}, oldest first\n"
    text += render_table(["id", "type", "data"], rows)
    if page.has_more and args.after is not None:
        text += f"\nnewer events remain: --after {page.events[-1].id}"
    elif page.has_more:
        text += f"\nolder events remain: --before {page.events[0].id}"
    return text


def cmd_occupancy(args: argparse.Namespace) -> int:
    """Subscriber and member counts; ``unknown`` where the adapter cannot tell."""

    async def read() -> Occupancy:
        async with _bridge(args) as bridge:
            return await bridge.occupancy(args.channel)

    occ = asyncio.run(read())
    machine = {"channel": occ.channel, "subscribers": occ.subscribers, "members": occ.members}
    _emit(args, machine, _occupancy_text(occ))
    return EXIT_OK


def _occupancy_text(occ: Occupancy) -> str:
    def count(n: int | None, word: str) -> str:
        return f"unknown {word}s" if n is None else _plural(n, word)

    return f"{occ.channel}: {count(occ.subscribers, 'subscriber')}, {count(occ.members, 'member')}"


# -- doctor ------------------------------------------------------------------


async def _build_adapters(settings: BridgeSettings) -> list[tuple[str, Adapter]]:
    """Every configured adapter with its role; closes the ones built if a later URL is bad."""
    urls = [("primary", settings.url)]
    urls += [("fallback", url) for url in settings.fallback_urls]
    urls += [("shadow", url) for url in settings.shadow_urls]
    built: list[tuple[str, Adapter]] = []
    try:
        for role, url in urls:
            try:
                built.append((role, adapter_from_url(url.get_secret_value())))
            except ConfigurationError as exc:
                raise ConfigurationError(f"{role} adapter: {exc}") from exc
    except BaseException:
        await _close_all(adapter for _, adapter in built)
        raise
    return built


async def _close_all(adapters: Iterable[Adapter]) -> None:
    for adapter in adapters:
        await adapter.aclose()


async def _reach(adapter: Adapter, seconds: float, private: str | None = None) -> str | None:
    """``None`` if the adapter answered its ping in time (and, given a ``private`` channel
    and an adapter that can tell, delivered a private probe there), else why not."""
    try:
        async with asyncio.timeout(seconds):
            await adapter.ping()
        probe = getattr(adapter, "verify_private_delivery", None)
        if private is not None and probe is not None:
            check = await probe(private, timeout=seconds)
            if not check:
                return one_line(f"private delivery on {private}: {check.detail}")
    except TimeoutError:
        return f"no answer within {seconds:g}s"
    except RealtimeBridgeError as exc:
        message = str(exc).removeprefix(f"{exc.adapter}: ") if exc.adapter else str(exc)
        return one_line(message)
    except Exception as exc:  # an adapter bug; its text is not known to be redacted
        return f"unexpected {type(exc).__name__} (the adapter should raise RealtimeBridgeError)"
    return None


async def _diagnose(args: argparse.Namespace) -> list[tuple[str, Adapter, str | None]]:
    adapters = await _build_adapters(_settings(args))
    try:
        private = getattr(args, "private_channel", None)
        problems = await asyncio.gather(*(_reach(a, args.timeout, private) for _, a in adapters))
    finally:
        await _close_all(adapter for _, adapter in adapters)
    return [
        (role, adapter, problem)
        for (role, adapter), problem in zip(adapters, problems, strict=True)
    ]


def cmd_doctor(args: argparse.Namespace) -> int:
    """Reach every configured adapter and tabulate what works; exit 1 if any is unreachable."""
    checks = asyncio.run(_diagnose(args))
    machine = [_check_json(role, adapter, problem) for role, adapter, problem in checks]
    headers = ["role", "adapter", "reachable", "capabilities", "limits"]
    rows = [_check_row(role, adapter, problem) for role, adapter, problem in checks]
    _emit(args, machine, render_table(headers, rows))
    failed = [f"{adapter.name}: {problem}" for _, adapter, problem in checks if problem]
    if failed:
        _error(f"{len(failed)} of {len(checks)} adapter(s) unreachable: " + "; ".join(failed))
        return EXIT_UNREACHABLE
    return EXIT_OK


def _capabilities(adapter: Adapter) -> list[str]:
    return sorted(str(capability) for capability in adapter.capabilities)


def _check_row(role: str, adapter: Adapter, problem: str | None) -> list[str]:
    limits = adapter.limits
    return [
        role,
        adapter.name,
        problem or "ok",
        " ".join(_capabilities(adapter)),
        f"payload {_size(limits.max_payload_bytes)}, batch {limits.max_events_per_batch}",
    ]


def _check_json(role: str, adapter: Adapter, problem: str | None) -> dict[str, object]:
    return {
        "role": role,
        "adapter": adapter.name,
        "reachable": problem is None,
        "error": problem,
        "capabilities": _capabilities(adapter),
        "limits": {
            "max_payload_bytes": adapter.limits.max_payload_bytes,
            "max_events_per_batch": adapter.limits.max_events_per_batch,
        },
    }


# -- schema and demo ------------------------------------------------------------


@contextlib.contextmanager
def _working_directory_importable() -> Iterator[None]:
    """Let ``schema myapp.events`` import from the current directory, as ``python -m`` does."""
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the catalog clients generate types from; a module with no events is a mistake."""
    with _working_directory_importable():
        catalog = EventCatalog.from_module(args.module)
    if not len(catalog):
        raise ConfigurationError(
            f"module {args.module!r} declares no typed events (subclasses of Event whose "
            'type is a Literal, e.g. type: Literal["order.updated"] = "order.updated")'
        )
    print(json.dumps(catalog.json_schema(), indent=2))
    return EXIT_OK


# -- parser ------------------------------------------------------------------


def _add(
    commands: Any,
    name: str,
    handler: Handler,
    help_text: str,
    parents: Sequence[argparse.ArgumentParser] = (),
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help_text, description=help_text, parents=list(parents)
    )
    parser.set_defaults(handler=handler)
    return parser


def _seconds(raw: str) -> float:
    """A positive number of seconds; argparse turns the error into a usage message."""
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {raw!r}")
    return value


def _common_options() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """Options several subcommands share: ``--url`` and ``--json``."""
    url = argparse.ArgumentParser(add_help=False)
    url.add_argument(
        "--url", help="primary adapter URL, overriding REALTIME_BRIDGE_URL and the TOML file"
    )
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print machine-readable JSON")
    return url, as_json


def _add_reading_commands(commands: Any, shared: list[argparse.ArgumentParser]) -> None:
    presence = _add(commands, "presence", cmd_presence, "list the members present", shared)
    presence.add_argument("channel")
    history = _add(commands, "history", cmd_history, "show recent events, oldest first", shared)
    history.add_argument("channel")
    history.add_argument(
        "--limit", type=int, default=50, metavar="N", help="at most N events (default 50)"
    )
    cursor = history.add_mutually_exclusive_group()
    cursor.add_argument("--before", metavar="ID", help="events published before this event id")
    cursor.add_argument("--after", metavar="ID", help="events published after this event id")
    occupancy = _add(commands, "occupancy", cmd_occupancy, "count subscribers and members", shared)
    occupancy.add_argument("channel")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; separate from ``main`` so the docs can show its help."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Publish and inspect real-time events through realtime_bridge."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", action="store_true", help="hide warnings")
    loudness.add_argument("-v", "--verbose", action="store_true", help="also show info logs")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    url, as_json = _common_options()
    shared = [url, as_json]

    publish = _add(commands, "publish", cmd_publish, "publish one event", shared)
    publish.add_argument("channel")
    publish.add_argument("type")
    publish.add_argument("data", nargs="?", metavar="DATA_JSON", help="a JSON object (default {})")
    publish.add_argument("--id", help="event id, the idempotency key (default: a new UUIDv7)")
    _add_reading_commands(commands, shared)
    doctor = _add(commands, "doctor", cmd_doctor, "check every configured adapter", shared)
    doctor.add_argument(
        "--timeout", type=_seconds, default=DEFAULT_PING_TIMEOUT, help="seconds per adapter"
    )
    doctor.add_argument(
        "--private-channel",
        metavar="CHANNEL",
        help="also check that a private broadcast on CHANNEL arrives (Supabase drops private "
        "messages failing its row-level security silently)",
    )
    schema = _add(commands, "schema", cmd_schema, "print the JSON Schema of a module's events")
    schema.add_argument("module", help="dotted module name, e.g. myapp.events")
    outbox = OutboxCommands(_settings, _emit, render_table)
    add_outbox_commands(commands, _add, shared, outbox)
    add_emulate_commands(commands, _add)
    add_gateway_commands(commands, _add)
    add_costs_commands(commands, _add, shared)
    add_demo_commands(commands, _add)
    return parser


# -- entry point ---------------------------------------------------------------


class _OneLineFormatter(logging.Formatter):
    """``realtime-bridge: warning: <message>``; tracebacks left out, as for errors."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{PROG}: {record.levelname.lower()}: {one_line(record.getMessage())}"


@contextlib.contextmanager
def _logging_to_stderr(level: int, *, as_json: bool = False) -> Iterator[None]:
    """Send the library's log records to the current stderr for one command, then undo it."""
    logger = logging.getLogger("realtime_bridge")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else _OneLineFormatter())
    previous_level, previous_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
        logger.propagate = previous_propagate


def _log_level(args: argparse.Namespace) -> int:
    if args.verbose:
        return logging.INFO
    if args.quiet or getattr(args, "narrated", False):  # the demo narrates its own failures
        return logging.ERROR
    return logging.WARNING


def _error(message: str) -> None:
    print(f"{PROG}: error: {one_line(message)}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    """Run the command; expected failures become one stderr line, bugs keep their traceback."""
    handler: Handler = args.handler
    try:
        return handler(args)
    except ValidationError as exc:  # before ValueError: pydantic's error is one too
        _error(_describe_validation(exc))
    except (RealtimeBridgeError, ValueError) as exc:
        _error(str(exc))
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    return EXIT_ERROR


def _exit_code(code: object) -> int:
    if code is None:
        return EXIT_OK
    return code if isinstance(code, int) else EXIT_ERROR


def main(argv: list[str] | None = None) -> int:
    """Run one command and return its exit code (tests call this; the script exits with it)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse already printed
        return _exit_code(exc.code)
    with _logging_to_stderr(_log_level(args), as_json=getattr(args, "log_json", False)):
        return _run(args)


if __name__ == "__main__":
    raise SystemExit(main())
