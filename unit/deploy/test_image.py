"""The Dockerfile (read, not built: there is no Docker here) and the image's health check
script, which is run for real against servers on 127.0.0.1."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

from notifsvc import config
from notifsvc.process import free_port
from unit.deploy.support import ROOT

DOCKERFILE = ROOT / "Dockerfile"
HEALTHCHECK = ROOT / "deploy" / "docker" / "healthcheck.py"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def dockerignored(path: str) -> bool:
    """Docker's rule: the last matching .dockerignore pattern decides."""
    excluded = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/").removeprefix("**/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes) or fnmatch.fnmatchcase(
            parts[-1], pattern
        ):
            excluded = not negate
    return excluded


def test_multi_stage_on_python_311_slim() -> None:
    steps = instructions()
    args = dict(a.split("=", 1) for w, a in steps if w == "ARG" and "=" in a)
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    stages = [a for w, a in steps if w == "FROM"]
    assert len(stages) >= 2
    assert all(a.startswith("${PYTHON_IMAGE}") for a in stages)


def test_runtime_stage_runs_as_a_numeric_non_root_user() -> None:
    users = [a for w, a in final_stage() if w == "USER"]
    assert users, "the runtime stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0


def test_only_the_runtime_package_is_installed() -> None:
    runs = " ".join(a for w, a in instructions() if w == "RUN")
    assert re.search(r"pip install \.(\s|$)", runs), "pip install . (no extras)"
    assert "[dev" not in runs and "[test" not in runs and "-e " not in runs
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"])
    for heavy in project["optional-dependencies"]["dev"]:
        name = re.split(r"[<>=\[; ]", heavy)[0]
        assert name not in runtime, f"{name} (local broker/database binaries) in the image"


def test_command_environment_and_healthcheck() -> None:
    stage = final_stage()
    (cmd,) = [a for w, a in stage if w == "CMD"]
    assert json.loads(cmd) == ["notifsvc", "receiver"]
    env = " ".join(a for w, a in stage if w == "ENV")
    names = set(re.findall(r"\b(NOTIFSVC_[A-Z_]+)=", env))
    assert names and names <= config.known_variables()
    assert "NOTIFSVC_HTTP_HOST=0.0.0.0" in env
    (check,) = [a for w, a in stage if w == "HEALTHCHECK"]
    script = json.loads(check.split("CMD ", 1)[1])[-1]
    copies = [a.split() for w, a in stage if w == "COPY" and not a.startswith("--from")]
    assert ["deploy/docker/healthcheck.py", script] in copies


def test_build_context_keeps_what_copy_needs_and_nothing_else() -> None:
    sources = [
        part
        for w, a in instructions()
        if w == "COPY" and not a.startswith("--from")
        for part in a.split()[:-1]
    ]
    needed = [s.rstrip("/") for s in sources] + ["src/notifsvc/cli.py"]
    for path in needed:
        assert (ROOT / path).exists(), path
        assert not dockerignored(path), f"{path} is excluded from the build context"
    stale = ("src/notifsvc.egg-info/PKG-INFO", "src/notifsvc/__pycache__/cli.cpython-311.pyc")
    for path in (".venv/bin/python", "integration/conftest.py", ".git/HEAD", "deploy/k8s", *stale):
        assert dockerignored(path), f"{path} should stay out of the build context"


# --- the health check script, run for real --------------------------------------------


def load_healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", HEALTHCHECK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Server(ThreadingHTTPServer):
    """Answers GET /healthz and GET /metrics with ``status``."""

    status = 200


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        assert isinstance(self.server, _Server)
        self.send_response(self.server.status if self.path in {"/healthz", "/metrics"} else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def run_check(stage: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), stage],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_receiver_is_healthy_only_while_healthz_answers_200(server: _Server) -> None:
    port = str(server.server_address[1])
    assert (
        run_check("receiver", NOTIFSVC_HTTP_PORT=port, NOTIFSVC_HTTP_HOST="0.0.0.0").returncode == 0
    )
    server.status = 503
    failed = run_check("receiver", NOTIFSVC_HTTP_PORT=port)
    assert failed.returncode == 1 and "answered 503" in failed.stderr


def test_nothing_listening_is_unhealthy() -> None:
    port = str(free_port())
    assert run_check("receiver", NOTIFSVC_HTTP_PORT=port).returncode == 1
    assert run_check("router", NOTIFSVC_METRICS_PORT=port).returncode == 1


def test_consumers_are_checked_on_their_metrics_port(server: _Server) -> None:
    port = str(server.server_address[1])
    assert run_check("notificator", NOTIFSVC_METRICS_PORT=port).returncode == 0
    assert run_check("router", NOTIFSVC_METRICS_PORT=port).returncode == 0
    assert run_check("callbacks", NOTIFSVC_METRICS_PORT=port).returncode == 0
    server.status = 503
    assert run_check("callbacks", NOTIFSVC_METRICS_PORT=port).returncode == 1
    server.status = 200
    # Without a metrics port, being alive is all that can be checked.
    assert run_check("router").returncode == 0
    assert run_check("router", NOTIFSVC_METRICS_PORT="70000").returncode == 1
    assert run_check("migrate").returncode == 0


def test_stage_is_read_from_the_command_line(tmp_path: Path) -> None:
    healthcheck = load_healthcheck()
    assert (
        healthcheck.stage_of(["/opt/venv/bin/python", "/opt/venv/bin/notifsvc", "receiver"])
        == "receiver"
    )
    assert (
        healthcheck.stage_of(
            ["/sbin/docker-init", "--", "notifsvc", "notificator", "--channel", "sms"]
        )
        == "notificator"
    )
    assert healthcheck.stage_of(["/opt/venv/bin/notifsvc", "callbacks"]) == "callbacks"
    assert healthcheck.stage_of(["sh", "-c", "notifsvc migrate && notifsvc topics create"]) is None
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"python\0-m\0notifsvc\0router\0")
    assert healthcheck.main_cmdline(cmdline) == ["python", "-m", "notifsvc", "router"]
    assert healthcheck.main_cmdline(tmp_path / "missing") == []
