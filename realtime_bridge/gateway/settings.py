"""The gateway's configuration: ``REALTIME_BRIDGE_GATEWAY_*`` variables, or arguments.

The Redis URL has the same form as the Redis adapter's, with the same options,
so the gateway and the relay read one URL and agree on the key ``prefix``
and on how long history is kept (``history_ttl``). The gateway refuses an
option the adapter would not know, as the adapter does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import SplitResult, urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ..adapters._query import QueryOptions
from ..adapters._redis_options import REDIS_OPTIONS
from ..errors import ConfigurationError
from ..settings import redact_url
from .tokens import check_secret

__all__ = ["GatewaySettings", "RedisLocation"]


@dataclass(frozen=True, slots=True)
class RedisLocation:
    """Where the Redis adapter keeps its channels, read from its URL."""

    #: The URL without options, with the password: for connecting, never for showing.
    base_url: str
    #: The same, redacted: for logs and messages.
    label: str
    prefix: str
    #: Seconds a quiet channel's stream lives: how old a cursor can be and still be trusted.
    history_ttl: int
    timeout: float
    #: Connections the gateway's pool may open for reads and presence (bursts wait for one).
    max_connections: int
    #: The token secret, if the URL carries one (``?gateway_secret=``).
    secret: str | None

    @classmethod
    def parse(cls, url: str) -> RedisLocation:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ConfigurationError(
                f"the gateway needs a redis:// or rediss:// URL, got {redact_url(url)!r}"
            )
        if not re.fullmatch(r"/?|/\d+", parts.path):
            raise ConfigurationError(
                f"bad Redis URL {redact_url(url)!r}: the path must be a database number "
                f"such as /0, not {parts.path!r}"
            )
        query = QueryOptions(parts.query, adapter="redis", known=REDIS_OPTIONS)
        if query.flag("cluster", False):
            raise ConfigurationError(
                "the gateway runs on a single Redis (or a primary with replicas), "
                "not Redis Cluster (?cluster=true)"
            )
        base = SplitResult(parts.scheme, parts.netloc, parts.path, "", "").geturl()
        return cls(
            base_url=base,
            label=redact_url(base),
            prefix=query.text("prefix", "rb"),
            history_ttl=query.integer("history_ttl", 86400),
            timeout=query.number("timeout", 5.0),
            max_connections=query.integer("max_connections", 50),
            secret=query.text("gateway_secret", "") or None,
        )


class GatewaySettings(BaseSettings):
    """Settings read from arguments, then ``REALTIME_BRIDGE_GATEWAY_*`` variables.

    ``REALTIME_BRIDGE_GATEWAY_CORS_ORIGINS`` is comma-separated.
    """

    model_config = SettingsConfigDict(env_prefix="REALTIME_BRIDGE_GATEWAY_", extra="ignore")

    redis_url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"),
        description="The Redis adapter's URL (same prefix and options as the relay's).",
    )
    secret: SecretStr | None = Field(
        default=None,
        description="Verifies client tokens; else the Redis URL's ?gateway_secret=.",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    heartbeat: float = Field(
        default=15.0, gt=0, description="Seconds of silence before a heartbeat is sent."
    )
    buffer: int = Field(
        default=256, ge=1, description="Events queued per connection before it counts as slow."
    )
    send_timeout: float = Field(
        default=30.0, gt=0, description="Seconds one write may wait on a client before giving up."
    )
    presence_ttl: float = Field(
        default=30.0, gt=0, description="Seconds a member stays without a refresh (crash bound)."
    )
    max_channels: int = Field(default=100, ge=1, description="Channels per connection.")
    replay_page: int = Field(default=500, ge=1, description="Stream entries read per round trip.")
    catchup_max_age: int = Field(
        default=2, ge=0, description="Cache seconds for the newest catch-up page."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def location(self) -> RedisLocation:
        """The Redis URL, parsed and checked (raises ``ConfigurationError``)."""
        return RedisLocation.parse(self.redis_url.get_secret_value())

    def token_secret(self, url_secret: str | None) -> str:
        """The secret that checks tokens: ``secret``, else the feed URL's ``gateway_secret``."""
        secret = self.secret.get_secret_value() if self.secret is not None else url_secret
        if not secret:
            raise ConfigurationError(
                "the gateway needs the secret that signs client tokens: --secret, "
                "REALTIME_BRIDGE_GATEWAY_SECRET, or ?gateway_secret= in the Redis URL "
                "(the same one the application's redis:// URL carries)"
            )
        return check_secret(secret)
