"""The bare endpoint the receiver is compared with: parse the JSON body, answer 202.

It runs exactly like ``notifsvc receiver --workers N``: N processes on uvloop sharing one
port with SO_REUSEPORT, no access log, the same response shape. Whatever the receiver does
beyond this (validation, the broker round trip) is what the benchmark prices.

With ``--acknowledged`` it also writes the body as it came to the receiver's topic (keyed
by its ``uuid``, through the receiver's :class:`~notifsvc.kafka.Producer` and settings)
and answers only once the broker acknowledged it: the least any receiver that keeps the
202 promise does, with no validation, metrics or tracing. Its cost is the floor the
receiver's is compared with.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading
from collections.abc import Awaitable, Callable

import orjson
import uvloop
from aiohttp import web

from notifsvc import config, receiver, topics
from notifsvc.config import Settings
from notifsvc.kafka import Producer
from notifsvc.process import spawn, stop

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.Response]]


async def post_notification(request: web.Request) -> web.Response:
    data = orjson.loads(await request.read())
    body = orjson.dumps({"uuid": data.get("uuid"), "status": "accepted"})
    return web.Response(status=202, body=body, content_type="application/json")


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(status=200, body=b'{"status":"ok"}', content_type="application/json")


PRODUCER = web.AppKey("producer", Producer)


def acknowledging(producer: Producer, topic: str, within: float) -> Handler:
    """The handler that writes the body to ``topic`` as it came, keyed by its ``uuid``, and
    answers 202 once acknowledged (what it needs bound once: an ``app[KEY]`` per request
    is a Python-level look-up the floor should not pay)."""

    async def post_acknowledged(request: web.Request) -> web.Response:
        value = await request.read()
        key = str(orjson.loads(value).get("uuid")).encode()
        await producer.send_within(within, topic, value, key=key)
        body = b'{"uuid":"' + key + b'","status":"accepted"}'
        return web.Response(status=202, body=body, content_type="application/json")

    return post_acknowledged


def create_app(acknowledged: Settings | None = None) -> web.Application:
    """The bare endpoint; with ``acknowledged``, the one that waits for the broker (the
    receiver's producer, topic and deadline, from those settings)."""
    app = web.Application()
    handler: Handler = post_notification
    if acknowledged is not None:
        timeout_ms = acknowledged.produce_timeout_ms
        app[PRODUCER] = producer = Producer(
            acknowledged, client_id="bare", linger_ms=receiver.LINGER_MS, timeout_ms=timeout_ms
        )
        handler = acknowledging(producer, topics.outstanding(acknowledged), timeout_ms / 1000)
        app.on_startup.append(_start)
        app.on_cleanup.append(_stop)
    app.router.add_post("/notification", handler)
    app.router.add_get("/healthz", healthz)
    return app


async def _start(app: web.Application) -> None:
    await app[PRODUCER].start()


async def _stop(app: web.Application) -> None:
    await app[PRODUCER].stop()


async def serve(host: str, port: int, acknowledged: bool = False) -> None:
    """One worker: listen until SIGTERM or SIGINT."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    runner = web.AppRunner(create_app(config.load() if acknowledged else None), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_port=True).start()
        await stopping.wait()
    finally:
        await runner.cleanup()


def run_workers(host: str, port: int, workers: int, acknowledged: bool = False) -> int:
    """``workers`` single-worker processes on one port; stop them all on SIGTERM/SIGINT."""
    command = [sys.executable, "-m", "loadtest.bare", "--host", host, "--port", str(port)]
    command += ["--acknowledged"] if acknowledged else []
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
    parser.add_argument(
        "--acknowledged", action="store_true", help="write each body to the broker before the 202"
    )
    args = parser.parse_args(argv)
    if args.workers > 1:
        return run_workers(args.host, args.port, args.workers, args.acknowledged)
    uvloop.run(serve(args.host, args.port, args.acknowledged))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
