"""Hostile clients: notifications no sane client posts, and where each of them ended up.

Every body comes from the scenario's seeded random generator (``--seed`` replays the same
bodies; only the order of the answers depends on timing): arbitrary Unicode with control
characters, NUL, line separators and astral planes, maximal lengths, odd destinations and
recipients, fields of the wrong type, unknown fields, and bodies that are not even JSON.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import aiohttp
import asyncpg
import orjson

#: Characters that break naive text handling: line and paragraph separators, NEL, CR LF,
#: an escape sequence, BOM, right-to-left override, a combining mark, DEL, a pile of poo.
ODD_CHARS = (
    *("\u2028", "\u2029", "\x85", "\r\n", "\x1b[31m", "\ufeff", "\u202e", "\u0301"),
    *("\x7f", "\t", "\U0001f4a9", "\\", '"', "</script>", "\u200b"),
)
#: Rarer, since either makes the whole notification refused: NUL (PostgreSQL cannot store
#: it) and a lone surrogate (not UTF-8; only the escaped JSON form can even carry it).
REFUSED_CHARS = ("\x00", "\ud800")
#: Values that are long in different ways: at the channel's limit (65,536 characters, which
#: no longer fits in the 64 KiB body limit), just under it, and four bytes per character.
LONG_TEXTS = ("x" * 65_536, "x" * 64_000, "\U0001f4a9" * 15_000, "\u2028" * 20_000)
GARBAGE_VALUES: tuple[object, ...] = (None, 0, -1, 2**63, 1e308, True, [], {}, "", [1, "x"])
FIELDS = ("uuid", "destination", "to", "txt", "subject", "priority")
TERMINAL = ("sent", "failed")


def text(rng: random.Random, longest: int = 200) -> str:
    """Up to ``longest`` characters of anything: controls, ASCII, the BMP, astral planes."""
    out: list[str] = []
    for _ in range(rng.randint(1, longest)):
        roll = rng.random()
        if roll < 0.15:
            out.append(rng.choice(ODD_CHARS))
        elif roll < 0.3:
            out.append(chr(rng.randint(1, 0x1F)))
        elif roll < 0.6:
            out.append(chr(rng.randint(0x20, 0x7E)))
        elif roll < 0.85:
            out.append(chr(rng.randint(0xA0, 0xD7FF)))
        else:
            out.append(chr(rng.randint(0xE000, 0x10FFFF)))
    if rng.random() < 0.04:
        out.insert(rng.randrange(len(out) + 1), rng.choice(REFUSED_CHARS))
    return "".join(out)


def _mostly(rng: random.Random, plain: object, odd: Sequence[object], share: float = 0.8) -> object:
    """``plain`` most of the time (so that enough notifications are accepted), else an odd
    one: each odd value alone gets the whole notification refused."""
    return plain if rng.random() < share else rng.choice(odd)


def _recipient(rng: random.Random, webhook: bool, hook: str) -> object:
    if not webhook:
        return _mostly(rng, text(rng), [" \u2028 ", "\x00", "ops", "", "\t"])
    odd = [
        *(hook.replace("http", "HTTP", 1), f"{hook}?q=%00&\u00e9=1#\u2028"),
        *(f"{hook}/{'a' * 2100}", "http://127.0.0.1:1/closed", "http://a:b@127.0.0.1/x"),
        *("ftp://127.0.0.1/x", "http://example.invalid/x", "http://127.0.0.1:99999/"),
        *(f" {hook}", hook.replace("/hook", "/HOOK"), "http://[::1]/x", text(rng, 40)),
    ]
    return _mostly(rng, hook, odd, 0.7)


def notification(rng: random.Random, hook: str, uid: str) -> object:
    """One notification as a hostile client posts it (sometimes not a notification at all)."""
    odd_destinations = ["LOG", " Log ", "WEBHOOK", "pigeon", "", "l\x00og"]
    destination = str(_mostly(rng, rng.choice(["log", "webhook"]), odd_destinations))
    odd_uuids = [uid.upper(), f"{{{uid}}}", f"urn:uuid:{uid}", uid[:-1]]
    body: dict[str, object] = {
        "uuid": _mostly(rng, uid, odd_uuids, 0.85),
        "destination": destination,
        "to": _recipient(rng, "webhook" in destination.lower(), hook),
        "txt": rng.choice(LONG_TEXTS) if rng.random() < 0.08 else text(rng),
    }
    if rng.random() < 0.5:
        body["subject"] = text(rng, 80)
    if rng.random() < 0.5:
        odd_priorities = ["HIGH", " normal ", "urgent", "h\u0130gh"]
        body["priority"] = _mostly(rng, rng.choice(["high", "low", "normal"]), odd_priorities)
    if rng.random() < 0.15:
        body[rng.choice(FIELDS)] = rng.choice([*GARBAGE_VALUES, text(rng)])
    if rng.random() < 0.03:
        body[text(rng, 10)] = text(rng, 10)  # an unknown field
    if rng.random() < 0.03:
        return rng.choice([[], "x", 1, None, [body]])
    return body


def encode(rng: random.Random, body: object) -> bytes:
    """``body`` as JSON: ASCII with escapes, raw UTF-8 (a lone surrogate then makes it
    invalid UTF-8), or now and then not JSON at all."""
    if rng.random() < 0.03:
        return rng.choice([b"{", b"\xff\xfe{}", b'{"uuid": 1,}', b"[" * 5000])
    if rng.random() < 0.5:
        return json.dumps(body).encode()
    return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")


@dataclass
class HostilePosts:
    """Posts ``count`` hostile notifications, ``rate`` per second, each retried with the same
    bytes (up to ``retries`` times) while it gets no answer or 503, as a client should."""

    base_url: str
    hook: str
    rng: random.Random
    count: int
    rate: float = 15.0
    retries: int = 3
    statuses: Counter[int] = field(default_factory=Counter)  # final answer per post
    accepted: dict[str, str] = field(default_factory=dict)  # uuid (as stored) -> channel

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        began = time.monotonic()
        async with aiohttp.ClientSession(self.base_url, timeout=timeout) as session:
            for i in range(self.count):
                await asyncio.sleep(max(0.0, began + i / self.rate - time.monotonic()))
                uid = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
                body = notification(self.rng, self.hook, uid)
                await self._post(session, encode(self.rng, body), body)

    async def _post(self, session: aiohttp.ClientSession, data: bytes, body: object) -> None:
        headers = {"Content-Type": "application/json"}
        status, answer = 0, b""
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(0.5)
            try:
                async with session.post("/notification", data=data, headers=headers) as resp:
                    status, answer = resp.status, await resp.read()
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            if status not in (0, 503):
                break
        self.statuses[status] += 1
        if status == 202:
            channel = str(body.get("destination", "")) if isinstance(body, dict) else ""
            self.accepted[str(orjson.loads(answer)["uuid"])] = channel.strip().lower()


async def states(dsn: str, uuids: Iterable[str]) -> dict[str, tuple[str, str | None]]:
    """``uuid -> (state, last_error)`` of the stored ones among ``uuids``."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT uuid, state, last_error FROM notifications WHERE uuid = ANY($1::uuid[])",
            [uuid.UUID(u) for u in uuids],
        )
    finally:
        await conn.close()
    return {str(r["uuid"]): (r["state"], r["last_error"]) for r in rows}


def unfinished(found: dict[str, tuple[str, str | None]], uuids: Iterable[str]) -> list[str]:
    """Those of ``uuids`` not yet ``sent``, nor ``failed`` with a reason, as ``uuid: state``."""
    out = []
    for u in uuids:
        state, error = found.get(u, ("missing", None))
        if state not in TERMINAL or (state == "failed" and not error):
            out.append(f"{u}: {state}")
    return sorted(out)
