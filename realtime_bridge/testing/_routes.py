"""The emulators' REST routing: path templates matched segment by segment.

Each emulator lists its routes (``method``, ``/template/{param}``, handler
name). ``find_route`` also returns another method's route when only the
method is wrong, so the emulator answers 405 rather than 404, as vendors do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import unquote

__all__ = ["Route", "find_route"]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    handler: str

    def decode(self, name: str, segment: str) -> str:
        """A path parameter's value (percent-decoded)."""
        return unquote(segment)

    def match(self, segments: Sequence[str]) -> dict[str, str] | None:
        """The parameters if ``segments`` fit the template, else None."""
        parts = self.template.split("/")[1:]
        if len(parts) != len(segments):
            return None
        params: dict[str, str] = {}
        for part, segment in zip(parts, segments, strict=True):
            if part.startswith("{"):
                params[part[1:-1]] = self.decode(part[1:-1], segment)
            elif part != segment:
                return None
        return params


R = TypeVar("R", bound=Route)


def find_route(
    routes: Sequence[R], method: str, path: str
) -> tuple[R | None, dict[str, str] | None]:
    """The route for ``path`` (another method's if only the method is wrong) and its params."""
    segments = path.split("/")[1:]
    other = None
    for route in routes:
        params = route.match(segments)
        if params is None:
            continue
        if route.method == method:
            return route, params
        other = route
    return other, None
