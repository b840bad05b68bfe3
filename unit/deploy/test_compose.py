"""docker-compose.yml and the files it mounts, checked structurally and against the code
(settings, channels, ports). Nothing here runs Docker."""

from __future__ import annotations

import json
import re

import pytest

from notifsvc import channels, config
from unit.deploy.support import (
    CHANNELS,
    COMPOSE,
    ROOT,
    STAGES,
    Doc,
    Stage,
    compose,
    compose_command,
    compose_env,
    compose_stages,
    interpolate,
    load_yaml,
    render,
    stage_of,
    waiting_for_values,
)

CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


def services() -> dict[str, Doc]:
    found: dict[str, Doc] = compose()["services"]
    return found


def depends_on(service: Doc) -> dict[str, str]:
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in raw.items()}


def builds_notifsvc(service: Doc) -> bool:
    return "build" in service and service["build"]["dockerfile"] == "Dockerfile"


def has_healthcheck(service: Doc) -> bool:
    check = service.get("healthcheck")
    if check is not None:
        return not check.get("disable", False) and bool(check.get("test"))
    # The notifsvc image brings its own HEALTHCHECK.
    return builds_notifsvc(service) and "HEALTHCHECK" in (ROOT / "Dockerfile").read_text()


def test_interpolation_takes_the_defaults() -> None:
    assert interpolate("${A:-x}/${B}/${C-y}/plain") == "x//y/plain"


def test_every_dependency_exists_with_a_satisfiable_condition() -> None:
    all_services = services()
    for name, service in all_services.items():
        for target, condition in depends_on(service).items():
            assert target in all_services, f"{name} depends on unknown {target}"
            assert condition in CONDITIONS, f"{name} -> {target}: {condition}"
            if condition == "service_healthy":
                assert has_healthcheck(all_services[target]), f"{target} has no healthcheck"
            if condition == "service_completed_successfully":
                assert all_services[target].get("restart", "no") == "no", target


def test_start_up_order_has_no_cycle_and_puts_init_before_every_stage() -> None:
    all_services = services()

    def ancestors(name: str, seen: tuple[str, ...] = ()) -> set[str]:
        assert name not in seen, f"dependency cycle: {' -> '.join((*seen, name))}"
        out: set[str] = set()
        for target in depends_on(all_services[name]):
            out |= {target} | ancestors(target, (*seen, name))
        return out

    init = all_services["init"]
    assert compose_command(init)[-1] == "notifsvc migrate && notifsvc topics create"
    assert depends_on(init) == {
        "kafka": "service_healthy",
        "crdb-init": "service_completed_successfully",
    }
    assert "cockroach" in ancestors("init")
    for name, service in all_services.items():
        if stage_of(compose_command(service)) is not None:
            assert depends_on(service).get("init") == "service_completed_successfully", name
            assert {"kafka", "cockroach"} <= ancestors(name)
    assert depends_on(all_services["notificator-email"])["mailpit"] == "service_healthy"


def test_every_stage_runs_and_the_dispatcher_once() -> None:
    stages = compose_stages()
    assert {s.stage for s in stages} == set(STAGES)
    dispatchers = [s for s in stages if s.stage == "callbacks"]
    assert [s.where for s in dispatchers] == ["compose service callbacks"]
    (dispatcher,) = dispatchers
    settings = config.load(dispatcher.env)
    assert settings.callback_allowed_hosts and settings.callback_secret is not None
    assert settings.metrics_port > 0
    receiver = next(s for s in stages if s.stage == "receiver")
    assert config.load(receiver.env).callback_allowed_hosts == settings.callback_allowed_hosts


def test_one_notificator_per_channel() -> None:
    """Every registered channel has its notificator service, and no other channel has one."""
    deployed = sorted(s.channel for s in compose_stages() if s.channel)
    assert deployed == sorted(channels.REGISTRY)


def test_every_stage_starts_with_known_and_required_settings() -> None:
    known = config.known_variables()
    # The one-shot init service runs migrate and topics create with the shared settings.
    init = Stage("compose service init", "init", None, compose_env(services()["init"]))
    stages = [*compose_stages(), init]
    waiting = waiting_for_values(COMPOSE)
    for stage in stages:
        unknown = sorted(k for k in stage.env if k.startswith(config.PREFIX) and k not in known)
        assert not unknown, f"{stage.where}: unknown settings {unknown}"
        settings = config.load(stage.env)
        settings.require("kafka_bootstrap", "database_url")
        off = channels.disabled(settings)
        if stage.channel is not None:
            assert stage.channel not in off or stage.channel in waiting, (stage.where, off)
        if stage.stage == "receiver":
            assert set(CHANNELS) - waiting <= set(channels.enabled(settings)), (stage.where, off)
    for name, service in services().items():
        for key in compose_env(service):
            assert not key.startswith(config.PREFIX) or key in known, f"{name}: {key}"


def test_settings_point_at_services_of_the_stack() -> None:
    all_services = services()
    env = compose_env(all_services["router"])
    host, _, port = env["NOTIFSVC_KAFKA_BOOTSTRAP"].rpartition(":")
    kafka_env = {k: str(v) for k, v in all_services["kafka"]["environment"].items()}
    assert f"PLAINTEXT://{host}:{port}" in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert re.search(r"@cockroach:26257/notifsvc\b", env["NOTIFSVC_DATABASE_URL"])
    assert "CREATE DATABASE IF NOT EXISTS notifsvc" in compose_command(all_services["crdb-init"])
    assert env["NOTIFSVC_EMAIL_HOST"] == "mailpit"
    hosts = env["NOTIFSVC_WEBHOOK_ALLOWED_HOSTS"].split(",")
    assert hosts == ["provider-fakes"]
    for key in ("NOTIFSVC_SMS_API_URL", "NOTIFSVC_SLACK_API_URL"):
        assert env[key].startswith("http://provider-fakes:8070"), key
    # Status callbacks go to the provider fakes too, and wait for them.
    callbacks = all_services["callbacks"]
    assert compose_env(callbacks)["NOTIFSVC_CALLBACK_ALLOWED_HOSTS"].split(",") == hosts
    assert depends_on(callbacks)["provider-fakes"] == "service_healthy"


def test_receiver_scales_behind_one_published_port() -> None:
    all_services = services()
    receiver = all_services["receiver"]
    assert "ports" not in receiver and "container_name" not in receiver
    port = compose_env(receiver)["NOTIFSVC_HTTP_PORT"]
    assert compose_env(receiver)["NOTIFSVC_HTTP_HOST"] == "0.0.0.0"
    nginx = (ROOT / "deploy" / "compose" / "nginx.conf").read_text()
    assert f"http://receiver:{port};" in nginx
    assert "resolver 127.0.0.11" in nginx
    lb = all_services["lb"]
    assert lb["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert f"listen {port};" in nginx
    assert depends_on(lb) == {"receiver": "service_healthy"}
    for name, service in all_services.items():
        assert "container_name" not in service, f"{name}: a fixed name prevents --scale"


def test_prometheus_scrapes_every_stage_on_its_metrics_port() -> None:
    scrape = load_yaml(ROOT / "deploy" / "prometheus" / "prometheus.yml")["scrape_configs"]
    targets = {
        (name, sd["port"])
        for job in scrape
        for sd in job.get("dns_sd_configs", [])
        for name in sd["names"]
    }
    all_services = services()
    for name, service in all_services.items():
        found = stage_of(compose_command(service))
        if found is None:
            continue
        env = compose_env(service)
        port = env["NOTIFSVC_HTTP_PORT"] if found[0] == "receiver" else env["NOTIFSVC_METRICS_PORT"]
        assert (name, int(port)) in targets, name
    assert {name for name, _ in targets} <= set(all_services)
    mounts = all_services["prometheus"]["volumes"]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts


def test_grafana_provisioning_matches_the_mounts_and_the_dashboard() -> None:
    grafana = services()["grafana"]
    mounts = dict(
        v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"] if v.startswith("./")
    )
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = load_yaml(provisioning / "dashboards" / "notifsvc.yml")["providers"][0]
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    datasource = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    dashboard = json.loads(
        (ROOT / "deploy" / "grafana" / "dashboards" / "notifsvc.json").read_text()
    )
    uids = {p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p}
    assert uids == {datasource["uid"]}


def test_images_are_pinned_and_stages_share_one() -> None:
    notifsvc_images = set()
    for name, service in services().items():
        image = service["image"]
        tag = image.rpartition(":")[2]
        assert ":" in image and tag not in {"", "latest"}, f"{name}: {image}"
        if builds_notifsvc(service):
            notifsvc_images.add(image)
    assert len(notifsvc_images) == 1


@pytest.mark.parametrize("overlay", ["prod"])
def test_stop_grace_matches_kubernetes(overlay: str) -> None:
    grace = {
        d["metadata"]["name"].removeprefix("notifsvc-"): d["spec"]["template"]["spec"][
            "terminationGracePeriodSeconds"
        ]
        for d in render(overlay)
        if d["kind"] == "Deployment"
    }
    for name, service in services().items():
        if stage_of(compose_command(service)) is not None:
            assert service["stop_grace_period"] == f"{grace[name]}s", name


def test_a_plain_up_starts_no_notificator_whose_channel_is_off() -> None:
    """``docker compose up`` starts no notificator that could only exit with a configuration
    error (its channel off until credentials are set, e.g. a key that must parse): such a
    notificator waits behind a profile named after its channel, so that it restarts in no
    loop and a healthy stack means every service it started is healthy."""
    profiled = set()
    for name, service in services().items():
        found = stage_of(compose_command(service))
        if found is None or found[1] is None:
            continue
        channel = found[1]
        off = channels.disabled(config.load(compose_env(service)))
        if channel in off:
            assert service.get("profiles") == [channel], name
            profiled.add(channel)
        else:
            assert "profiles" not in service, name
    assert profiled == waiting_for_values(COMPOSE)
