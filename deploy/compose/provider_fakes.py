"""Stand-ins for the SMS (Twilio), Slack and webhook providers of the local compose stack.

Never for production. The fakes are the ones the tests and ``notifsvc dev`` use
(:mod:`notifsvc.dev.fakes`), all on one port and taking any credentials; this adds a record
of the last requests, one JSON line per request on stdout, so that ``docker compose logs
provider-fakes`` shows what the sms, slack and webhook notificators sent. Answers, shaped
like the providers':

- ``POST /2010-04-01/Accounts/{sid}/Messages.json`` (Twilio): 201 ``{"sid": "SM...", ...}``
- ``POST /api/chat.postMessage`` (Slack Web API): 200 ``{"ok": true, "ts": ...}``
- any other ``POST`` (a webhook): 200 ``{"ok": true}``
- ``GET /requests``: the recorded requests, newest last.

Run: ``python provider_fakes.py [--host H] [--port P]`` where the notifsvc package is
installed (the notifsvc image).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from notifsvc.dev.fakes.slack import FakeSlack
from notifsvc.dev.fakes.twilio import FakeTwilio
from notifsvc.dev.fakes.webhook import WebhookSink

log = logging.getLogger("provider_fakes")
KEEP = 1000


class Recorder:
    """The last :data:`KEEP` requests, oldest first."""

    def __init__(self) -> None:
        self.entries: deque[dict[str, Any]] = deque(maxlen=KEEP)


RECORDED = web.AppKey("recorded", Recorder)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Each ``POST`` as the fakes answered it (the Authorization header left out)."""
    if request.method != "POST":
        return await handler(request)
    body = await request.read()  # kept by aiohttp for the fake's handler
    response = await handler(request)
    entry = {
        "time": time.time(),
        "method": request.method,
        "path": request.path,
        "headers": {k: v for k, v in request.headers.items() if k.lower() != "authorization"},
        "authorized": "Authorization" in request.headers,
        "body": body.decode(errors="replace"),
        "status": response.status,
    }
    request.app[RECORDED].entries.append(entry)
    log.info("%s", json.dumps(entry))
    return response


async def recorded(request: web.Request) -> web.Response:
    return web.json_response(list(request.app[RECORDED].entries))


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app() -> web.Application:
    app = web.Application(middlewares=[record])
    app[RECORDED] = Recorder()
    app.router.add_get("/requests", recorded)
    app.router.add_get("/healthz", healthz)
    # Any account and token; the webhook sink last: it takes every other POST.
    fakes = (
        FakeTwilio(account_sid=None, auth_token=None, keep=KEEP),
        FakeSlack(token=None, keep=KEEP),
        WebhookSink(keep=KEEP),
    )
    for fake in fakes:
        fake.routes(app)
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
