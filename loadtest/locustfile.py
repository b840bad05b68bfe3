"""Locust users posting notifications (``make load-test``, ``make bench-receiver``).

Configuration (environment):
  LOAD_MIX           channel weights, default ``log:1,webhook:1``
  LOAD_REPOST_SHARE  share of requests re-posting an accepted UUID (client retries), default 0.1
  LOAD_WEBHOOK_URL   ``to`` of webhook notifications (a sink on 127.0.0.1)
  LOAD_USER_RATE     requests per second per user (0: as fast as answers come), default 0
  LOAD_RAW_DIR       if set, each process writes every request (end time, latency, status,
                     uuid, re-post flag) to ``raw-<pid>.json`` there when the test stops

Anything but 202 counts as a failure.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import orjson
from locust import FastHttpUser, constant, constant_throughput, events, task
from locust.runners import MasterRunner

from loadtest.workload import DEFAULT_MIX, Workload, parse_mix, parse_share

MIX = parse_mix(os.environ.get("LOAD_MIX", DEFAULT_MIX))
REPOST_SHARE = parse_share(os.environ.get("LOAD_REPOST_SHARE", "0.1"))
WEBHOOK_URL = os.environ.get("LOAD_WEBHOOK_URL", "http://127.0.0.1:9/hook")
USER_RATE = float(os.environ.get("LOAD_USER_RATE", "0"))
RAW_DIR = os.environ.get("LOAD_RAW_DIR")

# (end unix time, latency ms, status, uuid, re-post 0/1) of every request of this process
RECORDS: list[tuple[float, float, int, str, int]] = []
_written = False


class Poster(FastHttpUser):
    wait_time = constant_throughput(USER_RATE) if USER_RATE > 0 else constant(0)
    network_timeout = 30.0
    connection_timeout = 10.0

    def on_start(self) -> None:
        self.workload = Workload(MIX, REPOST_SHARE, WEBHOOK_URL)

    @task
    def post_notification(self) -> None:
        payload, repost = self.workload.next()
        started = time.perf_counter()
        with self.client.post(
            "/notification", json=payload, name="POST /notification", catch_response=True
        ) as resp:
            latency = (time.perf_counter() - started) * 1000
            status = resp.status_code or 0
            if status == 202:
                resp.success()
                self.workload.was_accepted(payload)
            else:
                resp.failure(f"HTTP {status}")
        RECORDS.append((time.time(), latency, status, payload["uuid"], int(repost)))


def _write(environment: Any) -> None:
    global _written  # noqa: PLW0603 - one flag per process
    if RAW_DIR is None or _written or isinstance(environment.runner, MasterRunner):
        return
    _written = True
    path = Path(RAW_DIR) / f"raw-{os.getpid()}.json"
    path.write_bytes(orjson.dumps(RECORDS))


def _on_test_stop(environment: Any, **_kw: Any) -> None:
    _write(environment)


def _on_quitting(environment: Any, **_kw: Any) -> None:
    _write(environment)


_hooks: Any = events  # locust's EventHook.add_listener is untyped
_hooks.test_stop.add_listener(_on_test_stop)
_hooks.quitting.add_listener(_on_quitting)
