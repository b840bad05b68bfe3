"""``notifsvc receiver --workers N``: N receiver processes sharing one port (SO_REUSEPORT).

Each process is told N (``NOTIFSVC_RECEIVER_WORKERS``), so that it enforces its share of
the per-key rate limit (:mod:`notifsvc.auth`); a share that cannot be enforced stops the
start before any process is spawned."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

from notifsvc import config
from notifsvc.auth import share_problem
from notifsvc.config import ConfigError
from notifsvc.process import spawn, stop

log = logging.getLogger(__name__)


def run_workers(count: int, settings: config.Settings | None = None) -> int:
    """Start ``count`` receivers with ``settings`` (default: read now); stop them all on
    SIGTERM/SIGINT or when one dies (exit 2 when it refused to start, as a stage does on a
    configuration error; else 1)."""
    settings = config.load() if settings is None else settings
    problem = share_problem(settings.rate_limit_per_key, settings.receiver_replicas, count)
    if problem is not None:
        raise ConfigError([problem])
    env = dict(os.environ) | {config.env_name("receiver_workers"): str(count)}
    args = [sys.executable, "-m", "notifsvc", "receiver"]
    procs = [spawn(args, env=env) for _ in range(count)]
    stopping = False

    def on_signal(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    code = 0
    while not stopping:
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            log.error(
                "receiver worker %d exited with %s; stopping all", dead[0].pid, dead[0].returncode
            )
            code = 2 if dead[0].returncode == 2 else 1
            break
        time.sleep(0.2)
    for p in procs:
        stop(p, timeout=15.0)
    return code
