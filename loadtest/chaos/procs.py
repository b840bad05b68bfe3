"""Stages as child processes (``python -m notifsvc ...``) that scenarios kill and restart."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from loadtest.chaos.infra import Lane
from notifsvc.kafka import ASSIGNED_LOG
from notifsvc.process import spawn, stop

log = logging.getLogger(__name__)

ASSIGNED = ASSIGNED_LOG % "[('"  # what notifsvc.kafka logs once a member owns partitions


class StageProcess:
    """One stage process; every run logs to a file of its own."""

    def __init__(self, lane: Lane, name: str, args: list[str], **settings: str) -> None:
        self.lane = lane
        self.name = name
        self.args = args
        self.env = lane.stage_env(**settings)
        self.runs = 0
        self.unexpected_exits: list[int] = []
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.lane.folder / f"{self.name}.{self.runs}.log"

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.alive:
            return
        self._note_exit()
        self.runs += 1
        with open(self.log_path, "ab") as out:
            self._proc = spawn(
                [sys.executable, "-m", "notifsvc", *self.args], output=out, env=self.env
            )
        log.info("%s: started (run %d, pid %d)", self.name, self.runs, self._proc.pid)

    def _note_exit(self) -> None:
        """Remember a run that ended without being asked to (a crash)."""
        if self._proc is not None and self._proc.poll() is not None:
            self.unexpected_exits.append(self._proc.returncode)
            log.warning("%s exited by itself with %s", self.name, self._proc.returncode)
        self._proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
            log.info("%s: killed (pid %d)", self.name, proc.pid)
        elif proc is not None:
            self.unexpected_exits.append(proc.returncode)

    async def terminate(self, within: float = 30.0) -> tuple[int, float]:
        """SIGTERM and wait; returns the exit code and the seconds it took to stop."""
        proc, self._proc = self._proc, None
        if proc is None:
            return -1, 0.0
        began = time.monotonic()
        code = await asyncio.to_thread(stop, proc, sig=signal.SIGTERM, timeout=within)
        return code, time.monotonic() - began

    def stop(self) -> None:
        """Stop whatever runs (politely, then firmly); safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop(proc, timeout=15.0)

    async def logged(self, text: str, *, within: float) -> bool:
        """Wait until the current run's log contains ``text``; False after ``within`` seconds."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.crashed:
                return False
            if text in self.log_path.read_text(errors="replace"):
                return True
            await asyncio.sleep(0.1)
        return False

    @property
    def crashed(self) -> bool:
        return self._proc is not None and self._proc.poll() is not None


class Fleet:
    """The stage processes of one scenario, all stopped when it ends, however it ends."""

    def __init__(self, lane: Lane) -> None:
        self.lane = lane
        self.stages: list[StageProcess] = []

    def add(self, name: str, args: list[str], **settings: str) -> StageProcess:
        stage = StageProcess(self.lane, name, args, **settings)
        self.stages.append(stage)
        stage.start()
        return stage

    def receiver(self, **settings: str) -> StageProcess:
        return self.add("receiver", ["receiver"], **settings)

    def router(self, name: str = "router", **settings: str) -> StageProcess:
        return self.add(name, ["router"], **settings)

    def notificator(self, channel: str, name: str = "", **settings: str) -> StageProcess:
        return self.add(
            name or f"notificator-{channel}", ["notificator", "--channel", channel], **settings
        )

    def callbacks(self, name: str = "callbacks", **settings: str) -> StageProcess:
        """The status-callback dispatcher (``notifsvc callbacks``)."""
        return self.add(name, ["callbacks"], **settings)

    def stop(self) -> None:
        for stage in reversed(self.stages):
            stage.stop()

    def crashes(self) -> dict[str, list[int]]:
        """Stages that exited by themselves, with their exit codes."""
        for stage in self.stages:
            if stage.crashed:
                stage._note_exit()
        return {s.name: s.unexpected_exits for s in self.stages if s.unexpected_exits}

    async def ready(self, *, within: float = 60.0) -> None:
        """Wait until the receiver answers and every consumer owns partitions."""
        checks = [s.logged(ASSIGNED, within=within) for s in self.stages if s.args[0] != "receiver"]
        results = await asyncio.gather(healthy(self.lane.base_url, within=within), *checks)
        if not all(results):
            raise RuntimeError(f"{self.lane.name}: stages not ready within {within}s")


async def healthy(base_url: str, *, within: float) -> bool:
    """Wait until ``GET /healthz`` answers 200."""
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"{base_url}/healthz") as resp:
                    if resp.status == 200:
                        return True
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
    return False
