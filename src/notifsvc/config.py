"""Typed settings read once from ``NOTIFSVC_*`` environment variables.

Every stage calls :func:`load` at start-up and then passes the frozen :class:`Settings`
around; nothing else reads the environment. All malformed values are reported together,
each naming its variable, so that an operator fixes a deployment in one go.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final, TypeVar

from notifsvc.ratelimit import rate_problem

PREFIX: Final = "NOTIFSVC_"
T = TypeVar("T")


class ConfigError(Exception):
    """One or more configuration values are missing or malformed."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


class Secret:
    """A string that never shows itself in ``repr``, ``str`` or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _rate(raw: str) -> float:
    """A rate per second for :func:`notifsvc.ratelimit.make_limiter`: 0 (off) or a finite
    number of at least :data:`notifsvc.ratelimit.MIN_RATE`; fractions such as 0.5 work."""
    value = float(raw)
    problem = rate_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 65535:
        raise ValueError("must be a TCP port between 0 and 65535")
    return value


def _csv(raw: str) -> frozenset[str]:
    return frozenset(part.strip().lower() for part in raw.split(",") if part.strip())


def _secrets(raw: str) -> tuple[Secret, ...]:
    return tuple(Secret(part.strip()) for part in raw.split(",") if part.strip())


def _log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def _log_format(raw: str) -> str:
    fmt = raw.strip().lower()
    if fmt not in {"auto", "json", "text"}:
        raise ValueError("expected auto, json or text")
    return fmt


def _smtp_tls(raw: str) -> str:
    mode = raw.strip().lower()
    if mode not in {"none", "starttls", "tls"}:
        raise ValueError("expected none, starttls or tls")
    return mode


def _kafka_bootstrap(raw: str) -> str:
    for server in raw.split(","):
        host, sep, port = server.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"expected host:port[,host:port...], got {server.strip()!r}")
    return raw.strip()


def _database_url(raw: str) -> Secret:
    if not raw.strip().startswith(("postgresql://", "postgres://")):
        raise ValueError("expected a postgresql:// URL")
    return Secret(raw.strip())


def _url(raw: str) -> str:
    url = raw.strip()
    if not url.startswith(("http://", "https://")) or len(url) <= len("https://"):
        raise ValueError("expected an http:// or https:// URL")
    return url


def _ratio(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be a number between 0 and 1")
    return value


def _spec(parse: Callable[[str], Any], *, secret: bool = False) -> dict[str, Any]:
    return {"parse": parse, "secret": secret}


@dataclass(frozen=True)
class Settings:
    """Validated configuration. Field ``x`` comes from ``NOTIFSVC_X``."""

    kafka_bootstrap: str | None = field(default=None, metadata=_spec(_kafka_bootstrap))
    database_url: Secret | None = field(default=None, metadata=_spec(_database_url, secret=True))
    http_host: str = field(default="127.0.0.1", metadata=_spec(str))
    http_port: int = field(default=8090, metadata=_spec(_port))
    log_level: str = field(default="INFO", metadata=_spec(_log_level))
    log_format: str = field(default="auto", metadata=_spec(_log_format))
    topic_prefix: str = field(default="", metadata=_spec(str))
    topic_partitions: int = field(default=8, metadata=_spec(_positive_int))
    topic_replication: int = field(default=1, metadata=_spec(_positive_int))
    kafka_session_timeout_ms: int = field(default=10_000, metadata=_spec(_positive_int))
    kafka_max_poll_interval_ms: int = field(default=300_000, metadata=_spec(_positive_int))
    produce_timeout_ms: int = field(default=5_000, metadata=_spec(_positive_int))
    max_body_bytes: int = field(default=65_536, metadata=_spec(_positive_int))
    batch_size: int = field(default=1_000, metadata=_spec(_positive_int))
    batch_timeout_ms: int = field(default=20, metadata=_spec(_positive_int))
    send_concurrency: int = field(default=64, metadata=_spec(_positive_int))
    send_timeout_ms: int = field(default=10_000, metadata=_spec(_positive_int))
    max_attempts: int = field(default=5, metadata=_spec(_positive_int))
    inprocess_attempts: int = field(default=3, metadata=_spec(_positive_int))
    retry_delay_ms: int = field(default=30_000, metadata=_spec(_positive_int))
    throttle_budget_seconds: int = field(default=3_600, metadata=_spec(_positive_int))
    send_rate: float = field(default=0.0, metadata=_spec(_rate))
    channels: frozenset[str] | None = field(default=None, metadata=_spec(_csv))
    log_channel_path: Path | None = field(default=None, metadata=_spec(Path))
    webhook_allowed_hosts: frozenset[str] = field(default=frozenset(), metadata=_spec(_csv))
    webhook_secret: Secret | None = field(default=None, metadata=_spec(Secret, secret=True))
    api_keys: tuple[Secret, ...] = field(default=(), metadata=_spec(_secrets, secret=True))
    rate_limit_per_key: float = field(default=0.0, metadata=_spec(_rate))
    max_batch_items: int = field(default=500, metadata=_spec(_positive_int))
    max_batch_bytes: int = field(default=1_048_576, metadata=_spec(_positive_int))
    smtp_host: str | None = field(default=None, metadata=_spec(str))
    smtp_port: int = field(default=587, metadata=_spec(_port))
    smtp_username: str | None = field(default=None, metadata=_spec(str))
    smtp_password: Secret | None = field(default=None, metadata=_spec(Secret, secret=True))
    smtp_from: str | None = field(default=None, metadata=_spec(str))
    smtp_tls: str = field(default="starttls", metadata=_spec(_smtp_tls))
    twilio_api_url: str = field(default="https://api.twilio.com", metadata=_spec(str))
    twilio_account_sid: str | None = field(default=None, metadata=_spec(str))
    twilio_auth_token: Secret | None = field(default=None, metadata=_spec(Secret, secret=True))
    twilio_from: str | None = field(default=None, metadata=_spec(str))
    slack_api_url: str = field(default="https://slack.com/api", metadata=_spec(str))
    slack_token: Secret | None = field(default=None, metadata=_spec(Secret, secret=True))
    metrics_port: int = field(default=0, metadata=_spec(_port))
    tracing_endpoint: str | None = field(default=None, metadata=_spec(_url))
    tracing_sample_ratio: float = field(default=1.0, metadata=_spec(_ratio))

    def require(self, *names: str) -> None:
        """Raise :class:`ConfigError` naming every listed setting that is unset."""
        missing = [
            f"{env_name(n)} is required but not set" for n in names if getattr(self, n) is None
        ]
        if missing:
            raise ConfigError(missing)

    def redacted(self) -> dict[str, str]:
        """The settings as strings, safe to log: secrets are masked."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[env_name(f.name)] = "**********" if f.metadata["secret"] and value else str(value)
        return out

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def dsn(self) -> str:
        self.require("database_url")
        assert self.database_url is not None
        return self.database_url.reveal()

    @property
    def bootstrap(self) -> str:
        self.require("kafka_bootstrap")
        assert self.kafka_bootstrap is not None
        return self.kafka_bootstrap


def env_name(field_name: str) -> str:
    return PREFIX + field_name.upper()


def known_variables() -> frozenset[str]:
    """Every ``NOTIFSVC_*`` variable the code reads."""
    return frozenset(env_name(f.name) for f in fields(Settings))


def load(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read, parse and validate settings; unknown ``NOTIFSVC_*`` names are errors too."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    problems: list[str] = []
    for f in fields(Settings):
        raw = env.get(env_name(f.name))
        if raw is None or raw.strip() == "":
            continue
        try:
            values[f.name] = f.metadata["parse"](raw)
        except ValueError as exc:
            shown = "(hidden)" if f.metadata["secret"] else repr(raw)
            problems.append(f"{env_name(f.name)}={shown}: {exc}")
    problems.extend(_unknown(env))
    if problems:
        raise ConfigError(problems)
    values.update(overrides)
    return Settings(**values)


def _unknown(env: Iterable[str]) -> list[str]:
    known = known_variables()
    return [
        f"{name} is not a known setting (typo?)"
        for name in sorted(env)
        if name.startswith(PREFIX) and name not in known
    ]


def to_env(settings: Settings) -> dict[str, str]:
    """The ``NOTIFSVC_*`` variables that reproduce ``settings`` (defaults left out): the
    inverse of :func:`load`, for starting a stage process with the same configuration."""
    env = {}
    for f in fields(Settings):
        value = getattr(settings, f.name)
        if value != f.default:
            env[env_name(f.name)] = _env_value(value)
    return env


def _env_value(value: object) -> str:
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, frozenset | tuple):
        return ",".join(sorted(_env_value(v) for v in value))
    return str(value)
