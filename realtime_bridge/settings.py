"""Configuration: which adapters to use, read from URLs, the environment or a TOML file.

One URL names an adapter and everything it needs, so switching vendors is a
change of configuration, not of code::

    memory://
    redis://[:PASSWORD@]HOST[:PORT]/DB          rediss:// for TLS
    pusher://KEY:SECRET@HOST[:PORT]/APP_ID      ?cluster=eu, ?tls=false, ?encryption_master_key=
    ably://KEYNAME:KEYSECRET@[ENDPOINT][:PORT]  ?tls=false, ?auth=token, ?max_message_size=
    supabase://KEY@PROJECT.supabase.co          ?tls=false, ?messages_per_second=, ?jwt_secret=

Adapters are imported only when their scheme is used, so each vendor's
dependencies stay behind its own extra. Secrets in URLs are redacted
everywhere the library shows a URL.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import SplitResult, urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .adapters.base import Adapter

__all__ = ["ADAPTERS", "BridgeSettings", "adapter_from_url", "redact_url"]

#: scheme -> ("module", "Class", "extra to install")
ADAPTERS: dict[str, tuple[str, str, str]] = {
    "memory": ("realtime_bridge.adapters.memory", "MemoryAdapter", ""),
    "redis": ("realtime_bridge.adapters.redis", "RedisAdapter", "redis"),
    "rediss": ("realtime_bridge.adapters.redis", "RedisAdapter", "redis"),
    "pusher": ("realtime_bridge.adapters.pusher", "PusherAdapter", "pusher"),
    "ably": ("realtime_bridge.adapters.ably", "AblyAdapter", "ably"),
    "supabase": ("realtime_bridge.adapters.supabase", "SupabaseAdapter", "supabase"),
    "nats": ("realtime_bridge.adapters.nats", "NatsAdapter", "nats"),
    "liveblocks": ("realtime_bridge.adapters.liveblocks", "LiveblocksAdapter", "liveblocks"),
}

# Schemes whose user part is itself a secret (the password part always is).
_SECRET_USER_SCHEMES = frozenset({"supabase", "liveblocks", "nats"})
_MASK = "***"
# "//user:password@" (the password masked) or "//secret@" (the whole user part masked).
_CREDENTIALS = re.compile(r"(//(?:[^/@:]*:)?)[^/@]*@")
# Query options that carry a secret (an encryption master key, a token, a password).
_SECRET_OPTION = re.compile(
    r"([?&][^=&#]*(?:secret|password|token|master_key)[^=&#]*=)[^&#]*", re.I
)

#: Read from the working directory by ``BridgeSettings``.
TOML_FILE = "realtime_bridge.toml"


def redact_url(url: str) -> str:
    """``url`` with its password, secret user part and secret options replaced by ``***``."""
    return _SECRET_OPTION.sub(r"\1***", _redact_credentials(url))


def _redact_credentials(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # e.g. a port that is not a number: mask by pattern instead
        return _CREDENTIALS.sub(r"\1***@", url)
    if parts.username is None and parts.password is None:
        return url
    user = parts.username or ""
    if parts.scheme in _SECRET_USER_SCHEMES and user:
        user = _MASK
    credentials = f"{user}:{_MASK}" if parts.password is not None else user
    netloc = f"{credentials}@{host}" + (f":{port}" if port else "")
    return SplitResult(parts.scheme, netloc, parts.path, parts.query, parts.fragment).geturl()


def adapter_from_url(url: str, **options: Any) -> Adapter:
    """Build the adapter a URL names, importing its module only now."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ADAPTERS:
        known = ", ".join(f"{name}://" for name in sorted(ADAPTERS))
        raise ConfigurationError(
            f"unknown adapter URL {redact_url(url)!r}: the scheme must be one of {known}"
        )
    module_name, class_name, extra = ADAPTERS[scheme]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"the {scheme}:// adapter needs an optional dependency ({exc.name}); "
            f"install it with: pip install 'realtime-bridge[{extra}]'"
        ) from exc
    adapter_class = getattr(module, class_name)
    adapter: Adapter = adapter_class.from_url(url, **options)
    return adapter


def _split_urls(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class BridgeSettings(BaseSettings):
    """Settings read from ``REALTIME_BRIDGE_*`` variables, then ``realtime_bridge.toml``.

    ``REALTIME_BRIDGE_FALLBACK_URLS`` and ``REALTIME_BRIDGE_SHADOW_URLS`` are
    comma-separated. The TOML file holds the same keys in lower case, at the
    top level or under a ``[realtime_bridge]`` table.
    """

    model_config = SettingsConfigDict(
        env_prefix="REALTIME_BRIDGE_",
        extra="ignore",
    )

    url: SecretStr = Field(default=SecretStr("memory://"), description="The primary adapter.")
    fallback_urls: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    shadow_urls: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    database_url: SecretStr | None = Field(default=None, description="The outbox's database.")
    retry_attempts: int = Field(default=4, ge=1, description="Tries per adapter per batch.")
    circuit_failure_threshold: int = Field(default=5, ge=1)
    circuit_reset_seconds: float = Field(default=30.0, gt=0)

    @field_validator("fallback_urls", "shadow_urls", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return _split_urls(value)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=Path(TOML_FILE))
        sections = _TomlSection(settings_cls, toml)
        return (init_settings, env_settings, sections)


class _TomlSection(PydanticBaseSettingsSource):
    """Reads the TOML file's ``[realtime_bridge]`` table if it has one, else its top level."""

    def __init__(self, settings_cls: type[BaseSettings], toml: TomlConfigSettingsSource) -> None:
        super().__init__(settings_cls)
        self._toml = toml

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        data = self._toml()
        section = data.get("realtime_bridge")
        return dict(section) if isinstance(section, dict) else data
