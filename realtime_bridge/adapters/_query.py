"""Reading adapter options from a URL's query string, with errors that name the option."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from urllib.parse import parse_qs

from ..errors import ConfigurationError

__all__ = ["QueryOptions"]


class QueryOptions:
    """Typed access to ``?name=value`` options; unknown names are an error, not ignored."""

    def __init__(self, query: str, *, adapter: str, known: AbstractSet[str]) -> None:
        self._adapter = adapter
        self._values = {name: values[-1] for name, values in parse_qs(query).items()}
        unknown = set(self._values) - known
        if unknown:
            raise ConfigurationError(
                f"unknown option(s) {sorted(unknown)} in the {adapter}:// URL; "
                f"known options: {sorted(known)}"
            )

    def integer(self, name: str, default: int, *, minimum: int = 1) -> int:
        raw = self._values.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise ConfigurationError(
                f"option {name!r} of the {self._adapter}:// URL must be an integer >= {minimum}, "
                f"got {raw!r}"
            )
        return value

    def number(self, name: str, default: float) -> float:
        raw = self._values.get(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if value <= 0:
            raise ConfigurationError(
                f"option {name!r} of the {self._adapter}:// URL must be a positive number, "
                f"got {raw!r}"
            )
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self._values.get(name)
        if raw is None:
            return default
        if raw.lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.lower() in {"0", "false", "no", "off"}:
            return False
        raise ConfigurationError(
            f"option {name!r} of the {self._adapter}:// URL must be true or false, got {raw!r}"
        )

    def text(self, name: str, default: str) -> str:
        return self._values.get(name, default)
