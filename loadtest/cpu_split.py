"""Where a server's CPU goes, by thread and by native library: ``perf`` samples.

py-spy shows Python frames, but it samples wall time: a line that writes to a socket is
charged whatever time the process was preempted there (the peer it wakes runs first). On
CPython 3.11 ``perf`` cannot name Python functions, but it does charge CPU (``cpu-clock``)
exactly to threads and libraries. That is enough to say how much of a request is the
interpreter running Python code, how much the kernel (sockets, wake-ups), how much
compiled extensions (uvloop, aiohttp's parser, orjson, multidict), and how much
librdkafka's own threads: ``make bench-cost BENCH_COST_ARGS=--perf`` prints it for the receiver and
the bare endpoint. Needs ``perf`` (Debian ``linux-perf``) and permission to sample the
process (``kernel.perf_event_paranoid`` <= 1, or root).
"""

from __future__ import annotations

import asyncio
import shutil
import signal
from collections.abc import Iterable
from pathlib import Path

#: The parts a split names, in the order it prints them.
PARTS = ("interpreter", "native", "kernel", "librdkafka threads", "other threads")
#: Samples per second: prime, so that it does not beat with the loop's 1 ms timers.
FREQUENCY = 499


class PerfUnavailable(RuntimeError):
    """``perf`` is not installed, or may not sample these processes."""


def part(comm: str, dso: str) -> str:
    """The part a sample belongs to, from its thread's name and its shared object."""
    if comm.startswith("rdk:"):
        return "librdkafka threads"
    if comm != "python":  # e.g. a libuv or an asyncio.to_thread worker
        return "other threads"
    if dso.startswith("libpython"):
        return "interpreter"
    if dso.startswith("[kernel") or dso == "[vdso]":
        return "kernel"
    return "native"


def shares(report: str) -> dict[str, float]:
    """Each part's share of the samples, from ``perf report -q -t '|' --sort comm,dso``
    (lines ``' 61.84% |python |libpython3.11.so.1.0'``); every part named, 0 if absent."""
    out = dict.fromkeys(PARTS, 0.0)
    for line in report.splitlines():
        fields = [f.strip() for f in line.split("|")]
        if len(fields) != 3 or not fields[0].endswith("%"):
            continue
        out[part(fields[1], fields[2])] += float(fields[0][:-1]) / 100
    total = sum(out.values())
    if total <= 0:
        raise PerfUnavailable("perf recorded no samples")
    return {k: v / total for k, v in out.items()}


class PerfRecording:
    """``perf record`` on some processes from :meth:`start` to :meth:`stop`."""

    def __init__(self, pids: Iterable[int], path: Path) -> None:
        self.pids = list(pids)
        self.path = path
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        perf = shutil.which("perf")
        if perf is None:
            raise PerfUnavailable("perf is not installed (Debian: linux-perf)")
        pids = ",".join(str(p) for p in self.pids)
        args = ["record", "-q", "-F", str(FREQUENCY), "-p", pids, "-o", str(self.path)]
        self._proc = await asyncio.create_subprocess_exec(
            perf, *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )

    async def stop(self) -> dict[str, float]:
        """Each part's share of the CPU sampled meanwhile (:func:`shares`)."""
        proc, self._proc = self._proc, None
        if proc is None:
            raise PerfUnavailable("not recording")
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)  # perf writes its file and exits
        _, err = await proc.communicate()
        if proc.returncode not in (0, -signal.SIGINT) or not self.path.exists():
            raise PerfUnavailable(f"perf record failed: {err.decode(errors='replace').strip()}")
        return shares(await _report(self.path))


async def _report(path: Path) -> str:
    perf = shutil.which("perf") or "perf"
    args = ["report", "-i", str(path), "--stdio", "--no-children", "-q", "-t", "|"]
    proc = await asyncio.create_subprocess_exec(
        perf,
        *args,
        "--sort",
        "comm,dso",
        "-g",
        "none",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise PerfUnavailable(f"perf report failed: {err.decode(errors='replace').strip()}")
    return out.decode(errors="replace")
