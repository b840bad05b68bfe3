"""Child processes that die with their parent and stop politely, then firmly."""

from __future__ import annotations

import ctypes
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import IO, Any

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies, even by SIGKILL.

    Linux sends it when the *thread* that spawned the child exits, so spawn long-lived
    children from a long-lived thread (not from ``asyncio.to_thread`` workers)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    args: list[str],
    *,
    output: IO[Any] | int | None = None,
    env: dict[str, str] | None = None,
    user: str | None = None,
    hook: Callable[[], None] | None = None,
) -> subprocess.Popen[bytes]:
    def before_exec() -> None:
        _die_with_parent()
        if hook is not None:
            hook()

    return subprocess.Popen(
        args,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
        stdin=subprocess.DEVNULL,
        env=env,
        user=user,
        preexec_fn=before_exec,  # noqa: PLW1509 - only prctl, no locks taken
    )


def stop(proc: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
    """Signal ``proc``, wait up to ``timeout`` seconds, then kill it; return its exit code."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("pid %d did not stop within %.0fs; killing it", proc.pid, timeout)
            proc.kill()
    return proc.wait()


def owner_id() -> str:
    """A fresh name for a lease holder of this process: host, pid and a random part (two
    holders in one process, or a pid reused after a restart, never share one)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


#: Where Linux takes the local ports of outgoing connections and of ``bind(port 0)``.
EPHEMERAL_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"
#: How many ports below that range :func:`free_port` picks from.
_BELOW = 10_000


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at ``host`` now, for a server to bind soon after.

    Picked at random just below the kernel's ephemeral range: a port the kernel handed out
    (``bind`` to port 0) may meanwhile become the local port of some process's outgoing
    connection, and the server's bind then fails with "address already in use" (seen once in
    the test suite, two workers sharing the machine). Falls back to the kernel's choice.
    """
    low = _ephemeral_low()
    first = max(1024, low - _BELOW)
    rng = random.SystemRandom()
    for _ in range(50 if first < low else 0):
        port = rng.randrange(first, low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        chosen: int = s.getsockname()[1]
        return chosen


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768 where it cannot be read)."""
    try:
        with open(EPHEMERAL_RANGE) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def tail(path: os.PathLike[str] | str, lines: int = 20) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(no log)"
