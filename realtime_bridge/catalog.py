"""A catalog of typed events: decode by ``type``, and publish their JSON Schema.

Messages are an API: clients switch on ``type`` and read ``data``. Declaring
each event as a subclass of ``Event`` with a ``Literal`` type gives the
backend validation, and the catalog gives clients a JSON Schema to generate
types from (``realtime-bridge schema myapp.events``).
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Iterable
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic.json_schema import models_json_schema

from .errors import ConfigurationError, InvalidEvent
from .events import Event

__all__ = ["EventCatalog"]


def _literal_type(model: type[Event]) -> str | None:
    """The single ``Literal`` value a typed event declares for ``type``, if any."""
    annotation = model.model_fields["type"].annotation
    if typing.get_origin(annotation) is typing.Literal:
        values = typing.get_args(annotation)
        if len(values) == 1 and isinstance(values[0], str):
            return values[0]
    return None


class EventCatalog:
    """The typed events an application declares, keyed by their ``type``."""

    def __init__(self, events: Iterable[type[Event]]) -> None:
        self._by_type: dict[str, type[Event]] = {}
        for model in events:
            event_type = _literal_type(model)
            if event_type is None:
                raise ConfigurationError(
                    f"{model.__qualname__} must declare type as a single Literal, "
                    'e.g. type: Literal["order.updated"] = "order.updated"'
                )
            if event_type in self._by_type:
                raise ConfigurationError(
                    f"event type {event_type!r} is declared twice: by "
                    f"{self._by_type[event_type].__qualname__} and {model.__qualname__}"
                )
            self._by_type[event_type] = model
        self._adapter: TypeAdapter[Any] | None = None

    @classmethod
    def from_module(cls, module_name: str) -> EventCatalog:
        """Every typed ``Event`` subclass defined in ``module_name``."""
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigurationError(f"cannot import module {module_name!r}: {exc}") from exc
        found = [
            obj
            for _, obj in inspect.getmembers(module, inspect.isclass)
            if issubclass(obj, Event)
            and obj is not Event
            and obj.__module__ == module.__name__
            and _literal_type(obj) is not None
        ]
        return cls(sorted(found, key=lambda model: _literal_type(model) or ""))

    @property
    def types(self) -> dict[str, type[Event]]:
        return dict(self._by_type)

    def __len__(self) -> int:
        return len(self._by_type)

    def decode(self, raw: bytes | str) -> Event:
        """Parse an encoded envelope into its typed class (plain ``Event`` if unknown)."""
        generic = Event.decode(raw)
        model = self._by_type.get(generic.type)
        if model is None:
            return generic
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            raise InvalidEvent(
                f"event of type {generic.type!r} does not match {model.__qualname__}: {exc}"
            ) from None

    def json_schema(self) -> dict[str, Any]:
        """A JSON Schema document: one definition per event, and a union of them all."""
        models = [(model, "serialization") for model in self._by_type.values()]
        keys, top = models_json_schema(models, title="realtime_bridge event catalog")  # type: ignore[arg-type]
        # pydantic renames a definition when two classes share a name: use its refs.
        mapping = {t: keys[(m, "serialization")]["$ref"] for t, m in self._by_type.items()}
        refs = [{"$ref": ref} for ref in mapping.values()]
        top["oneOf"] = refs
        top["discriminator"] = {"propertyName": "type", "mapping": mapping}
        top["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        return top
