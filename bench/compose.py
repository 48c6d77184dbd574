"""BENCHMARKS.md, put together from the section each benchmark writes.

Why sections: every benchmark in ``bench/`` writes its own part to
``bench/sections/<name>.md`` (committed), and this module joins them under
one introduction. So ``bench/run outbox`` re-measures the outbox and keeps the
publish benchmark's last figures, instead of wiping them; each section says
when and on what it was measured, so figures of different runs are never
mistaken for one run.

It also holds what every benchmark's section and command line are made of,
so they all read and behave alike: ``machine`` and ``bullets`` ("Measured on",
"Settings"), ``table``, ``parser`` and ``add_output``, and ``run`` (measure,
write the section, print the summary).

Run ``bench/run`` (measures, then calls this), or ``python -m bench.compose``
to rebuild BENCHMARKS.md from the sections as they are.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
from collections.abc import Callable, Coroutine, Iterable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "OUTPUT",
    "SECTIONS",
    "SECTIONS_DIR",
    "add_output",
    "bullets",
    "compose",
    "machine",
    "main",
    "parser",
    "run",
    "table",
    "write_section",
]

BENCH = Path(__file__).resolve().parent
OUTPUT = BENCH.parent / "BENCHMARKS.md"
SECTIONS_DIR = BENCH / "sections"
#: The benchmarks, by module name, in the order BENCHMARKS.md shows their sections.
SECTIONS = (
    "redis_publish",
    "nats_publish",
    "pusher_publish",
    "ably_publish",
    "supabase_publish",
    "outbox",
    "gateway_sse",
)

R = TypeVar("R")  # a benchmark's report

INTRO = """\
# Benchmarks

Each section below is written by one benchmark in `bench/` and kept in
`bench/sections/`. `bench/run` installs the dev environment, makes sure
PostgreSQL, Redis and NATS answer, installs soketi (a Pusher-protocol server),
runs every benchmark (about fifteen minutes; the Ably and Supabase ones start
the project's emulator of that vendor in a process of its own) and rebuilds
this file; `bench/run outbox` (or `redis_publish`, `nats_publish`,
`pusher_publish`, `ably_publish`, `supabase_publish`, `gateway_sse`)
re-measures one and keeps the others' last figures, so each section names its
own date and machine.

Every figure stands beside the peer a Python team would otherwise use,
measured in the same run, interleaved with ours: absolute numbers move with
the hardware and with whatever else the machine is doing, ratios much less.
Re-run on your own machine before trusting them.
"""


def machine() -> dict[str, str]:
    """What every section reports it was measured on; benchmarks add their servers."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "CPUs": str(os.cpu_count()),
        "realtime-bridge": metadata.version("realtime-bridge"),
    }


def write_section(name: str, text: str, directory: Path = SECTIONS_DIR) -> Path:
    """Store one benchmark's section, where ``compose`` finds it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.md"
    path.write_text(text.rstrip() + "\n", encoding="utf-8")
    return path


def bullets(title: str, items: dict[str, str]) -> str:
    """A section's "Measured on:" or "Settings:" list, one ``- key: value`` line per item."""
    lines = [f"{title}:\n"] + [f"- {key}: {value}" for key, value in items.items()]
    return "\n".join(lines) + "\n"


def table(headings: Sequence[str], rule: str, rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table: a row of ``headings``, the alignment ``rule`` (``|---|--:|``), ``rows``."""
    lines = ["| " + " | ".join(headings) + " |", rule]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def parser(name: str, description: str | None) -> argparse.ArgumentParser:
    """The command line of ``python -m bench.<name>``: its module docstring as the help."""
    return argparse.ArgumentParser(
        prog=f"python -m bench.{name}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_output(
    parser: argparse.ArgumentParser,
    description: str = "write the section here (default: bench/sections/)",
) -> None:
    """``--output``: where ``run`` writes the section instead of ``bench/sections/``."""
    parser.add_argument("--output", type=Path, help=description)


def run(
    name: str,
    measuring: Coroutine[Any, Any, R],
    render: Callable[[R], str],
    summary: Callable[[R], str],
    output: Path | None,
    unavailable: type[Exception] | tuple[type[Exception], ...] = (),
) -> int:
    """The end of a benchmark's ``main``: measure, write its section, say so; the exit status.

    The section goes to ``output`` as rendered, or where ``compose`` finds it;
    then ``summary`` (the figures, for the terminal) and the path written are
    printed. A server that could not be had (``unavailable``: soketi not
    installed, an emulator that did not start) is a one-line error and exit 1.
    """
    try:
        report = asyncio.run(measuring)
    except unavailable as error:
        print(f"bench.{name}: {error}", file=sys.stderr)
        return 1
    text = render(report)
    if output:
        output.write_text(text, encoding="utf-8")
        path = output
    else:
        path = write_section(name, text)
    print(summary(report))
    print(f"wrote {path}")
    return 0


def _missing(name: str) -> str:
    return f"## `bench/{name}.py`\n\nNot measured yet: run `bench/run {name}`.\n"


def compose(directory: Path = SECTIONS_DIR) -> str:
    """The whole of BENCHMARKS.md: the introduction, then each section in ``SECTIONS`` order."""
    parts = [INTRO]
    for name in SECTIONS:
        path = directory / f"{name}.md"
        parts.append(path.read_text(encoding="utf-8") if path.exists() else _missing(name))
    return "\n".join(part.rstrip() + "\n" for part in parts)


def main(argv: Sequence[str] | None = None) -> int:
    """Rebuild BENCHMARKS.md from the section files: what ``bench/run`` calls last."""
    parser = argparse.ArgumentParser(prog="python -m bench.compose", description=__doc__)
    parser.add_argument("--sections", type=Path, default=SECTIONS_DIR)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    args.output.write_text(compose(args.sections), encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
