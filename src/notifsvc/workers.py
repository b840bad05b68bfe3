"""``notifsvc receiver --workers N``: N receiver processes sharing one port (SO_REUSEPORT)."""

from __future__ import annotations

import logging
import signal
import sys
import time

from notifsvc.process import spawn, stop

log = logging.getLogger(__name__)


def run_workers(count: int) -> int:
    """Start ``count`` receivers; stop them all on SIGTERM/SIGINT or when one dies (exit 2
    when it refused to start, as a stage does on a configuration error; else 1)."""
    procs = [spawn([sys.executable, "-m", "notifsvc", "receiver"]) for _ in range(count)]
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
