"""What the load generator posts: channel mix, re-posts, request bodies (pure, no I/O).

Shared by the locustfile and the runners, and unit-tested on its own.
"""

from __future__ import annotations

import random
import uuid
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_MIX = "log:1,webhook:1"


def parse_mix(raw: str) -> list[tuple[str, float]]:
    """``"log:3,webhook:1"`` as ``[("log", 3.0), ("webhook", 1.0)]``; a bare name weighs 1."""
    mix: list[tuple[str, float]] = []
    for part in raw.split(","):
        name, _, weight = part.strip().partition(":")
        if not name:
            continue
        value = float(weight) if weight.strip() else 1.0
        if value < 0:
            raise ValueError(f"LOAD_MIX: negative weight for {name!r}")
        mix.append((name.strip().lower(), value))
    if not mix or sum(w for _, w in mix) <= 0:
        raise ValueError(f"LOAD_MIX={raw!r}: expected e.g. log:1,webhook:1")
    return mix


def parse_share(raw: str) -> float:
    """A share between 0 and 1 (``LOAD_REPOST_SHARE``)."""
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"expected a share between 0 and 1, got {raw!r}")
    return value


def recipient(channel: str, webhook_url: str) -> str:
    return webhook_url if channel == "webhook" else "ops-team"


def body(channel: str, webhook_url: str, uid: str | None = None) -> dict[str, str]:
    """One notification as a client posts it."""
    return {
        "uuid": uid or str(uuid.uuid4()),
        "destination": channel,
        "to": recipient(channel, webhook_url),
        "txt": "disk almost full on db-7",
    }


@dataclass
class Workload:
    """Chooses each next body: a re-post of an accepted one, or a new one from the mix."""

    mix: list[tuple[str, float]]
    repost_share: float
    webhook_url: str
    rng: random.Random = field(default_factory=random.Random)
    accepted: deque[dict[str, str]] = field(default_factory=lambda: deque(maxlen=1000))

    def next(self) -> tuple[dict[str, str], bool]:
        """The next body and whether it re-posts an earlier accepted one."""
        if self.accepted and self.rng.random() < self.repost_share:
            return self.rng.choice(self.accepted), True
        names = [n for n, _ in self.mix]
        weights = [w for _, w in self.mix]
        channel = self.rng.choices(names, weights)[0]
        return body(channel, self.webhook_url), False

    def was_accepted(self, posted: dict[str, str]) -> None:
        self.accepted.append(posted)


def parse_duration(raw: str) -> int:
    """Seconds from ``90``, ``90s``, ``2m`` or ``1h`` (``LOAD_DURATION``)."""
    text = raw.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600}
    factor = units.get(text[-1:], 0)
    number = text[:-1] if factor else text
    seconds = int(float(number) * (factor or 1))
    if seconds <= 0:
        raise ValueError(f"expected a positive duration like 60s or 2m, got {raw!r}")
    return seconds


@dataclass(frozen=True)
class LoadConfig:
    """``make load-test`` settings, from ``LOAD_*`` environment variables."""

    users: int = 50
    spawn_rate: float = 10.0
    duration: int = 60
    repost_share: float = 0.1
    mix: str = DEFAULT_MIX
    user_rate: float = 20.0  # requests/s per user; 0: as fast as answers come
    host: str | None = None  # an already running deployment: measure through the API only
    webhook_url: str | None = None  # default: the local sink
    sink_delay_ms: float = 0.0
    drain_timeout: int = 180
    processes: int = 2

    @classmethod
    def from_env(cls, env: dict[str, str], cpus: int) -> LoadConfig:
        get = env.get
        config = cls(
            users=int(get("LOAD_USERS", "50")),
            spawn_rate=float(get("LOAD_SPAWN_RATE", "10")),
            duration=parse_duration(get("LOAD_DURATION", "60")),
            repost_share=parse_share(get("LOAD_REPOST_SHARE", "0.1")),
            mix=get("LOAD_MIX", DEFAULT_MIX),
            user_rate=float(get("LOAD_USER_RATE", "20")),
            host=get("LOAD_HOST") or None,
            webhook_url=get("LOAD_WEBHOOK_URL") or None,
            sink_delay_ms=float(get("LOAD_SINK_DELAY_MS", "0")),
            drain_timeout=parse_duration(get("LOAD_DRAIN_TIMEOUT", "180")),
            processes=max(1, int(get("LOAD_PROCESSES", str(cpus)))),
        )
        parse_mix(config.mix)  # fail early on a malformed mix
        if config.users <= 0 or config.spawn_rate <= 0:
            raise ValueError("LOAD_USERS and LOAD_SPAWN_RATE must be positive")
        if config.host is not None:
            check_target(config.host, allow_remote=get("LOAD_ALLOW_REMOTE") == "1")
        return config


LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def check_target(url: str, *, allow_remote: bool = False) -> None:
    """Refuse anything but an http(s) URL on this machine (unless explicitly allowed)."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"LOAD_HOST={url!r}: expected http://host:port")
    if parts.hostname not in LOOPBACK and not allow_remote:
        raise ValueError(
            f"LOAD_HOST={url!r}: only 127.0.0.1/localhost targets are load-tested "
            "(set LOAD_ALLOW_REMOTE=1 to point at a deployment you own)"
        )
