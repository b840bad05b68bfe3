"""Where a server's CPU goes, by thread and by native library: ``perf`` samples.

py-spy shows Python frames, but it samples wall time: a line that writes to a socket is
charged whatever time the process was preempted there (the peer it wakes runs first). On
CPython 3.11 ``perf`` cannot name Python functions, but it does charge CPU (``cpu-clock``)
exactly to threads and libraries. That is enough to say how much of a request is the
interpreter running Python code, how much the kernel (sockets, wake-ups), how much
compiled extensions (uvloop, aiohttp's parser, orjson, multidict), and how much
librdkafka's own threads: ``make bench-cost BENCH_COST_ARGS=--perf`` prints it for the
receiver and the bare endpoint. Needs ``perf`` (Debian ``linux-perf``) and permission to
sample the kernel too (``kernel.perf_event_paranoid`` <= 1, or root).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import Iterable
from pathlib import Path

#: The parts a split names, in the order it prints them.
PARTS = ("interpreter", "native", "kernel", "librdkafka threads")
#: Samples per second: prime, so that it does not beat with the loop's 1 ms timers.
FREQUENCY = 499
#: Longest wait for perf to write its file and exit, or to report.
PERF_SECONDS = 60.0
_PARANOID = Path("/proc/sys/kernel/perf_event_paranoid")


class PerfUnavailable(RuntimeError):
    """``perf`` is not installed, or may not sample these processes."""


def part(comm: str, dso: str) -> str:
    """The part a sample belongs to, from its thread's name and its shared object (any
    thread but librdkafka's, named ``rdk:...``, is the process's own, whatever its name)."""
    if comm.startswith("rdk:"):
        return "librdkafka threads"
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


def may_sample_the_kernel(paranoid: Path = _PARANOID) -> bool:
    """Whether perf may sample kernel code for this user (without it, the kernel's share
    would read 0 and the others too high)."""
    if os.geteuid() == 0:
        return True
    try:
        return int(paranoid.read_text().strip()) <= 1
    except (OSError, ValueError):
        return False


class PerfRecording:
    """``perf record`` (``cpu-clock``) on some processes from :meth:`start` to :meth:`stop`;
    :meth:`cancel` ends it with nothing to report."""

    def __init__(self, pids: Iterable[int], path: Path) -> None:
        self.pids = list(pids)
        self.path = path
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        perf = shutil.which("perf")
        if perf is None:
            raise PerfUnavailable("perf is not installed (Debian: linux-perf)")
        if not may_sample_the_kernel():
            raise PerfUnavailable("perf may not sample the kernel: needs root or paranoid <= 1")
        pids = ",".join(str(p) for p in self.pids)
        args = ["record", "-q", "-e", "cpu-clock", "-F", str(FREQUENCY), "-p", pids]
        self._proc = await asyncio.create_subprocess_exec(
            perf,
            *args,
            "-o",
            str(self.path),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )

    async def stop(self) -> dict[str, float]:
        """Each part's share of the CPU sampled meanwhile (:func:`shares`)."""
        proc, self._proc = self._proc, None
        if proc is None:
            raise PerfUnavailable("not recording")
        err = await _interrupted(proc)
        if proc.returncode not in (0, -signal.SIGINT) or not self.path.exists():
            raise PerfUnavailable(f"perf record failed: {err.strip() or proc.returncode}")
        return shares(await _report(self.path))

    async def cancel(self) -> None:
        """End a recording whose run failed: perf stopped (killed if need be) and reaped,
        without an error of its own in the way of the run's."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(PerfUnavailable):
                await _interrupted(proc)


async def _interrupted(proc: asyncio.subprocess.Process) -> str:
    """Stop ``proc`` (SIGINT: perf writes its file); its standard error."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
    _, err = await _finished(proc, "stop")
    return err


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
    out, err = await _finished(proc, "report")
    if proc.returncode != 0:
        raise PerfUnavailable(f"perf report failed (exit {proc.returncode}): {err.strip()}")
    return out


async def _finished(proc: asyncio.subprocess.Process, doing: str) -> tuple[str, str]:
    """``proc``'s output and standard error once it exits; :class:`PerfUnavailable` (and
    ``proc`` killed and reaped) if it takes longer than :data:`PERF_SECONDS`."""
    try:
        out, err = await asyncio.wait_for(proc.communicate(), PERF_SECONDS)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise PerfUnavailable(f"perf did not {doing} within {PERF_SECONDS:g}s") from None
    return (out or b"").decode(errors="replace"), (err or b"").decode(errors="replace")
