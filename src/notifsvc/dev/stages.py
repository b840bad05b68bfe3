"""The stage processes of ``notifsvc dev``, their log lines, and whether they own their
partitions yet.

Each stage logs JSON lines to a pipe; a thread per stage re-emits them through this
process's logging (text with the stage's name on a terminal, JSON otherwise) and watches
the consumers' own ``assigned``/``revoked`` lines (:mod:`notifsvc.kafka` logs them from its
rebalance callbacks). A stage is ready when its consumers own every partition of each of
their topics: the router ``outstanding-notifications``, a notificator its four lanes, the
callback dispatcher its two.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO

import orjson

from notifsvc import channels, logs, topics
from notifsvc.config import Settings
from notifsvc.kafka import ASSIGNED_LOG, REVOKED_LOG
from notifsvc.process import spawn

log = logging.getLogger(__name__)

#: What :mod:`notifsvc.kafka` logs from its rebalance callbacks, with the partitions.
OWNERSHIP = re.compile(
    rf"^({ASSIGNED_LOG.removesuffix(' %s')}|{REVOKED_LOG.removesuffix(' %s')}) \["
)
PARTITION = re.compile(r"\('((?:[^'\\]|\\.)*)', (\d+)\)")


@dataclass
class Stage:
    name: str  # as logs.stage_of names it: receiver, router, notify/<channel>, callbacks
    args: list[str]
    #: The topics whose every partition its consumers must own before it is ready.
    topics: frozenset[str] = frozenset()
    #: Where it serves /metrics (0: it does not; the receiver serves them on its API port).
    metrics_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    owned: set[tuple[str, int]] = field(default_factory=set)

    def owns_all(self, partitions: int) -> bool:
        return all((t, p) in self.owned for t in self.topics for p in range(partitions))


def plan(settings: Settings) -> list[Stage]:
    """The receiver, the router, one notificator per enabled channel and the callback
    dispatcher. With ``NOTIFSVC_METRICS_PORT``, the router serves /metrics there and each
    further stage on the next port up (they cannot share one)."""
    stages = [
        Stage("receiver", ["receiver"]),
        Stage("router", ["router"], frozenset({topics.outstanding(settings)})),
    ]
    for name in channels.enabled(settings):
        lanes = frozenset(topics.channel(settings, name, lane) for lane in topics.LANES)
        stages.append(Stage(f"notify/{name}", ["notificator", "--channel", name], lanes))
    callback_lanes = frozenset(topics.callbacks(settings, lane) for lane in topics.CALLBACK_LANES)
    stages.append(Stage("callbacks", ["callbacks"], callback_lanes))
    if settings.metrics_port:
        for offset, stage in enumerate(stages[1:]):
            stage.metrics_port = settings.metrics_port + offset
    return stages


class Stages:
    """Started with :meth:`start`, stopped together with :meth:`stop`."""

    def __init__(
        self, settings: Settings, env: dict[str, str], *, quiet_rebalances: bool = False
    ) -> None:
        """``quiet_rebalances``: the consumers' ``assigned``/``revoked`` lines (one per lane
        and stage, each listing partitions) at DEBUG, for a person."""
        self.settings = settings
        self.env = env | {"NOTIFSVC_LOG_FORMAT": "json"}  # read by the pumps
        self.quiet_rebalances = quiet_rebalances
        self.stages = plan(settings)
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def start(self) -> None:
        base = [sys.executable, "-m", "notifsvc"]
        for stage in self.stages:
            env = self.env | {"NOTIFSVC_METRICS_PORT": str(stage.metrics_port)}
            # stdout and stderr in one pipe (a stage prints nothing else: the log channel
            # writes to a file), and a process group of its own: a terminal's Ctrl-C reaches
            # the runner only, and each stage gets one signal, from :meth:`stop`.
            stage.proc = spawn(
                [*base, *stage.args], env=env, output=subprocess.PIPE, hook=os.setpgrp
            )
            assert stage.proc.stdout is not None
            pump = threading.Thread(target=self._pump, args=(stage, stage.proc.stdout), daemon=True)
            pump.start()

    def dead(self) -> Stage | None:
        """A stage that exited, if any."""
        return next((s for s in self.stages if s.proc and s.proc.poll() is not None), None)

    def waiting(self) -> list[str]:
        """The stages whose consumers do not own all their partitions yet."""
        with self._lock:
            partitions = self.settings.topic_partitions
            return [s.name for s in self.stages if not s.owns_all(partitions)]

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to every stage at once (each finishes its batch), then wait for each."""
        running = [s for s in self.stages if s.proc is not None and s.proc.poll() is None]
        for stage in running:
            assert stage.proc is not None
            stage.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for stage in running:
            assert stage.proc is not None
            try:
                code = stage.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs; killing it", stage.name, timeout)
                stage.proc.kill()
                code = stage.proc.wait()
            log.info("stopped %s (exit %s)", stage.name, code)

    def _pump(self, stage: Stage, pipe: IO[bytes]) -> None:
        """Re-emit ``stage``'s log lines until it closes its end of the pipe."""
        root = logging.getLogger()
        for raw in pipe:
            record = self._record(stage, raw)
            if record is None:
                continue
            change = _ownership(record)
            if change is not None and self.quiet_rebalances:
                record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            if record.levelno >= root.getEffectiveLevel():
                logging.getLogger(record.name).handle(record)
            if change is not None:  # after the line is out: nothing is announced before it
                self._apply(stage, *change)

    @staticmethod
    def _record(stage: Stage, raw: bytes) -> logging.LogRecord | None:
        line = raw.decode(errors="replace").rstrip()
        if not line:
            return None
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            event = None
        if not isinstance(event, dict) or "msg" not in event:  # a crash, a print
            event = {"level": "warning", "logger": f"{stage.name}.stderr", "msg": line}
        record = logs.record_of(event)
        record.stage = event.get("stage") or stage.name
        return record

    def _apply(self, stage: Stage, assigned: bool, partitions: set[tuple[str, int]]) -> None:
        with self._lock:
            if assigned:
                stage.owned |= partitions
            else:
                stage.owned -= partitions


def _ownership(record: logging.LogRecord) -> tuple[bool, set[tuple[str, int]]] | None:
    """(assigned, partitions) when ``record`` is a consumer's rebalance line."""
    if record.name != "notifsvc.kafka":
        return None
    message = record.getMessage()
    found = OWNERSHIP.match(message)
    if found is None:
        return None
    partitions = {(t, int(p)) for t, p in PARTITION.findall(message)}
    return found.group(1) == "assigned", partitions
