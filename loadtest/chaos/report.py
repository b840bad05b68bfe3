"""What a scenario found, checked against the invariant, and the table that shows it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson


@dataclass(frozen=True)
class Deliveries:
    """How often each UUID reached its sink, and when it first did (unix seconds)."""

    counts: Counter[str]
    first: Mapping[str, float]


def log_deliveries(path: Path) -> Deliveries:
    """The log channel's file: one JSON line per delivery with ``uuid`` and ``time``."""
    counts: Counter[str] = Counter()
    first: dict[str, float] = {}
    if path.exists():
        for line in path.read_bytes().splitlines():
            if not line.strip():
                continue
            entry = orjson.loads(line)
            counts[entry["uuid"]] += 1
            first.setdefault(entry["uuid"], float(entry["time"]))
    return Deliveries(counts, first)


def joint(a: Deliveries, b: Deliveries) -> Deliveries:
    """What reached both sinks: per UUID the smaller count, and when it had reached both."""
    counts = Counter({u: min(n, b.counts[u]) for u, n in a.counts.items() if b.counts[u]})
    first = {u: max(a.first[u], b.first[u]) for u in counts if u in a.first and u in b.first}
    return Deliveries(counts, first)


def recovery(accepted: Mapping[str, float], seen: Deliveries, healed: float) -> float | None:
    """Seconds from the end of the last fault until the pipeline had caught up with it.

    Caught up: every notification accepted before ``healed`` was delivered; if none was,
    the first one accepted after it was. None when that never happened.
    """
    before = [seen.first.get(u) for u, at in accepted.items() if at <= healed]
    if before:
        if None in before:
            return None
        caught_up = max(x for x in before if x is not None)
    else:
        after = [seen.first[u] for u, at in accepted.items() if at > healed and u in seen.first]
        if not after:
            return None
        caught_up = min(after)
    return max(0.0, caught_up - healed)


@dataclass
class Result:
    scenario: str
    accepted: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    recover_s: float | None = None
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.lost == 0 and not self.failures

    def judge(self, accepted: Mapping[str, float], seen: Deliveries) -> None:
        """Fill accepted/delivered/lost/duplicated from what the sink saw."""
        self.accepted = len(accepted)
        self.delivered = sum(1 for u in accepted if seen.counts[u] > 0)
        self.lost = self.accepted - self.delivered
        self.duplicated = sum(1 for u in accepted if seen.counts[u] > 1)
        if self.lost:
            missing = sorted(u for u in accepted if seen.counts[u] == 0)
            self.failures.append(f"{self.lost} lost, e.g. {', '.join(missing[:3])}")

    def check(self, condition: bool, failure: str) -> None:
        if not condition:
            self.failures.append(failure)


HEADER = ("scenario", "accepted", "delivered", "lost", "dup", "recover s", "secs", "verdict")


def table(results: list[Result]) -> str:
    rows = [HEADER] + [
        (
            r.scenario,
            str(r.accepted),
            str(r.delivered),
            str(r.lost),
            str(r.duplicated),
            "-" if r.recover_s is None else f"{r.recover_s:.1f}",
            f"{r.seconds:.0f}",
            "ok" if r.ok else "FAIL",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in results:
        for text in r.failures:
            lines.append(f"{r.scenario}: FAIL: {text}")
        for text in r.notes:
            lines.append(f"{r.scenario}: {text}")
    return "\n".join(lines)
