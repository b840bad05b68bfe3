"""The load generator's choices and settings."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from loadtest.workload import LoadConfig, Workload, check_target, parse_duration, parse_mix


def test_parse_mix() -> None:
    assert parse_mix("log:3, Webhook:1") == [("log", 3.0), ("webhook", 1.0)]
    assert parse_mix("log") == [("log", 1.0)]
    for bad in ("", "log:0", "log:-1", ":2"):
        with pytest.raises(ValueError, match="LOAD_MIX"):
            parse_mix(bad)


def test_parse_duration() -> None:
    assert [parse_duration(d) for d in ("90", "90s", "2m", "1h", "1.5m")] == [90, 90, 120, 3600, 90]
    with pytest.raises(ValueError, match="positive"):
        parse_duration("0s")


def test_workload_follows_mix_and_repost_share() -> None:
    work = Workload(
        [("log", 3.0), ("webhook", 1.0)], 0.25, "http://127.0.0.1:1/hook", random.Random(3)
    )
    channels: Counter[str] = Counter()
    reposts = 0
    seen: set[str] = set()
    for _ in range(8000):
        body, repost = work.next()
        if repost:
            reposts += 1
            assert body["uuid"] in seen  # a re-post repeats an accepted UUID, payload and all
        else:
            channels[body["destination"]] += 1
            seen.add(body["uuid"])
            work.was_accepted(body)
    assert 0.22 < reposts / 8000 < 0.28
    assert 2.6 < channels["log"] / channels["webhook"] < 3.4
    webhook = next(b for b in work.accepted if b["destination"] == "webhook")
    assert webhook["to"] == "http://127.0.0.1:1/hook"


def test_no_repost_before_anything_was_accepted() -> None:
    work = Workload([("log", 1.0)], 1.0, "http://127.0.0.1:1/hook", random.Random(1))
    assert work.next()[1] is False


def test_load_config_from_env() -> None:
    env = {"LOAD_USERS": "7", "LOAD_DURATION": "2m", "LOAD_MIX": "log", "LOAD_USER_RATE": "0"}
    config = LoadConfig.from_env(env, cpus=2)
    assert (config.users, config.duration, config.mix, config.user_rate) == (7, 120, "log", 0.0)
    assert config.processes == 2 and config.host is None
    assert (
        LoadConfig.from_env({"LOAD_HOST": "http://localhost:8090"}, 2).host
        == "http://localhost:8090"
    )
    with pytest.raises(ValueError, match="between 0 and 1"):
        LoadConfig.from_env({"LOAD_REPOST_SHARE": "1.5"}, 2)


def test_only_loopback_targets_unless_explicitly_allowed() -> None:
    check_target("http://127.0.0.1:8090")
    check_target("http://[::1]:8090")
    with pytest.raises(ValueError, match=r"only 127\.0\.0\.1"):
        check_target("http://10.1.2.3:8090")
    with pytest.raises(ValueError, match="expected http"):
        check_target("127.0.0.1:8090")
    check_target("https://staging.example.org", allow_remote=True)
