"""The bare endpoint the receiver is compared with: parse the JSON body, answer 202.

It runs exactly like ``notifsvc receiver --workers N``: N processes on uvloop sharing one
port with SO_REUSEPORT, no access log, the same response shape. Whatever the receiver does
beyond this (validation, the broker round trip) is what the benchmark prices.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading

import orjson
import uvloop
from aiohttp import web

from notifsvc.process import spawn, stop

log = logging.getLogger(__name__)


async def post_notification(request: web.Request) -> web.Response:
    data = orjson.loads(await request.read())
    body = orjson.dumps({"uuid": data.get("uuid"), "status": "accepted"})
    return web.Response(status=202, body=body, content_type="application/json")


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(status=200, body=b'{"status":"ok"}', content_type="application/json")


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/notification", post_notification)
    app.router.add_get("/healthz", healthz)
    return app


async def serve(host: str, port: int) -> None:
    """One worker: listen until SIGTERM or SIGINT."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    runner = web.AppRunner(create_app(), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_port=True).start()
        await stopping.wait()
    finally:
        await runner.cleanup()


def run_workers(host: str, port: int, workers: int) -> int:
    """``workers`` single-worker processes on one port; stop them all on SIGTERM/SIGINT."""
    command = [sys.executable, "-m", "loadtest.bare", "--host", host, "--port", str(port)]
    procs = [spawn(command) for _ in range(workers)]
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda _s, _f: done.set())
    signal.signal(signal.SIGINT, lambda _s, _f: done.set())
    code = 0
    while not done.wait(0.2):
        if any(p.poll() is not None for p in procs):
            log.error("a bare worker exited; stopping all")
            code = 1
            break
    for p in procs:
        stop(p, timeout=10.0)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bare", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    if args.workers > 1:
        return run_workers(args.host, args.port, args.workers)
    uvloop.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
