"""The deployment files generated from the channel registry (``notifsvc deploy render``),
checked in both directions: a registered channel without its files fails, and so do the
files of a channel that is not registered."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from notifsvc import channels, cli, config, deploy, topics
from notifsvc.channels.base import Channel
from notifsvc.channels.email import EmailSettings
from notifsvc.config import Secret, Section, setting
from notifsvc.model import FieldError, Notification
from unit.deploy.support import ROOT, Doc, kubectl, named, of_kind

GENERATED_DIR = "deploy/k8s/base/channels"
BLOCK_FILES = {str(b.path) for b in deploy.BLOCKS}


@dataclass(frozen=True)
class PigeonSettings(Section, prefix="pigeon"):
    api_url: str = setting("https://pigeon.example.com", config.as_url)
    token: Secret | None = setting(None, Secret, secret=True)
    loft: str | None = setting(None, str)

    def disabled_reason(self) -> str | None:
        return self.missing("token")


class PigeonChannel(Channel[PigeonSettings]):
    """A channel that exists only here: registering it must ask for its deployment."""

    name = "pigeon"
    Config = PigeonSettings

    def validate_recipient(self, to: str) -> list[FieldError]:
        return []

    async def send(self, notification: Notification) -> None:
        return None


def _key(raw: str) -> Secret:
    if not raw.startswith("-----BEGIN"):
        raise ValueError("not a PEM key")
    return Secret(raw)


@dataclass(frozen=True)
class KeySettings(Section, prefix="key"):
    key: Secret | None = setting(None, _key, secret=True)

    def disabled_reason(self) -> str | None:
        return self.missing("key")


class KeyChannel(Channel[KeySettings]):
    name = "key"
    Config = KeySettings

    def validate_recipient(self, to: str) -> list[FieldError]:
        return []

    async def send(self, notification: Notification) -> None:
        return None


WITH_PIGEON: deploy.Registry = {**channels.REGISTRY, "pigeon": PigeonChannel}
WITHOUT_SMS = {k: v for k, v in channels.REGISTRY.items() if k != "sms"}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the files ``notifsvc deploy render`` reads and writes, rendered."""
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    for name in (p for p in BLOCK_FILES if not p.startswith("deploy/")):
        shutil.copy(ROOT / name, tmp_path / name)
    deploy.write(tmp_path)
    return tmp_path


def texts(root: Path) -> dict[str, str]:
    """Every file ``notifsvc deploy render`` writes, by path."""
    paths = [*BLOCK_FILES, *(str(p) for p in deploy.render(root).files)]
    return {path: (root / path).read_text() for path in paths}


def kustomize(path: Path) -> list[Doc]:
    done = subprocess.run(
        [kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=True
    )
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def command(*argv: str) -> int:
    args = cli._parser().parse_args(["deploy", *argv])
    return cli.COMMANDS[args.command](args, config.Settings())


def test_checked_in_files_are_what_the_registry_gives() -> None:
    assert deploy.check(ROOT) == [], "run `notifsvc deploy render` (or make k8s-generate)"


def test_check_command_passes_on_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert command("render", "--check") == 0


def test_a_registered_channel_without_its_files_fails() -> None:
    problems = deploy.check(ROOT, WITH_PIGEON)
    assert f"{GENERATED_DIR}/pigeon/kustomization.yaml: missing" in problems
    assert {p.removesuffix(": differs") for p in problems if p.endswith("differs")} == BLOCK_FILES


def test_the_files_of_an_unregistered_channel_fail() -> None:
    problems = deploy.check(ROOT, WITHOUT_SMS)
    extra = f"{GENERATED_DIR}/sms/kustomization.yaml: extra (channel sms is not registered)"
    assert extra in problems
    differ = {p.removesuffix(": differs") for p in problems if p.endswith("differs")}
    # The dev Secret's block holds no sms setting: its token is written there by hand.
    assert differ == BLOCK_FILES - {"deploy/k8s/overlays/dev/kustomization.yaml"}


def test_render_deploys_a_new_channel_everywhere(repo: Path) -> None:
    written = deploy.write(repo, WITH_PIGEON)
    assert f"wrote {GENERATED_DIR}/pigeon/kustomization.yaml" in written
    assert deploy.check(repo, WITH_PIGEON) == []
    generated = (repo / GENERATED_DIR / "pigeon" / "kustomization.yaml").read_text()
    assert len(generated.splitlines()) < 40

    env = (repo / "deploy/k8s/base/config.env").read_text().splitlines()
    assert "NOTIFSVC_PIGEON_API_URL=https://pigeon.example.com" in env
    assert "# NOTIFSVC_PIGEON_LOFT=" in env  # optional, no default
    secret = yaml.safe_load((repo / "deploy/k8s/base/secret.template.yaml").read_text())
    assert secret["stringData"]["NOTIFSVC_PIGEON_TOKEN"] == deploy.PLACEHOLDER
    prometheus = (repo / "deploy/prometheus/prometheus.yml").read_text()
    assert "- notificator-pigeon\n" in prometheus
    compose = yaml.safe_load((repo / deploy.COMPOSE).read_text())["services"]
    pigeon = compose["notificator-pigeon"]
    assert pigeon["command"] == ["notifsvc", "notificator", "--channel", "pigeon"]
    assert pigeon["environment"]["NOTIFSVC_PIGEON_TOKEN"] == deploy.PLACEHOLDER
    assert pigeon["stop_grace_period"] == compose["notificator-log"]["stop_grace_period"]

    docs = kustomize(repo / "deploy/k8s/overlays/dev")
    name = topics.notificator_name("pigeon")
    deployment = named(docs, "Deployment", name)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["notifsvc", "notificator", "--channel", "pigeon"]
    triggers = named(docs, "ScaledObject", name)["spec"]["triggers"]
    settings = config.Settings()
    lanes = {
        (
            topics.notificator_group(settings, "pigeon", lane),
            topics.channel(settings, "pigeon", lane),
        )
        for lane in topics.LANES
    }
    assert {(t["metadata"]["consumerGroup"], t["metadata"]["topic"]) for t in triggers} == lanes
    topic_names = {t["spec"]["topicName"] for t in of_kind(docs, "KafkaTopic")}
    assert {topic for _, topic in lanes} <= topic_names
    assert of_kind(docs, "Secret")[0]["data"].get("NOTIFSVC_PIGEON_TOKEN")
    assert not [d for d in docs if d["metadata"]["name"] == "notificator-pigeon"], "local-config"


def test_render_removes_a_channel_that_left_the_registry(repo: Path) -> None:
    before = texts(repo)
    deploy.write(repo, WITH_PIGEON)
    assert f"{GENERATED_DIR}/pigeon/kustomization.yaml: extra" in " ".join(deploy.check(repo))
    assert f"deleted {GENERATED_DIR}/pigeon/kustomization.yaml" in deploy.write(repo)
    assert not (repo / GENERATED_DIR / "pigeon").exists()
    assert texts(repo) == before


def test_check_command_lists_each_stale_file_without_writing(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ghost = repo / GENERATED_DIR / "ghost" / "kustomization.yaml"
    ghost.parent.mkdir()
    shutil.copy(repo / GENERATED_DIR / "log" / "kustomization.yaml", ghost)
    (repo / GENERATED_DIR / "email" / "kustomization.yaml").unlink()
    prometheus = repo / "deploy/prometheus/prometheus.yml"
    prometheus.write_text(prometheus.read_text().replace("- notificator-sms\n", ""))
    monkeypatch.chdir(repo)

    assert command("render", "--check") == 1
    out = capsys.readouterr().out.splitlines()
    assert sorted(out) == [
        f"{GENERATED_DIR}/email/kustomization.yaml: missing",
        f"{GENERATED_DIR}/ghost/kustomization.yaml: extra (channel ghost is not registered)",
        "deploy/prometheus/prometheus.yml: differs",
    ]
    assert ghost.exists() and "notificator-sms" not in prometheus.read_text()

    assert command("render") == 0
    assert command("render", "--check") == 0
    assert not ghost.parent.exists()


def test_a_file_without_its_markers_is_reported(repo: Path) -> None:
    prometheus = repo / "deploy/prometheus/prometheus.yml"
    prometheus.write_text(prometheus.read_text().replace(deploy.END, "# the end"))
    (problem,) = deploy.check(repo)
    assert problem.startswith("deploy/prometheus/prometheus.yml: no '# END generated")
    with pytest.raises(deploy.BlockError):
        deploy.write(repo)


@pytest.mark.parametrize(
    ("path", "secret"),
    [("deploy/k8s/base/config.env", False), ("deploy/k8s/base/secret.template.yaml", True)],
)
def test_every_channel_setting_appears_once(path: str, secret: bool) -> None:
    """Set by hand (an example) or generated (default, placeholder, commented out): never
    both, never missing, and secrets only in the Secret."""
    text = (ROOT / path).read_text()
    secrets = config.secret_variables()
    for example in deploy.examples(channels.REGISTRY):
        found = text.count(f"{example.name}=") + text.count(f"{example.name}:")
        assert found == int((example.name in secrets) == secret), (path, example.name)


def test_an_alternative_providers_settings_are_examples_only() -> None:
    """Vonage, the backup relay, ...: commented out and never required, since the channel
    runs on its own provider unless ``*_PROVIDERS`` lists them."""
    prefixes = tuple(
        alt.Config.env_name("")
        for name in channels.REGISTRY
        for alt in channels.alternatives_of(name)
    )
    assert prefixes  # the registry has alternatives
    theirs = [e for e in deploy.examples(channels.REGISTRY) if e.name.startswith(prefixes)]
    assert theirs
    assert not [e.name for e in theirs if e.active or e.required]


def test_a_placeholder_is_written_only_where_it_can_work() -> None:
    assert deploy.required(EmailSettings) == {"NOTIFSVC_EMAIL_HOST", "NOTIFSVC_EMAIL_FROM"}
    assert deploy.placeholders_work(PigeonSettings)
    assert not deploy.placeholders_work(EmailSettings)  # CHANGE_ME is no sender address
    assert not deploy.placeholders_work(KeySettings)  # CHANGE_ME is no key

    lines = deploy._compose_settings({"key": KeyChannel, "pigeon": PigeonChannel}, "")
    assert lines == ["# NOTIFSVC_KEY_KEY: CHANGE_ME", "NOTIFSVC_PIGEON_TOKEN: CHANGE_ME"]
    hand = "  NOTIFSVC_PIGEON_TOKEN: from-the-shell\n"
    assert deploy._compose_settings({"pigeon": PigeonChannel}, hand) == []


def test_the_deploy_command_is_in_the_table() -> None:
    args = cli._parser().parse_args(["deploy", "render", "--check"])
    assert args.check and cli.COMMANDS[args.command] is deploy.run


_APNS_NEEDS = sorted(deploy.required(channels.REGISTRY["apns"].Config))
_APNS_SECRETS = {
    name
    for name, f in config.variables(channels.REGISTRY["apns"].Config)
    if name in _APNS_NEEDS and f.metadata["secret"]
}


@given(st.sets(st.sampled_from(_APNS_NEEDS)))
def test_a_channel_waits_while_a_setting_it_needs_is_unset_by_hand(set_by_hand: set[str]) -> None:
    """apns cannot start on placeholders: a file's deployment leaves it off while any
    setting it needs (of the kind the file lists: compose all, the dev overlay secrets) is
    not set by hand there; a channel whose placeholders work is never left off."""
    hand = "".join(f"  {name}: value\n" for name in sorted(set_by_hand))
    registry: deploy.Registry = {"apns": channels.REGISTRY["apns"], "pigeon": PigeonChannel}
    any_unset = bool(set(_APNS_NEEDS) - set_by_hand)
    secret_unset = bool(_APNS_SECRETS - set_by_hand)
    assert deploy.waiting(registry, hand) == (["apns"] if any_unset else [])
    assert deploy.waiting(registry, hand, secret=True) == (["apns"] if secret_unset else [])
    profile = '  profiles: ["apns"]  # start it once its settings are set'
    assert (profile in deploy._compose_notificators(registry, hand)) == any_unset
    assert bool(deploy._dev_left_out(registry, hand)) == secret_unset
