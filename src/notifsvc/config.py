"""Typed settings read once from ``NOTIFSVC_*`` environment variables.

Every stage calls :func:`load` at start-up and then passes the frozen :class:`Settings`
around; nothing else reads the environment. All malformed values are reported together,
each naming its variable, so that an operator fixes a deployment in one go.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Final, TypeVar

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


#: The shortest retention: the pipeline topics keep messages 7 days, and no message may
#: outlive its row (a missing row means "not seen yet": a canceled notification's delay-tier
#: message, or a lagging lane's duplicate, would be sent again). The longest: ten years.
MIN_RETENTION_DAYS, MAX_RETENTION_DAYS = 7, 3_650


def _retention_days(raw: str) -> int:
    value = int(raw)
    if value != 0 and not MIN_RETENTION_DAYS <= value <= MAX_RETENTION_DAYS:
        why = (
            f"must be 0 (keep for ever) or a whole number of days from {MIN_RETENTION_DAYS} "
            f"(the topics' retention: no message may outlive its row) to {MAX_RETENTION_DAYS}"
        )
        raise ValueError(why)
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


def _readable_file(raw: str) -> Path:
    path = Path(raw.strip())
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ValueError(f"cannot read the file: {exc.strerror or exc}") from None
    return path


def _choice(*allowed: str, upper: bool = True) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().upper() if upper else raw.strip().lower()
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return value

    return parse


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value not in {"true", "false", "1", "0", "yes", "no"}:
        raise ValueError("expected true or false")
    return value in {"true", "1", "yes"}


def _signing_secrets(raw: str) -> Any:
    from notifsvc.signing import SigningSecrets  # noqa: PLC0415 - signing imports this module

    return SigningSecrets(raw)


class CallbackClients(Secret):
    """Per API key (by its id: the first 16 hex digits of the key's SHA-256) a default
    ``callback_url`` and the ``whsec_`` secrets its callbacks are signed with, as JSON:
    ``{"<key id>": {"url": "https://...", "secrets": "whsec_...,whsec_..."}}``."""

    __slots__ = ("clients",)

    def __init__(self, value: str) -> None:
        super().__init__(value)
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"expected a JSON object: {exc.msg}") from None
        if not isinstance(parsed, dict):
            raise ValueError("expected a JSON object of API key ids")
        self.clients = {str(k): _client_entry(str(k), v) for k, v in parsed.items()}

    def url(self, client: str | None) -> str | None:
        return self.clients.get(client or "", (None, None))[0]

    def secrets(self, client: str | None) -> Any:
        return self.clients.get(client or "", (None, None))[1]


def _client_entry(key_id: str, entry: object) -> tuple[str | None, Any]:
    if not re.fullmatch(r"[0-9a-f]{16}", key_id):
        raise ValueError(f"{key_id[:20]!r} is not an API key id (16 lower-case hex digits)")
    if not isinstance(entry, dict) or set(entry) - {"url", "secrets"}:
        raise ValueError(f'{key_id}: expected {{"url": ..., "secrets": ...}}')
    url, secrets = entry.get("url"), entry.get("secrets")
    if url is not None and (
        not isinstance(url, str) or not url.startswith(("http://", "https://"))
    ):
        raise ValueError(f"{key_id}: url must be an http(s) URL")
    try:
        signing = _signing_secrets(secrets) if isinstance(secrets, str) else None
    except ValueError as exc:
        raise ValueError(f"{key_id}: secrets: {exc}") from None
    return url, signing


_EXTRA_KEY = re.compile(r"[a-z][a-z0-9._-]*")


def kafka_extra_pairs(raw: str) -> tuple[tuple[str, str], ...]:
    """``key=value`` librdkafka properties: one per line, or comma-separated on one line."""
    entries = raw.splitlines() if "\n" in raw.strip() else raw.split(",")
    pairs = []
    for entry in (e.strip() for e in entries):
        if not entry or entry.startswith("#"):
            continue
        key, sep, value = entry.partition("=")
        if not sep or not _EXTRA_KEY.fullmatch(key.strip()):
            raise ValueError(f"expected key=value entries, got {key.strip()[:40]!r}")
        pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


def _kafka_extra(raw: str) -> Secret:
    kafka_extra_pairs(raw)  # validated now, kept secret (it may hold credentials)
    return Secret(raw)


def _spec(parse: Callable[[str], Any], *, secret: bool = False, doc: str = "") -> dict[str, Any]:
    return {"parse": parse, "secret": secret, "doc": doc}


def setting(
    default: Any, parse: Callable[[str], Any], *, secret: bool = False, doc: str = ""
) -> Any:
    """A field of :class:`Settings` or of a :class:`Section`: its default, the parser of its
    environment variable (raising ``ValueError`` with a readable message), whether it is a
    secret (masked everywhere, also read from ``*_FILE``), and ``doc``: what it means, for
    the README's generated settings table."""
    return field(default=default, metadata=_spec(parse, secret=secret, doc=doc))


#: Parsers for the fields of a :class:`Section`.
as_port = _port
as_csv = _csv
as_url = _url
as_bool = _bool
as_positive_int = _positive_int
as_readable_file = _readable_file
one_of = _choice


@dataclass(frozen=True)
class Section:
    """The settings of one plugin (a channel), read from ``NOTIFSVC_<PREFIX>_<FIELD>``.

    Subclass it as a frozen dataclass whose fields are made with :func:`setting`::

        @dataclass(frozen=True)
        class EmailSettings(Section, prefix="email"):
            host: str | None = setting(None, str)

    A field named ``from_`` is read from ``..._FROM``. Every field has a default, so that a
    section that was not configured still exists (and says why it cannot run).
    """

    prefix: ClassVar[str] = ""

    def __init_subclass__(cls, *, prefix: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if prefix:
            cls.prefix = prefix

    @classmethod
    def env_name(cls, field_name: str) -> str:
        return f"{PREFIX}{cls.prefix.upper()}_{field_name.rstrip('_').upper()}"

    def disabled_reason(self) -> str | None:
        """Why the plugin cannot run with these settings (naming the variables), or None."""
        return None

    def missing(self, *names: str) -> str | None:
        """A reason naming each listed field that is unset, or None when all are set."""
        unset = [self.env_name(n) for n in names if getattr(self, n) is None]
        return f"{', '.join(unset)} {'is' if len(unset) == 1 else 'are'} not set" if unset else None


S = TypeVar("S", bound=Section)


KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
DATABASE_SSLMODES = ("disable", "require", "verify-ca", "verify-full")


@dataclass(frozen=True)
class KafkaConnection:
    """How to reach and authenticate to the Kafka cluster; :mod:`notifsvc.kafka` turns it
    into librdkafka properties (``extra`` passes any other property through as is)."""

    bootstrap: str
    security_protocol: str = "PLAINTEXT"
    ssl_ca_file: Path | None = None
    ssl_cert_file: Path | None = None
    ssl_key_file: Path | None = None
    ssl_key_password: Secret | None = None
    ssl_endpoint_identification: bool = True
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    oauth_token_url: str | None = None
    oauth_client_id: str | None = None
    oauth_client_secret: Secret | None = None
    oauth_scope: str | None = None
    extra: Secret | None = None

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in {"SSL", "SASL_SSL"}


@dataclass(frozen=True)
class DatabaseConnection:
    """How to reach the database: the URL plus what Kubernetes mounts as files."""

    dsn: str
    password: Secret | None = None
    sslmode: str | None = None  # None: as the URL says
    ssl_ca_file: Path | None = None
    ssl_cert_file: Path | None = None
    ssl_key_file: Path | None = None


@dataclass(frozen=True)
class Settings:
    """Validated configuration. Field ``x`` comes from ``NOTIFSVC_X``."""

    kafka_bootstrap: str | None = field(default=None, metadata=_spec(_kafka_bootstrap))
    database_url: Secret | None = field(default=None, metadata=_spec(_database_url, secret=True))
    database_password: Secret | None = field(default=None, metadata=_spec(Secret, secret=True))
    database_sslmode: str | None = field(
        default=None, metadata=_spec(_choice(*DATABASE_SSLMODES, upper=False))
    )
    database_ssl_ca_file: Path | None = field(default=None, metadata=_spec(_readable_file))
    database_ssl_cert_file: Path | None = field(default=None, metadata=_spec(_readable_file))
    database_ssl_key_file: Path | None = field(default=None, metadata=_spec(_readable_file))
    http_host: str = field(default="127.0.0.1", metadata=_spec(str))
    http_port: int = field(default=8090, metadata=_spec(_port))
    log_level: str = field(default="INFO", metadata=_spec(_log_level))
    log_format: str = field(default="auto", metadata=_spec(_log_format))
    topic_prefix: str = field(default="", metadata=_spec(str))
    topic_partitions: int = field(default=8, metadata=_spec(_positive_int))
    topic_replication: int = field(default=1, metadata=_spec(_positive_int))
    kafka_session_timeout_ms: int = field(default=10_000, metadata=_spec(_positive_int))
    kafka_max_poll_interval_ms: int = field(default=300_000, metadata=_spec(_positive_int))
    kafka_fetch_wait_ms: int = field(default=500, metadata=_spec(_positive_int))
    kafka_security_protocol: str = field(
        default="PLAINTEXT", metadata=_spec(_choice(*KAFKA_PROTOCOLS))
    )
    kafka_ssl_ca_file: Path | None = field(default=None, metadata=_spec(_readable_file))
    kafka_ssl_cert_file: Path | None = field(default=None, metadata=_spec(_readable_file))
    kafka_ssl_key_file: Path | None = field(default=None, metadata=_spec(_readable_file))
    kafka_ssl_key_password: Secret | None = field(default=None, metadata=_spec(Secret, secret=True))
    kafka_ssl_endpoint_identification: bool = field(default=True, metadata=_spec(_bool))
    kafka_sasl_mechanism: str | None = field(
        default=None, metadata=_spec(_choice(*SASL_MECHANISMS))
    )
    kafka_sasl_username: str | None = field(default=None, metadata=_spec(str))
    kafka_sasl_password: Secret | None = field(default=None, metadata=_spec(Secret, secret=True))
    kafka_oauth_token_url: str | None = field(default=None, metadata=_spec(_url))
    kafka_oauth_client_id: str | None = field(default=None, metadata=_spec(str))
    kafka_oauth_client_secret: Secret | None = field(
        default=None, metadata=_spec(Secret, secret=True)
    )
    kafka_oauth_scope: str | None = field(default=None, metadata=_spec(str))
    kafka_extra: Secret | None = field(default=None, metadata=_spec(_kafka_extra, secret=True))
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
    api_keys: tuple[Secret, ...] = field(default=(), metadata=_spec(_secrets, secret=True))
    rate_limit_per_key: float = field(default=0.0, metadata=_spec(_rate))
    # The per-key limit is the whole cluster's: each receiver process enforces its share,
    # 1 / (replicas x workers) of it (notifsvc/auth.py). `notifsvc receiver --workers N`
    # sets NOTIFSVC_RECEIVER_WORKERS for its processes.
    receiver_replicas: int = field(default=1, metadata=_spec(_positive_int))
    receiver_workers: int = field(default=1, metadata=_spec(_positive_int))
    max_batch_items: int = field(default=500, metadata=_spec(_positive_int))
    max_batch_bytes: int = field(default=1_048_576, metadata=_spec(_positive_int))
    metrics_port: int = field(default=0, metadata=_spec(_port))
    tracing_endpoint: str | None = field(default=None, metadata=_spec(_url))
    tracing_sample_ratio: float = field(default=1.0, metadata=_spec(_ratio))
    # The operator commands (notifsvc/ops_client.py): the receiver they talk to, and the
    # API key they send (one of the receiver's NOTIFSVC_API_KEYS).
    api_url: str = field(default="http://127.0.0.1:8090", metadata=_spec(_url))
    api_key: Secret | None = field(default=None, metadata=_spec(Secret, secret=True))
    # Status callbacks (notifsvc/events.py, notifsvc/callbacks.py).
    callback_allowed_hosts: frozenset[str] = field(default=frozenset(), metadata=_spec(_csv))
    callback_secret: Any = field(default=None, metadata=_spec(_signing_secrets, secret=True))
    callback_clients: CallbackClients | None = field(
        default=None, metadata=_spec(CallbackClients, secret=True)
    )
    callback_concurrency: int = field(default=64, metadata=_spec(_positive_int))
    callback_timeout_ms: int = field(default=5_000, metadata=_spec(_positive_int))
    callback_max_attempts: int = field(default=8, metadata=_spec(_positive_int))
    callback_retry_delay_ms: int = field(default=10_000, metadata=_spec(_positive_int))
    callback_rate: float = field(default=0.0, metadata=_spec(_rate))
    # The reconciler (notifsvc/reconciler.py), a duty of the router.
    redrive_after_seconds: int = field(default=300, metadata=_spec(_positive_int))
    redrive_period_seconds: int = field(default=30, metadata=_spec(_positive_int))
    redrive_rate: float = field(default=200.0, metadata=_spec(_rate))
    redrive_expire_seconds: int = field(default=86_400, metadata=_spec(_positive_int))
    # Retention (notifsvc/retention.py), a duty of the router: finished rows are deleted this
    # many days after they last changed (0: kept for ever), at most this many per second per
    # replica.
    retention_days: int = field(default=30, metadata=_spec(_retention_days))
    retention_rate: float = field(default=10_000.0, metadata=_spec(_rate))
    # Replay jobs (notifsvc/replays.py), a duty of the router: rows requeued per second per
    # job, how long a router holds a job it works on, how often an idle router looks for one.
    replay_rate: float = field(default=200.0, metadata=_spec(_rate))
    replay_lease_seconds: int = field(default=30, metadata=_spec(_positive_int))
    replay_poll_ms: int = field(default=2_000, metadata=_spec(_positive_int))
    # Scheduled sends (notifsvc/api/validation.py): how far ahead a request's send_at may
    # be, and how far in the past (a client's clock a little behind ours) it is still "now".
    schedule_horizon_seconds: int = field(default=2_592_000, metadata=_spec(_positive_int))
    schedule_tolerance_seconds: int = field(default=5, metadata=_spec(_positive_int))
    # The delay tiers (notifsvc/schedule.py, notifsvc/scheduler.py): a notification due
    # further ahead than this (keep it below the tier topics' retention) is parked in the
    # database; the elected parked reader moves the
    # rows coming near into the tiers once per bucket, holding its election for a lease.
    schedule_park_after_seconds: int = field(default=518_400, metadata=_spec(_positive_int))
    schedule_bucket_seconds: int = field(default=600, metadata=_spec(_positive_int))
    schedule_lease_seconds: int = field(default=1_200, metadata=_spec(_positive_int))
    #: The settings of each channel (:attr:`notifsvc.channels.base.Channel.Config`) that
    #: differ from their defaults; read them with :meth:`section`.
    sections: frozenset[Section] = field(default=frozenset(), metadata={"sections": True})

    def section(self, cls: type[S]) -> S:
        """The settings of one section: as configured, else its defaults."""
        for section in self.sections:
            if type(section) is cls:
                return section
        return cls()

    def with_sections(self, *sections: Section) -> Settings:
        """These settings with ``sections`` replacing the ones of the same type."""
        types = {type(s) for s in sections}
        kept = {s for s in self.sections if type(s) not in types}
        return replace(self, sections=frozenset(kept | {s for s in sections if s != type(s)()}))

    def configure(self, cls: type[S], **changes: Any) -> Settings:
        """These settings with some fields of section ``cls`` changed."""
        return self.with_sections(replace(self.section(cls), **changes))

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
        for name, f, value in _values(self):
            out[name] = "**********" if f.metadata["secret"] and value else str(value)
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

    @property
    def kafka(self) -> KafkaConnection:
        """The Kafka connection: bootstrap servers, TLS and SASL."""
        return KafkaConnection(
            bootstrap=self.bootstrap,
            security_protocol=self.kafka_security_protocol,
            ssl_ca_file=self.kafka_ssl_ca_file,
            ssl_cert_file=self.kafka_ssl_cert_file,
            ssl_key_file=self.kafka_ssl_key_file,
            ssl_key_password=self.kafka_ssl_key_password,
            ssl_endpoint_identification=self.kafka_ssl_endpoint_identification,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=self.kafka_sasl_password,
            oauth_token_url=self.kafka_oauth_token_url,
            oauth_client_id=self.kafka_oauth_client_id,
            oauth_client_secret=self.kafka_oauth_client_secret,
            oauth_scope=self.kafka_oauth_scope,
            extra=self.kafka_extra,
        )

    @property
    def database(self) -> DatabaseConnection:
        """The database connection: URL, password and TLS files."""
        return DatabaseConnection(
            dsn=self.dsn,
            password=self.database_password,
            sslmode=self.database_sslmode,
            ssl_ca_file=self.database_ssl_ca_file,
            ssl_cert_file=self.database_ssl_cert_file,
            ssl_key_file=self.database_ssl_key_file,
        )


def env_name(field_name: str) -> str:
    return PREFIX + field_name.upper()


def env_fields(cls: type[Any]) -> list[Field[Any]]:
    """The fields of ``Settings`` or of a section that come from a variable."""
    return [f for f in fields(cls) if "parse" in f.metadata]


def variables(cls: type[Any]) -> list[tuple[str, Field[Any]]]:
    """``(variable, field)`` of every setting of ``Settings`` or of a section."""
    name = cls.env_name if issubclass(cls, Section) else env_name
    return [(name(f.name), f) for f in env_fields(cls)]


def registered_sections() -> tuple[type[Section], ...]:
    """The sections of the registered channels and their other providers (imported here,
    late: channels import this)."""
    from notifsvc.channels import sections  # noqa: PLC0415 - channels import this module

    return sections()


def _all_variables(sections: Iterable[type[Section]]) -> list[tuple[str, Field[Any]]]:
    classes: list[type[Any]] = [Settings, *sections]
    return [pair for cls in classes for pair in variables(cls)]


def _values(settings: Settings) -> list[tuple[str, Field[Any], Any]]:
    """``(variable, field, value)`` of every setting, the sections' included."""
    parts: list[Any] = [settings, *sorted(settings.sections, key=lambda s: s.prefix)]
    return [(name, f, getattr(part, f.name)) for part in parts for name, f in variables(type(part))]


def sections_table(sections: Iterable[type[Section]] | None = None) -> str:
    """The channels' settings as a Markdown table (the README's generated block)."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for cls in registered_sections() if sections is None else sections:
        for name, f in variables(cls):
            default = "(none)" if f.default in (None, frozenset()) else f"`{_env_value(f.default)}`"
            secret = " (secret; or `*_FILE`)" if f.metadata["secret"] else ""
            rows.append(f"| `{name}` | {default} | {f.metadata.get('doc', '')}{secret} |")
    return "\n".join(rows) + "\n"


def secret_variables(sections: Iterable[type[Section]] | None = None) -> frozenset[str]:
    """The variables that hold secrets (each also readable from ``*_FILE``)."""
    pairs = _all_variables(registered_sections() if sections is None else sections)
    return frozenset(name for name, f in pairs if f.metadata["secret"])


def known_variables(sections: Iterable[type[Section]] | None = None) -> frozenset[str]:
    """Every ``NOTIFSVC_*`` variable the code reads (secrets also as ``*_FILE``)."""
    pairs = _all_variables(registered_sections() if sections is None else sections)
    files = {name + FILE_SUFFIX for name, f in pairs if f.metadata["secret"]}
    return frozenset({name for name, _ in pairs} | files)


#: ``NOTIFSVC_<SECRET>_FILE`` names a file holding the secret (as Kubernetes mounts them).
FILE_SUFFIX = "_FILE"


def _raw(env: Mapping[str, str], name: str, f: Any, problems: list[str]) -> str | None:
    """The raw value of setting ``f`` (variable ``name``): the variable, or for a secret the
    file its ``*_FILE`` variable names (read once, here; a trailing newline is dropped)."""
    raw = env.get(name)
    path = env.get(name + FILE_SUFFIX) if f.metadata["secret"] else None
    if path is None or not path.strip():
        return raw
    if raw is not None and raw.strip():
        problems.append(f"{name} and {name}{FILE_SUFFIX} are both set: set one")
        return None
    try:
        return Path(path.strip()).read_text().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{name}{FILE_SUFFIX}={path.strip()!r}: cannot read the file: {exc}")
        return None


def _parse(cls: type[Any], env: Mapping[str, str], problems: list[str]) -> dict[str, Any]:
    """The set variables of ``Settings`` or of a section, parsed by field name."""
    values: dict[str, Any] = {}
    for name, f in variables(cls):
        raw = _raw(env, name, f, problems)
        if raw is None or raw.strip() == "":
            continue
        try:
            values[f.name] = f.metadata["parse"](raw)
        except ValueError as exc:
            shown = "(hidden)" if f.metadata["secret"] else repr(raw)
            problems.append(f"{name}={shown}: {exc}")
    return values


def load(
    environ: Mapping[str, str] | None = None,
    *,
    sections: Iterable[type[Section]] | None = None,
    **overrides: Any,
) -> Settings:
    """Read, parse and validate settings, each registered channel's section included
    (``sections`` replaces that list); unknown ``NOTIFSVC_*`` names are errors too."""
    env = os.environ if environ is None else environ
    sections = registered_sections() if sections is None else tuple(sections)
    problems: list[str] = []
    values = _parse(Settings, env, problems)
    parsed = [cls(**_parse(cls, env, problems)) for cls in sections]
    problems.extend(_unknown(env, sections))
    if problems:
        raise ConfigError(problems)
    values.update(overrides)
    settings = Settings(**values).with_sections(*parsed)
    problems = connection_problems(settings)
    if problems:
        raise ConfigError(problems)
    return settings


_SASL_NEEDS = {
    "PLAIN": ("kafka_sasl_username", "kafka_sasl_password"),
    "SCRAM-SHA-256": ("kafka_sasl_username", "kafka_sasl_password"),
    "SCRAM-SHA-512": ("kafka_sasl_username", "kafka_sasl_password"),
    "OAUTHBEARER": ("kafka_oauth_token_url", "kafka_oauth_client_id", "kafka_oauth_client_secret"),
}


def connection_problems(settings: Settings) -> list[str]:
    """Settings that are fine one by one but do not work together (TLS and SASL)."""
    s = settings
    mechanism, protocol = s.kafka_sasl_mechanism, s.kafka_security_protocol
    problems = []
    sasl = protocol.startswith("SASL_")
    if sasl and mechanism is None:
        problems.append(f"{env_name('kafka_sasl_mechanism')} is required with {protocol}")
    if not sasl and mechanism is not None:
        problems.append(f"{env_name('kafka_sasl_mechanism')} needs a SASL_* security protocol")
    needs = _SASL_NEEDS.get(mechanism or "", ()) if sasl else ()
    problems += [
        f"{env_name(n)} is required with {env_name('kafka_sasl_mechanism')}={mechanism}"
        for n in needs
        if getattr(s, n) is None
    ]
    for prefix in ("kafka", "database"):
        cert, key = f"{prefix}_ssl_cert_file", f"{prefix}_ssl_key_file"
        if (getattr(s, cert) is None) != (getattr(s, key) is None):
            problems.append(f"{env_name(cert)} and {env_name(key)} go together: set both")
    return problems


#: Variables of earlier releases, and what they are called now.
RENAMED: Final = {
    "NOTIFSVC_LOG_CHANNEL_PATH": "NOTIFSVC_LOG_PATH",
    "NOTIFSVC_SMTP_HOST": "NOTIFSVC_EMAIL_HOST",
    "NOTIFSVC_SMTP_PORT": "NOTIFSVC_EMAIL_PORT",
    "NOTIFSVC_SMTP_USERNAME": "NOTIFSVC_EMAIL_USERNAME",
    "NOTIFSVC_SMTP_PASSWORD": "NOTIFSVC_EMAIL_PASSWORD",
    "NOTIFSVC_SMTP_FROM": "NOTIFSVC_EMAIL_FROM",
    "NOTIFSVC_SMTP_TLS": "NOTIFSVC_EMAIL_TLS",
    "NOTIFSVC_TWILIO_API_URL": "NOTIFSVC_SMS_API_URL",
    "NOTIFSVC_TWILIO_ACCOUNT_SID": "NOTIFSVC_SMS_ACCOUNT_SID",
    "NOTIFSVC_TWILIO_AUTH_TOKEN": "NOTIFSVC_SMS_AUTH_TOKEN",
    "NOTIFSVC_TWILIO_FROM": "NOTIFSVC_SMS_FROM",
}


def _unknown(env: Iterable[str], sections: Iterable[type[Section]]) -> list[str]:
    known = known_variables(sections)
    problems = []
    for name in sorted(n for n in env if n.startswith(PREFIX) and n not in known):
        base = name.removesuffix(FILE_SUFFIX)
        if base in RENAMED:
            new = RENAMED[base] + name[len(base) :]
            problems.append(f"{name} was renamed {new}: rename the variable")
        else:
            problems.append(f"{name} is not a known setting (typo?)")
    return problems


def to_env(settings: Settings) -> dict[str, str]:
    """The ``NOTIFSVC_*`` variables that reproduce ``settings`` (defaults left out): the
    inverse of :func:`load`, for starting a stage process with the same configuration."""
    return {name: _env_value(value) for name, f, value in _values(settings) if value != f.default}


def _env_value(value: object) -> str:
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, frozenset | tuple):
        return ",".join(sorted(_env_value(v) for v in value))
    return str(value)
