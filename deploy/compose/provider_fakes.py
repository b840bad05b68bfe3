"""Stand-ins for the SMS (Twilio), Slack and webhook providers of the local compose stack.

Never for production: it accepts every request, records the last ones in memory and
prints one JSON line per request, so that ``docker compose logs provider-fakes`` shows
what the sms, slack and webhook notificators sent. Answers, shaped like the providers':

- ``POST .../Accounts/{sid}/Messages.json`` (Twilio): 201 ``{"sid": "SM...", ...}``
- ``POST .../chat.postMessage`` (Slack Web API): 200 ``{"ok": true, "ts": ...}``
- any other ``POST`` (a webhook): 200 ``{"ok": true}``
- ``GET /requests``: the recorded requests, newest last.

Run: ``python provider_fakes.py [--host H] [--port P]``; aiohttp is the only dependency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
import uuid
from collections import deque
from typing import Any

from aiohttp import web

log = logging.getLogger("provider_fakes")
KEEP = 1000


class Recorder:
    """The last :data:`KEEP` requests, oldest first."""

    def __init__(self) -> None:
        self.entries: deque[dict[str, Any]] = deque(maxlen=KEEP)


RECORDED = web.AppKey("recorded", Recorder)


def _answer(path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
    if path.endswith("/Messages.json"):
        sid = "SM" + uuid.uuid4().hex
        return 201, {"sid": sid, "status": "queued", "to": form.get("To"), "from": form.get("From")}
    if path.endswith("/chat.postMessage"):
        return 200, {"ok": True, "ts": f"{time.time():.6f}"}
    return 200, {"ok": True}


async def record(request: web.Request) -> web.Response:
    body = await request.read()
    form: dict[str, str] = {}
    if request.content_type == "application/x-www-form-urlencoded":
        form = {k: str(v) for k, v in (await request.post()).items()}
    status, answer = _answer(request.path, form)
    entry = {
        "time": time.time(),
        "method": request.method,
        "path": request.path,
        "headers": {k: v for k, v in request.headers.items() if k.lower() != "authorization"},
        "authorized": "Authorization" in request.headers,
        "body": body.decode(errors="replace"),
        "status": status,
    }
    request.app[RECORDED].entries.append(entry)
    log.info("%s", json.dumps(entry))
    return web.json_response(answer, status=status)


async def recorded(request: web.Request) -> web.Response:
    return web.json_response(list(request.app[RECORDED].entries))


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app() -> web.Application:
    app = web.Application()
    app[RECORDED] = Recorder()
    app.router.add_get("/requests", recorded)
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/{tail:.*}", record)
    return app


async def serve(host: str | None, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    runner = web.AppRunner(create_app(), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        log.info("provider fakes listening on %s:%d", host or "*", port)
        await stopping.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default=None, help="address to bind (default: all)")
    parser.add_argument("--port", type=int, default=8070)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
