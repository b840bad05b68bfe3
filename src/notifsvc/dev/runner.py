"""``notifsvc dev``: broker, database and every stage on this machine, stopped as one."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from notifsvc import channels
from notifsvc.config import Settings
from notifsvc.dev.infra import LocalInfra
from notifsvc.process import spawn, stop

log = logging.getLogger(__name__)


Stages = list[tuple[str, subprocess.Popen[bytes]]]


def run_dev(settings: Settings, *, infra_only: bool, keep: bool, state_dir: str) -> int:
    """Run until SIGINT/SIGTERM (or a stage dies); everything started is stopped."""
    stopping = threading.Event()

    def on_signal(_sig: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    infra = LocalInfra(Path(state_dir), keep=keep)
    stages: Stages = []
    code = 0
    try:
        ready = infra.start(settings)
        for key, value in infra.env.items():
            print(f"{key}={value}", flush=True)
        if not infra_only and not stopping.is_set():
            stages = _start_stages(ready, infra.env)
            _announce(ready, stages)
        code = _supervise(stages, stopping)
    finally:
        log.info("stopping")
        for name, proc in reversed(stages):
            log.info("stopping %s (exit %s)", name, stop(proc, timeout=20.0))
        infra.stop()
        if keep:
            print(f"kept the database folder: {infra.postgres.base_dir}", flush=True)
    return code


def _start_stages(settings: Settings, infra_env: dict[str, str]) -> Stages:
    env = {**os.environ, **infra_env}
    base = [sys.executable, "-m", "notifsvc"]
    commands = [("receiver", [*base, "receiver"]), ("router", [*base, "router"])]
    for name in channels.enabled(settings):
        commands.append((f"notificator[{name}]", [*base, "notificator", "--channel", name]))
    for name, reason in channels.disabled(settings).items():
        log.info("channel %s disabled: %s", name, reason)
    return [(name, spawn(cmd, env=env)) for name, cmd in commands]


def _announce(settings: Settings, stages: Stages) -> None:
    url = f"http://{settings.http_host}:{settings.http_port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and all(p.poll() is None for _, p in stages):
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):  # noqa: S310 - our own URL
                break
        except OSError:
            time.sleep(0.1)
    print(
        f"notifsvc dev: receiver on {url} ({', '.join(n for n, _ in stages)}); Ctrl-C stops",
        flush=True,
    )


def _supervise(stages: Stages, stopping: threading.Event) -> int:
    """Wait for a stop request (0) or for a stage to die (1)."""
    while not stopping.wait(0.2):
        for name, proc in stages:
            if proc.poll() is not None:
                log.error("%s exited with %s; stopping everything", name, proc.returncode)
                return 1
    return 0
