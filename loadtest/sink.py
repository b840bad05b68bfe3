"""A webhook sink on 127.0.0.1: answers every POST with 200 and counts deliveries per UUID.

``python -m loadtest.sink --port P [--delay-ms D]``. ``D`` simulates a provider's latency.
``GET /stats`` returns ``{"requests", "unique", "duplicates", "first", "last"}`` (unix times),
``GET /seen`` the delivery count per UUID (``Idempotency-Key``); ``POST /reset`` forgets all.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter

import orjson
import uvloop
from aiohttp import web

SEEN = web.AppKey("seen", Counter[str])
TIMES = web.AppKey("times", list[float])
DELAY = web.AppKey("delay", float)


async def hook(request: web.Request) -> web.Response:
    await request.read()
    delay = request.app[DELAY]
    if delay > 0:
        await asyncio.sleep(delay)  # the simulated provider's own latency
    key = request.headers.get("Idempotency-Key", "")
    request.app[SEEN][key] += 1
    times = request.app[TIMES]
    now = time.time()
    if not times:
        times.append(now)
        times.append(now)
    times[1] = now
    return web.Response(status=200, body=b'{"ok":true}', content_type="application/json")


async def get_stats(request: web.Request) -> web.Response:
    seen = request.app[SEEN]
    times = request.app[TIMES] or [0.0, 0.0]
    total = sum(seen.values())
    body = {
        "requests": total,
        "unique": len(seen),
        "duplicates": total - len(seen),
        "first": times[0],
        "last": times[1],
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def get_seen(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps(request.app[SEEN]), content_type="application/json")


async def reset(request: web.Request) -> web.Response:
    request.app[SEEN].clear()
    request.app[TIMES].clear()
    return web.Response(status=204)


def create_app(delay_ms: float) -> web.Application:
    app = web.Application()
    app[SEEN] = Counter()
    app[TIMES] = []
    app[DELAY] = delay_ms / 1000
    app.router.add_get("/stats", get_stats)
    app.router.add_get("/seen", get_seen)
    app.router.add_post("/reset", reset)
    app.router.add_post("/{tail:.*}", hook)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.sink", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    uvloop.install()
    web.run_app(
        create_app(args.delay_ms), host="127.0.0.1", port=args.port, access_log=None, print=None
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
