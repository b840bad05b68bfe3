"""The load of ``make bench-cost``, as processes of their own so that they never share a
core's time with the process they measure.

``python -m loadtest.cost_load http URL PATH --count N --connections C --batch B`` posts N
notifications (one per request, or pre-built arrays of B to ``/notifications``) over C
keep-alive connections with a minimal HTTP/1.1 client (far cheaper per request than aiohttp's
or Locust's), and writes JSON to ``--out``: statuses and latencies in ms.

``python -m loadtest.cost_load produce BOOTSTRAP TOPIC --count N --inflight C`` is the Go
seed service's produce pattern at C connections: one plain confluent-kafka producer,
``linger.ms=5``, the notification's UUID as key, C messages waiting for their
acknowledgement at any time (and with ``--rate R`` no more than R a second). It writes
the seconds it took to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import confluent_kafka
import orjson
import uvloop

_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")


def body(index: int = 0, destination: str = "log", to: str = "ops-team") -> dict[str, str]:
    """One notification as a client posts it (by default the log channel's, as the load
    test's). Log recipients vary as a real batch's would; a webhook's is its URL."""
    return {
        "uuid": str(uuid.uuid4()),
        "destination": destination,
        "to": f"{to}-{index % 1000}" if destination == "log" else to,
        "txt": f"disk almost full on db-{index % 100}",
    }


def requests(host: str, path: str, count: int, batch: int, *to: str) -> list[bytes]:
    """Every request, built before the clock starts (``to``: destination and recipient)."""
    out = []
    for start in range(0, count, batch):
        items = [body(i, *to) for i in range(start, min(count, start + batch))]
        payload = orjson.dumps(items if path.endswith("/notifications") else items[0])
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        )
        out.append(head.encode() + payload)
    return out


async def _connection(
    host: str, port: int, todo: list[bytes], latencies: list[float], statuses: Counter[int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while todo:
            request = todo.pop()
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            match = _LENGTH.search(head)
            await reader.readexactly(int(match.group(1)) if match else 0)
            latencies.append(1000 * (time.perf_counter() - started))
            statuses[int(head[9:12])] += 1
    finally:
        writer.close()


async def post_all(url: str, path: str, count: int, connections: int, batch: int, *to: str) -> str:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    todo = requests(f"{host}:{port}", path, count, batch, *to)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    started = time.monotonic()
    await asyncio.gather(
        *(_connection(host, port, todo, latencies, statuses) for _ in range(connections))
    )
    seconds = time.monotonic() - started
    out = {
        "statuses": {str(k): v for k, v in statuses.items()},
        "latencies_ms": latencies,
        "seconds": seconds,
    }
    return orjson.dumps(out).decode()


def produce(
    bootstrap: str, topic: str, count: int, inflight: int, rate: float = 0.0
) -> tuple[float, float]:
    """The Go pattern with ``inflight`` requests waiting for their acknowledgement at any
    time (one per connection, as an HTTP handler that answers after the ack), and with
    ``rate`` no more than that many a second; returns the seconds it took and the CPU
    seconds this process spent meanwhile (librdkafka's threads too): what producing alone
    costs a client, with nothing else to do."""
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all", "enable.idempotence": True}
    )
    values = [(str(uuid.uuid4()).encode(), orjson.dumps(body(i))) for i in range(count)]
    acked = [0]

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            raise SystemExit(f"not delivered: {err}")
        acked[0] += 1

    started, cpu = time.monotonic(), time.process_time()
    sent = 0
    while acked[0] < count:
        due = min(count, acked[0] + inflight)
        if rate:
            due = min(due, int(rate * (time.monotonic() - started)) + 1)
        for key, value in values[sent:due]:
            producer.produce(topic, value, key, on_delivery=on_delivery)
        sent = max(sent, due)
        producer.poll(0.001)
    return time.monotonic() - started, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.cost_load", description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    http = sub.add_parser("http")
    http.add_argument("url")
    http.add_argument("path")
    http.add_argument("--count", type=int, required=True)
    http.add_argument("--connections", type=int, default=16)
    http.add_argument("--batch", type=int, default=1)
    http.add_argument("--destination", default="log")
    http.add_argument("--to", default="ops-team")
    prod = sub.add_parser("produce")
    prod.add_argument("bootstrap")
    prod.add_argument("topic")
    prod.add_argument("--count", type=int, required=True)
    prod.add_argument("--inflight", type=int, required=True)
    prod.add_argument("--rate", type=float, default=0.0, help="per second (0: no limit)")
    for command in (http, prod):
        command.add_argument("--out", required=True, help="where the JSON result goes")
    args = parser.parse_args(argv)
    if args.what == "http":
        line = uvloop.run(
            post_all(
                args.url,
                args.path,
                args.count,
                args.connections,
                args.batch,
                args.destination,
                args.to,
            )
        )
    else:
        seconds, cpu = produce(args.bootstrap, args.topic, args.count, args.inflight, args.rate)
        line = orjson.dumps({"seconds": seconds, "cpu_seconds": cpu}).decode()
    Path(args.out).write_text(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
