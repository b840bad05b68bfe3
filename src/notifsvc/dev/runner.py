"""``notifsvc dev``: broker, database, provider stand-ins and every stage on this machine,
stopped as one.

The "ready" banner is printed once the receiver answers ``/readyz`` and every consumer
of every stage owns all its partitions, as the consumers themselves report it (see
:mod:`notifsvc.dev.stages`): from then on a notification is taken up at once, and none
waits for a consumer group to form.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import os
import signal
import socket
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from notifsvc import channels, config, logs
from notifsvc.channels.log import LogSettings
from notifsvc.config import Settings
from notifsvc.dev.infra import LocalInfra, prepare
from notifsvc.dev.stages import Stages
from notifsvc.dev.standins import HOST, OUTBOX_PORT, StandIns
from notifsvc.kafka import KafkaError

log = logging.getLogger(__name__)

#: How often the runner says what it is still waiting for.
WAITING_NOTE_SECONDS = 30.0


def run_dev(
    settings: Settings,
    *,
    infra_only: bool,
    keep: bool,
    state_dir: str,
    outbox_port: int = OUTBOX_PORT,
) -> int:
    """Run until SIGINT/SIGTERM (or a stage dies); everything started is stopped.
    Exit status 2, with a message and no traceback, when it cannot start."""
    stopping = threading.Event()

    def on_signal(_sig: int, _frame: object) -> None:
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # SIGHUP: the terminal closed
        signal.signal(sig, on_signal)
    problem = None if infra_only else ports_problem(settings)
    if problem is not None:
        print(f"notifsvc dev: {problem}", file=sys.stderr, flush=True)
        return 2
    # Their own process groups: Ctrl-C stops the stages first, then these.
    infra = LocalInfra(Path(state_dir), keep=keep, own_process_group=True)
    pipeline = Pipeline(Path(state_dir), outbox_port)
    try:
        infra.start()
        ready = infra.point(settings)
        asyncio.run(prepare(ready))
        for key, value in infra.env.items():
            print(f"{key}={value}", flush=True)
        if not infra_only and not stopping.is_set():
            pipeline.start(ready, infra.env)
        return _supervise(pipeline, stopping)
    except (OSError, RuntimeError, KafkaError) as exc:
        print(f"notifsvc dev: could not start: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        log.info("stopping")
        pipeline.stop()
        infra.stop()
        if keep:
            print(f"kept the database folder: {infra.postgres.base_dir}", flush=True)


class Pipeline:
    """The provider stand-ins and the stages, with what the banner needs."""

    def __init__(self, state_dir: Path, outbox_port: int) -> None:
        self.state_dir = state_dir
        self.outbox_port = outbox_port
        self.standins: StandIns | None = None
        self.stages: Stages | None = None
        self.settings: Settings | None = None

    def start(self, settings: Settings, infra_env: dict[str, str]) -> None:
        log_path = settings.section(LogSettings).path or self.state_dir / "log-channel.jsonl"
        self.standins = StandIns(settings, port=self.outbox_port, log_path=log_path)
        self.standins.start()
        for name in self.standins.channels:
            reason = channels.REGISTRY[name].disabled_reason(settings)
            log.info("channel %s goes to a local stand-in (%s)", name, reason)
        self.settings = self.standins.apply(settings).configure(LogSettings, path=log_path)
        env = {
            **os.environ,
            **infra_env,
            **self.standins.env(),
            LogSettings.env_name("path"): str(log_path),
        }
        if not settings.callback_allowed_hosts:  # status callbacks to the outbox's sink
            local = frozenset({HOST, "localhost"})
            self.settings = dataclasses.replace(self.settings, callback_allowed_hosts=local)
            env[config.env_name("callback_allowed_hosts")] = ",".join(sorted(local))
        for name, reason in channels.disabled(self.settings).items():
            log.info("channel %s disabled: %s", name, reason)
        quiet = logs.wants_text(settings.log_format, sys.stderr)  # a person is reading
        self.stages = Stages(self.settings, env, quiet_rebalances=quiet)
        self.stages.start()

    def waiting_for(self) -> list[str]:
        """What is not ready yet: stages, and the receiver until ``/readyz`` says so."""
        assert self.stages is not None and self.settings is not None
        waiting = self.stages.waiting()  # never the receiver: it has no consumer
        url = f"{_base_url(self.settings)}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - our own receiver
                return waiting
        except OSError:  # refused, or a 503 while the broker is not reachable
            return ["receiver", *waiting]

    def stop(self) -> None:
        if self.stages is not None:
            self.stages.stop()
        if self.standins is not None:
            self.standins.stop()


def _supervise(pipeline: Pipeline, stopping: threading.Event) -> int:
    """Wait for a stop request (0) or for a stage to die (1); announce readiness once."""
    stages = pipeline.stages
    announced = stages is None
    next_note = time.monotonic() + WAITING_NOTE_SECONDS
    while not stopping.wait(0.2):
        if stages is None:
            continue
        dead = stages.dead()
        if dead is not None:
            assert dead.proc is not None
            log.error("%s exited with %s; stopping everything", dead.name, dead.proc.returncode)
            return 1
        if announced:
            continue
        waiting = pipeline.waiting_for()
        if not waiting:
            print(banner(pipeline), flush=True)
            announced = True
        elif time.monotonic() > next_note:
            log.warning("not ready yet, waiting for: %s", ", ".join(waiting))
            next_note = time.monotonic() + WAITING_NOTE_SECONDS
    return 0


def _base_url(settings: Settings) -> str:
    host = settings.http_host
    host = "127.0.0.1" if host in {"0.0.0.0", ""} else host  # noqa: S104 - where to connect
    return f"http://{host}:{settings.http_port}"


def _port_problem(host: str, port: int, what: str, fix: str) -> str | None:
    """Why ``host:port`` cannot be listened on, or None. A receiver already listening
    (with SO_REUSEPORT) is found too: this socket does not set it."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except (OSError, OverflowError) as exc:
        if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
            return (
                f"{host}:{port} ({what}) is already in use: is `make run` (notifsvc dev) "
                f"running in another shell? Stop it (Ctrl-C there), or use another port: {fix}"
            )
        return f"cannot listen on {host}:{port} ({what}): {exc}"
    return None


def ports_problem(settings: Settings) -> str | None:
    """The first port the stages need that is taken, said for a person."""
    host, port = settings.http_host, settings.http_port
    found = _port_problem(host, port, "the receiver", f"NOTIFSVC_HTTP_PORT={port + 1} make run")
    if found is not None or not settings.metrics_port:
        return found
    for offset in range(len(channels.REGISTRY) + 1):  # the router, then each notificator
        metrics = settings.metrics_port + offset
        fix = f"NOTIFSVC_METRICS_PORT={settings.metrics_port + 100} make run"
        found = _port_problem("0.0.0.0", metrics, "metrics", fix)  # noqa: S104 - as served
        if found is not None:
            return found
    return None


def _try(settings: Settings, enabled: list[str]) -> list[str]:
    """Two example requests: a delivery (by email when it is enabled) and its state."""
    uid = str(uuid.uuid4())
    url = _base_url(settings)
    if "email" in enabled:
        body = (
            f'{{"uuid": "{uid}", "destination": "EMAIL", "to": "ada@example.com", '
            '"subject": "hello", "txt": "hello from notifsvc"}'
        )
    else:
        body = f'{{"uuid": "{uid}", "destination": "LOG", "to": "ops", "txt": "hello"}}'
    return [
        f"  curl -i -X POST {url}/notification -H 'Content-Type: application/json' \\",
        f"    -d '{body}'",
        f"  curl {url}/notification/{uid}",
    ]


def _push_recipients(standins: StandIns) -> list[str]:
    """A recipient each push stand-in delivers to (device tokens and subscriptions are
    not something a person can make up)."""
    lines = [
        _line(name, f"to: {standins.fakes[name].recipient()}")
        for name in channels.push()
        if name in standins.fakes
    ]
    if "webpush" in standins.fakes:
        lines.append(_line("", f"(POST {standins.url}/push/subscriptions makes another)"))
    return lines


def _line(name: str, text: str) -> str:
    return f"  {name:<9} {text}"


def banner(pipeline: Pipeline) -> str:
    """What a person needs once everything is ready: the URLs, two requests to try."""
    settings, standins, stages = pipeline.settings, pipeline.standins, pipeline.stages
    assert settings is not None and standins is not None and stages is not None
    url = _base_url(settings)
    enabled = list(channels.enabled(settings))
    metrics = [f"{url}/metrics"] + [
        f"{s.name} :{s.metrics_port}/metrics" for s in stages.stages if s.metrics_port
    ]
    shown = [c for c in enabled if c in {*standins.channels, "webhook", "log"}]
    lines = [
        "",
        f"notifsvc dev is ready: receiver on {url}, and every stage owns its partitions "
        f"({', '.join(stages.names)})",
        _line("API", f"{url}/notification  (POST; GET /notification/<uuid> for its state)"),
        _line("docs", f"{url}/docs"),
        _line("console", f"{url}/console  (list, retry, cancel and replay notifications)"),
        _line("outbox", f"{standins.url}/  what the stand-ins received: {', '.join(shown)}"),
        _line(
            "webhooks", f"{standins.url}/<any path> is a sink (e.g. {standins.url}/hooks/orders)"
        ),
        _line(
            "callbacks",
            f'"callback_url": "{standins.url}/callbacks/<any>" shows a notification\'s '
            "status events in the outbox",
        ),
        _line("metrics", ", ".join(metrics)),
        *_push_recipients(standins),
        "Try:",
        *_try(settings, enabled),
        "Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)
