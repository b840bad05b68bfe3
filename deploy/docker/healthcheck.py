"""Container health check of every notifsvc stage (the image's ``HEALTHCHECK``).

The stage comes from the first argument or, by default, from the command line of the
container's main process (``/proc/1/cmdline``):

- ``receiver``: ``GET /healthz`` on ``NOTIFSVC_HTTP_PORT`` must answer 200;
- ``router``, ``notificator`` and ``callbacks``: they have no health endpoint, so
  ``GET /metrics`` on ``NOTIFSVC_METRICS_PORT`` must answer 200 when that port is set; when
  it is not set, being alive is all there is to check;
- anything else (``migrate``, ``topics create``, a shell): healthy.

Exit status 0 means healthy and 1 unhealthy, as Docker expects. Standard library only.
"""

from __future__ import annotations

import http.client
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

STAGES = ("receiver", "router", "notificator", "callbacks")
CONSUMERS = frozenset(STAGES[1:])
_ANY_ADDRESS = {"", "0.0.0.0", "::", "[::]"}  # noqa: S104 - addresses to map to loopback
TIMEOUT_S = 3.0


def stage_of(cmdline: Sequence[str]) -> str | None:
    """The stage a ``notifsvc ...`` command line runs, or None."""
    return next((arg for arg in cmdline if arg in STAGES), None)


def main_cmdline(proc: Path = Path("/proc/1/cmdline")) -> list[str]:
    try:
        raw = proc.read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def probe(host: str, port: int, path: str) -> str | None:
    """None when ``GET path`` answers 200, otherwise why not."""
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
    try:
        conn.request("GET", path)
        status = conn.getresponse().status
    except OSError as exc:
        return f"GET http://{host}:{port}{path} failed: {exc}"
    finally:
        conn.close()
    return None if status == 200 else f"GET http://{host}:{port}{path} answered {status}"


def _port(environ: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    port = int(raw)
    if not 0 <= port <= 65535:
        raise ValueError(f"{name}={raw!r} is not a TCP port")
    return port


def check(stage: str | None, environ: Mapping[str, str]) -> str | None:
    """None when ``stage`` is healthy, otherwise the reason."""
    try:
        if stage == "receiver":
            host = environ.get("NOTIFSVC_HTTP_HOST", "").strip()
            port = _port(environ, "NOTIFSVC_HTTP_PORT", 8090)
            assert port is not None
            return probe("127.0.0.1" if host in _ANY_ADDRESS else host, port, "/healthz")
        if stage in CONSUMERS:
            port = _port(environ, "NOTIFSVC_METRICS_PORT", None)
            return None if not port else probe("127.0.0.1", port, "/metrics")
    except ValueError as exc:
        return str(exc)
    return None


def main(argv: Sequence[str]) -> int:
    stage = argv[0] if argv else stage_of(main_cmdline())
    problem = check(stage, os.environ)
    if problem is not None:
        print(f"unhealthy ({stage}): {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
