"""The Kubernetes manifests, rendered offline with kustomize and checked against the
Kubernetes schemas (kubernetes-validate --strict), the custom resources' field lists, and
what the code expects (settings, topics, consumer groups, ports, drain times)."""

from __future__ import annotations

import copy
import functools
import inspect
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate
import pytest
import yaml

from notifsvc import channels, config, topics
from notifsvc.kafka import Producer
from notifsvc.notificator import Notificator
from notifsvc.router import Router
from unit.deploy.support import (
    CHANNELS,
    K8S,
    K8S_SETTINGS,
    OVERLAYS,
    SECRET_TEMPLATE,
    STAGES,
    Doc,
    container_env,
    containers,
    jsonschema,
    k8s_stages,
    load_yaml,
    named,
    of_kind,
    render,
    selects,
    stage_of,
    unset_variables,
    waiting_for_values,
    workloads,
)

#: Oldest Kubernetes the manifests target, and the newest schemas kubernetes-validate has.
K8S_VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())
CUSTOM_KINDS = {
    "Kafka",
    "KafkaNodePool",
    "KafkaTopic",
    "KafkaUser",
    "ScaledObject",
    "TriggerAuthentication",
    "CrdbCluster",
}
ZONE = "topology.kubernetes.io/zone"
#: What a pod that reaches the internet (notificators, the callback dispatcher) must never
#: reach: private, loopback, link-local (cloud metadata) and carrier-grade NAT ranges.
CLOSED_RANGES = {
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "100.64.0.0/10",
    "127.0.0.0/8",
}
#: The internet ports of each stage that has any: providers (SMTP too) and callback URLs.
INTERNET_PORTS = {"notificator": {25, 80, 443, 465, 587}, "callbacks": {80, 443}}
#: A callback dispatcher's drain after SIGTERM: the POSTs under way, each bounded by
#: NOTIFSVC_CALLBACK_TIMEOUT_MS, this many times over (a pass may wait on the rate limit
#: and the connection pool before its POST), then the retry/DLQ produce.
CALLBACK_DRAIN_TIMEOUTS = 4


@functools.cache
def crd_schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = load_yaml(Path(__file__).with_name("crd_schemas.yaml"))["schemas"]
    return schemas


def crd_errors(doc: Doc) -> list[str]:
    schema = crd_schemas().get(f"{doc['apiVersion']}/{doc['kind']}")
    if schema is None:
        return [f"no field list for {doc['apiVersion']} {doc['kind']}"]
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]


#: Settings whose value is a file the container must have (TLS certificates and keys).
SETTING_CLASSES: list[type[Any]] = [config.Settings, *config.registered_sections()]
FILE_SETTINGS = frozenset(
    name
    for cls in SETTING_CLASSES
    for name, f in config.variables(cls)
    if f.name.endswith("_file") or f.metadata["parse"] is config.as_readable_file
)


def settings_of(env: dict[str, str]) -> config.Settings:
    """The settings a stage starts with. Files it names are mounted in the cluster, not
    here: each is replaced by a file of this machine before parsing (that each is mounted
    is checked by test_every_file_a_stage_names_is_mounted)."""
    stand_in = Path(__file__)
    local = {k: str(stand_in) if k in FILE_SETTINGS and v else v for k, v in env.items()}
    return config.load(local)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_into_its_namespace(overlay: str) -> None:
    docs = render(overlay)
    namespace = of_kind(docs, "Namespace")
    assert len(namespace) == 1
    name = namespace[0]["metadata"]["name"]
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == name, doc["metadata"]["name"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "notifsvc"


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_builtin_resource_passes_kubernetes_validate_strict(
    overlay: str, version: str
) -> None:
    problems = []
    for doc in render(overlay):
        if doc["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(map(str, exc.path))
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(exc.message)
    assert not problems, "\n".join(problems)


def test_secret_template_passes_kubernetes_validate_strict() -> None:
    template = load_yaml(SECRET_TEMPLATE)
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(template, version, strict=True)
    base = load_yaml(K8S / "base" / "kustomization.yaml")
    assert SECRET_TEMPLATE.name not in base["resources"], "the template must not be applied"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_use_only_known_fields(overlay: str) -> None:
    docs = render(overlay)
    assert {d["kind"] for d in docs} >= CUSTOM_KINDS
    problems = [
        f"{doc['kind']}/{doc['metadata']['name']}: {error}"
        for doc in docs
        if doc["kind"] in CUSTOM_KINDS
        for error in crd_errors(doc)
    ]
    assert not problems, "\n".join(problems)


def test_the_checks_catch_mistakes() -> None:
    """Each validator rejects a typical slip, so a green run means something."""
    docs = render("dev")
    deployment = copy.deepcopy(named(docs, "Deployment", "notifsvc-router"))
    deployment["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)

    scaled = copy.deepcopy(named(docs, "ScaledObject", "notifsvc-router"))
    scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 2000
    topic = copy.deepcopy(of_kind(docs, "KafkaTopic")[0])
    del topic["metadata"]["labels"]["strimzi.io/cluster"]
    crdb = copy.deepcopy(of_kind(docs, "CrdbCluster")[0])
    crdb["spec"]["node"] = crdb["spec"].pop("nodes")
    for broken in (scaled, topic, crdb):
        assert crd_errors(broken), broken["kind"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_stage_starts_with_known_and_required_settings(overlay: str) -> None:
    stages = k8s_stages(overlay)
    deployed = sorted(s.channel for s in stages if s.channel)
    waiting = waiting_for_values(*K8S_SETTINGS)
    # The dev install leaves out the notificators of channels waiting for credentials.
    expected = set(CHANNELS) - (waiting if overlay == "dev" else set())
    assert deployed == sorted(expected), "one notificator per registered channel, no other"
    assert {s.stage for s in stages} == set(STAGES)
    known = config.known_variables()
    unset = unset_variables(*K8S_SETTINGS)
    for stage in stages:
        unknown = sorted(k for k in stage.env if k.startswith(config.PREFIX) and k not in known)
        assert not unknown, f"{stage.where}: unknown settings {unknown}"
        settings = settings_of(stage.env)  # parses every value as the stage would
        settings.require("kafka_bootstrap", "database_url")
        off = channels.disabled(settings)
        if stage.channel is not None:
            assert stage.channel in channels.REGISTRY, f"{stage.where}: no such channel"
            assert stage.channel not in off or stage.channel in waiting, (stage.where, off)
        if stage.stage == "receiver":
            # The receiver accepts only destinations whose channel is configured.
            assert set(deployed) - waiting <= set(channels.enabled(settings)), (stage.where, off)
        if stage.stage == "callbacks":
            # Callbacks are on (hosts allowed) and signed, unless the secret is left to the
            # operator on purpose (commented out with the placeholder).
            assert settings.callback_allowed_hosts, stage.where
            assert settings.callback_secret is not None or "NOTIFSVC_CALLBACK_SECRET" in unset
            assert settings.callback_timeout_ms > 0 and settings.callback_concurrency > 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_receiver_and_dispatcher_allow_the_same_callback_hosts(overlay: str) -> None:
    """The receiver refuses a callback_url the dispatcher would not call, and the other way
    round: both read NOTIFSVC_CALLBACK_ALLOWED_HOSTS, and must read the same value."""
    stages = k8s_stages(overlay)
    hosts = {s.stage: settings_of(s.env).callback_allowed_hosts for s in stages}
    assert hosts["callbacks"] and hosts["receiver"] == hosts["callbacks"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_migration_job_runs_migrate_with_the_stage_settings(overlay: str) -> None:
    docs = render(overlay)
    job = named(docs, "Job", "notifsvc-migrate")
    (container,) = containers(job)
    assert container["command"] == ["notifsvc", "migrate"]
    env = container_env(docs, container)
    settings_of(env).require("database_url")
    receiver = named(docs, "Deployment", "notifsvc-receiver")
    receiver_env = container_env(docs, containers(receiver)[0])
    assert env["NOTIFSVC_DATABASE_URL"] == receiver_env["NOTIFSVC_DATABASE_URL"]


def test_secret_values_never_sit_in_the_configmap() -> None:
    secret_vars = config.secret_variables()
    for overlay in OVERLAYS:
        for configmap in of_kind(render(overlay), "ConfigMap"):
            leaked = secret_vars & set(configmap["data"])
            assert not leaked, f"{overlay}: {sorted(leaked)} belong in the Secret"
    template_keys = set(load_yaml(SECRET_TEMPLATE)["stringData"])
    assert template_keys <= config.known_variables()
    assert "NOTIFSVC_DATABASE_URL" in template_keys


def _consumer(settings: config.Settings, stage: str, channel: str | None) -> Router | Notificator:
    if stage == "router":
        return Router(settings)
    assert channel is not None
    return Notificator(settings, channels.REGISTRY[channel](settings))


def _consumed(
    settings: config.Settings, stage: str, channel: str | None
) -> list[tuple[str, list[str]]]:
    """(consumer group, topics) of every consumer the stage runs."""
    if stage == "callbacks":
        # The dispatcher: one group per lane (notifsvc.topics names both).
        return [
            (topics.dispatcher_group(settings, lane), [topics.callbacks(settings, lane)])
            for lane in topics.CALLBACK_LANES
        ]
    member = _consumer(settings, stage, channel)
    groups = [member.consumer] if isinstance(member, Router) else member.consumers.values()
    return [(c._config["group.id"], c._topics) for c in groups]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scaledobjects_follow_the_consumer_group_and_its_partitions(overlay: str) -> None:
    """KEDA watches the group and topic the stage really consumes, and never scales a group
    past the topic's partitions (members beyond that would sit idle)."""
    docs = render(overlay)
    partitions = {
        t["spec"]["topicName"]: t["spec"]["partitions"] for t in of_kind(docs, "KafkaTopic")
    }
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in of_kind(docs, "ScaledObject")}
    consumers = [
        d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] != "notifsvc-receiver"
    ]
    assert sorted(scaled) == sorted(d["metadata"]["name"] for d in consumers)
    for deployment in consumers:
        container = containers(deployment)[0]
        found = stage_of(container["command"])
        assert found is not None
        settings = settings_of(container_env(docs, container))
        triggers = [
            t["metadata"] for t in scaled[deployment["metadata"]["name"]]["spec"]["triggers"]
        ]
        assert sorted((m["consumerGroup"], [m["topic"]]) for m in triggers) == sorted(
            _consumed(settings, *found)
        )
        spec = scaled[deployment["metadata"]["name"]]["spec"]
        for meta in triggers:
            assert meta["bootstrapServers"] == settings.bootstrap
            assert meta["allowIdleConsumers"] == "false"
            assert (
                1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions[meta["topic"]]
            )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_topics_match_the_pipeline_and_the_settings(overlay: str) -> None:
    docs = render(overlay)
    (stage, *_) = [s for s in k8s_stages(overlay) if s.stage == "router"]
    settings = settings_of(stage.env)
    kafka_topics = {t["spec"]["topicName"]: t["spec"] for t in of_kind(docs, "KafkaTopic")}
    assert set(kafka_topics) == set(topics.all_topics(settings, list(CHANNELS)))
    (kafka,) = of_kind(docs, "Kafka")
    (pool,) = of_kind(docs, "KafkaNodePool")
    assert pool["spec"]["replicas"] >= 3
    assert kafka["spec"]["kafka"]["config"]["min.insync.replicas"] == 2
    for name, spec in kafka_topics.items():
        # `notifsvc topics create` would create the same shape (NOTIFSVC_TOPIC_*).
        assert spec["partitions"] == settings.topic_partitions, name
        assert spec["replicas"] == settings.topic_replication == 3, name
        assert spec["config"]["min.insync.replicas"] == 2, name
        assert spec["replicas"] <= pool["spec"]["replicas"], name
    for tier in topics.DELAY_TIERS:  # what the tiers hold must outlive its wait in them
        retention = kafka_topics[topics.delay(settings, tier)]["config"]["retention.ms"]
        assert retention > settings.schedule_park_after_seconds * 1000, tier
    for topic in of_kind(docs, "KafkaTopic") + of_kind(docs, "KafkaNodePool"):
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]


def _probe_port(container: Doc, probe: Doc) -> int:
    port = (probe.get("httpGet") or probe["tcpSocket"])["port"]
    by_name = {p["name"]: p["containerPort"] for p in container["ports"]}
    return int(by_name.get(port, port))


def _notificator_drain_s(settings: config.Settings, member: Notificator) -> float:
    """Longest a batch can take after SIGTERM: the policy's worst pass over a notification
    (every send timing out, throttles and backoff at their caps), then the produce of dead
    letters and retries timing out."""
    return member.policy.worst_case_seconds() + _producer_timeout_s()


def _callbacks_drain_s(settings: config.Settings) -> float:
    return CALLBACK_DRAIN_TIMEOUTS * settings.callback_timeout_ms / 1000 + _producer_timeout_s()


def _producer_timeout_s() -> float:
    return float(inspect.signature(Producer.__init__).parameters["timeout_ms"].default) / 1000


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_resources_and_grace_periods(overlay: str) -> None:
    docs = render(overlay)
    for deployment in of_kind(docs, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        container = containers(deployment)[0]
        settings = settings_of(container_env(docs, container))
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind]), kind
        found = stage_of(container["command"])
        assert found is not None
        grace = pod["terminationGracePeriodSeconds"]
        ready, live = container["readinessProbe"], container["livenessProbe"]
        if found[0] == "receiver":
            assert ready["httpGet"]["path"] == "/readyz"
            assert live["httpGet"]["path"] == "/healthz"
            assert (
                _probe_port(container, ready) == _probe_port(container, live) == settings.http_port
            )
            pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
            assert grace > pre_stop + settings.produce_timeout_ms / 1000
            continue
        assert (
            _probe_port(container, ready) == _probe_port(container, live) == settings.metrics_port
        )
        assert settings.metrics_port > 0
        if found[0] == "router":
            assert grace > _producer_timeout_s()
        elif found[0] == "callbacks":
            assert grace > _callbacks_drain_s(settings)
        else:
            member = _consumer(settings, *found)
            assert isinstance(member, Notificator)
            assert grace > _notificator_drain_s(settings, member)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_has_service_autoscaler_and_disruption_budget(overlay: str) -> None:
    docs = render(overlay)
    for deployment in of_kind(docs, "Deployment"):
        name = deployment["metadata"]["name"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selects(deployment["spec"]["selector"]["matchLabels"], labels)
        assert "replicas" not in deployment["spec"], f"{name}: the autoscaler owns replicas"
        targets = [
            h["spec"]["scaleTargetRef"]["name"] for h in of_kind(docs, "HorizontalPodAutoscaler")
        ]
        targets += [s["spec"]["scaleTargetRef"]["name"] for s in of_kind(docs, "ScaledObject")]
        assert targets.count(name) == 1, f"{name}: exactly one autoscaler"
        budgets = [
            p
            for p in of_kind(docs, "PodDisruptionBudget")
            if selects(p["spec"]["selector"]["matchLabels"], labels)
        ]
        assert len(budgets) == 1, name
        services = [s for s in of_kind(docs, "Service") if selects(s["spec"]["selector"], labels)]
        assert len(services) == 1, name
        ports = {p["name"] for p in containers(deployment)[0]["ports"]}
        assert {p["targetPort"] for p in services[0]["spec"]["ports"]} <= ports
    (hpa,) = of_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_stages_prefer_the_zones_of_kafka_and_cockroachdb(overlay: str) -> None:
    docs = render(overlay)
    kafka = of_kind(docs, "Kafka")[0]["metadata"]["name"]
    crdb = of_kind(docs, "CrdbCluster")[0]["metadata"]["name"]
    assert of_kind(docs, "Kafka")[0]["spec"]["kafka"]["rack"]["topologyKey"] == ZONE
    for deployment in of_kind(docs, "Deployment"):
        terms = deployment["spec"]["template"]["spec"]["affinity"]["podAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"
        ]
        selectors = [t["podAffinityTerm"]["labelSelector"]["matchLabels"] for t in terms]
        assert all(t["podAffinityTerm"]["topologyKey"] == ZONE for t in terms)
        assert {"strimzi.io/cluster": kafka, "strimzi.io/broker-role": "true"} in selectors
        assert {
            "app.kubernetes.io/name": "cockroachdb",
            "app.kubernetes.io/instance": crdb,
        } in selectors


def _allowed(policies: list[Doc], labels: dict[str, str], direction: str) -> list[Doc]:
    """The rules of every policy of this direction that selects a pod with ``labels``."""
    key = direction.lower()
    return [
        rule
        for p in policies
        if direction in p["spec"]["policyTypes"]
        and selects(p["spec"]["podSelector"]["matchLabels"], labels)
        for rule in p["spec"].get(key, [])
    ]


def _ports(rules: list[Doc]) -> set[int]:
    return {port["port"] for rule in rules for port in rule.get("ports", [])}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_open_only_what_each_stage_needs(overlay: str) -> None:
    docs = render(overlay)
    policies = of_kind(docs, "NetworkPolicy")
    deny = [p for p in policies if not p["spec"].get("ingress") and not p["spec"].get("egress")]
    assert len(deny) == 1 and set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    for workload in workloads(docs):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selects(deny[0]["spec"]["podSelector"]["matchLabels"], labels)
        egress = _allowed(policies, labels, "Egress")
        assert {53, 9093, 26257} <= _ports(egress), workload["metadata"]["name"]
        internet = [r for r in egress if any("ipBlock" in peer for peer in r.get("to", []))]
        expected = INTERNET_PORTS.get(labels.get("notifsvc/stage", ""), set())
        assert _ports(internet) == expected, workload["metadata"]["name"]
        for rule in internet:
            for peer in rule["to"]:
                assert peer["ipBlock"]["cidr"] == "0.0.0.0/0", workload["metadata"]["name"]
                assert set(peer["ipBlock"]["except"]) >= CLOSED_RANGES, workload["metadata"]["name"]
        ingress = _ports(_allowed(policies, labels, "Ingress"))
        own = {p["containerPort"] for c in containers(workload) for p in c.get("ports", [])}
        assert own <= ingress, workload["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_file_a_stage_names_is_mounted(overlay: str) -> None:
    """Kafka and CockroachDB certificates: each path a setting names lies in a volume the
    container mounts (a missing mount would only show as a start-up error in the cluster)."""
    docs = render(overlay)
    for workload in workloads(docs):
        for container in containers(workload):
            env = container_env(docs, container)
            mounts = [m["mountPath"].rstrip("/") + "/" for m in container.get("volumeMounts", [])]
            files = {k: v for k, v in env.items() if k in FILE_SETTINGS and v}
            where = f"{overlay}: {workload['metadata']['name']}"
            assert files, f"{where}: no TLS files (the base connects over TLS)"
            for name, path in files.items():
                assert any(path.startswith(m) for m in mounts), f"{where}: {name}={path}"


def _channel_docs(docs: list[Doc], channel: str) -> list[Doc]:
    """The resources of one channel's notificator: its workload objects and its topics."""
    label = f"notificator-{channel}"
    lanes = {topics.channel(config.Settings(), channel, lane) for lane in topics.LANES}
    return [
        d
        for d in docs
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == label
        or d.get("spec", {}).get("topicName") in lanes
    ]


def test_notificator_manifests_differ_only_by_channel() -> None:
    """One template (base/notificator) for every channel: the rendered objects of each
    channel equal the log channel's but for the channel's name."""
    docs = render("prod")
    log = _channel_docs(docs, "log")
    assert sorted(d["kind"] for d in log) == sorted(
        ["Deployment", "Service", "ScaledObject", "PodDisruptionBudget", *["KafkaTopic"] * 4]
    )
    reference = yaml.safe_dump(log)
    for channel in CHANNELS:
        text = yaml.safe_dump(_channel_docs(docs, channel))
        assert text.replace(channel, "log") == reference, channel
    kustomization = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    assert [f"channels/{c}" for c in CHANNELS] == [
        r for r in kustomization["resources"] if r.startswith("channels/")
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned(overlay: str) -> None:
    docs = render(overlay)
    images = {c["image"] for w in workloads(docs) for c in containers(w)}
    assert len(images) == 1, "one image for every stage"
    (image,) = images
    name, _, tag = image.rpartition(":")
    assert name and tag and tag != "latest", image
    crdb = of_kind(docs, "CrdbCluster")[0]["spec"]["image"]["name"]
    assert not crdb.endswith(":latest"), crdb


#: The Secret the CockroachDB operator creates with its client certificate (TLS only).
CRDB_CERTS = "cockroachdb-root"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_stages_reach_cockroachdb_as_the_overlay_runs_it(overlay: str) -> None:
    """TLS to the database exactly when the overlay's CockroachDB serves it, and without TLS
    no certificate to read and no Secret to wait for (the operator creates none): otherwise
    every pod waits for a missing Secret, or starts and fails its TLS handshake."""
    docs = render(overlay)
    tls = named(docs, "CrdbCluster", "cockroachdb")["spec"].get("tlsEnabled", True)
    for stage in k8s_stages(overlay):
        settings = settings_of(stage.env)
        files = (settings.database_ssl_ca_file, settings.database_ssl_cert_file)
        if tls:
            assert settings.database_sslmode == "verify-full", stage.where
            assert all(files), stage.where
        else:
            url_mode = parse_qs(urlsplit(stage.env["NOTIFSVC_DATABASE_URL"]).query)["sslmode"]
            assert settings.database_sslmode in {None, "disable"}, stage.where
            assert url_mode == ["disable"] and not any(files), stage.where
    for workload in workloads(docs) if not tls else ():
        for volume in workload["spec"]["template"]["spec"].get("volumes", []):
            secret = volume.get("secret", {})
            if secret.get("secretName") == CRDB_CERTS:
                assert secret.get("optional") is True, workload["metadata"]["name"]


def test_the_dev_install_runs_no_notificator_whose_channel_is_off() -> None:
    """A notificator whose channel is off could only exit with a configuration error and
    restart in a loop: the dev install leaves those out (and everything else of theirs),
    and keeps the rest."""
    docs = render("dev")
    stages = k8s_stages("dev")
    for stage in stages:
        if stage.channel is not None:
            assert stage.channel not in channels.disabled(settings_of(stage.env)), stage.where
    left_out = set(CHANNELS) - {s.channel for s in stages if s.channel}
    assert left_out == waiting_for_values(*K8S_SETTINGS)
    components = {d["metadata"].get("labels", {}).get("app.kubernetes.io/component") for d in docs}
    assert not {f"notificator-{name}" for name in left_out} & components
    prod = {d["kind"] for d in render("prod") if d["metadata"]["name"].endswith("-log")}
    dev = {d["kind"] for d in docs if d["metadata"]["name"].endswith("-log")}
    assert dev == prod  # a channel that is on keeps its resources
