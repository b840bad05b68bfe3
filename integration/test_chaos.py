"""The fault-injection scenarios of ``make chaos``, shortened (3 kills, 5 s database outage,
smaller load, 80 hostile posts) so that CI guards them. ``python -m loadtest.chaos --short``
runs the same.

The scenarios run on a broker and a database of their own (two of them stop those), with
the stages as real processes. Those that leave the broker and database alone (the kills,
the rebalance, the flaky provider, poison, hostile input and provider, status callbacks
under SIGKILL of the dispatcher and the notificator) run together, once, the first time
one of their tests asks, in two waves (:data:`SECOND_WAVE` after the rest); each test
then checks its own scenario.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import pytest

from loadtest.chaos.harness import run_on
from loadtest.chaos.infra import ChaosInfra
from loadtest.chaos.report import Result, table
from loadtest.chaos.scenarios import EXCLUSIVE, SCENARIOS
from loadtest.chaos.session import SHORT

SEED = random.randrange(2**32)
SHARED = [name for name in SCENARIOS if name not in EXCLUSIVE]
#: Run after the others, in a second wave: the scheduled sends and the failover, each of
#: which adds processes and consumers; on two cores, all of them at once overloaded the
#: harness's own provider sinks (sends timed out, and were counted lost).
SECOND_WAVE = ("scheduled", "primary-down")


@pytest.fixture(scope="module")
def chaos_infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosInfra]:
    infra = ChaosInfra(tmp_path_factory.mktemp("chaos"))
    infra.start()
    yield infra
    infra.stop()


@pytest.fixture(scope="module")
def shared_results(chaos_infra: ChaosInfra) -> dict[str, Result]:
    waves = [[n for n in SHARED if n not in SECOND_WAVE], [n for n in SHARED if n in SECOND_WAVE]]
    out: dict[str, Result] = {}
    for wave in (w for w in waves if w):
        results = asyncio.run(run_on(chaos_infra, wave, SHORT, SEED, parallel=True))
        out.update(zip(wave, results, strict=True))
    return out


def _verdict(result: Result) -> None:
    shown = table([result])
    print(f"\n{shown}")
    assert result.ok, f"seed {SEED}, logs in {result.scenario!r}'s lane folder\n{shown}"


@pytest.mark.slow
@pytest.mark.timeout(900)  # the first test to ask runs both waves
@pytest.mark.parametrize("name", SHARED)
def test_scenario_loses_nothing(name: str, shared_results: dict[str, Result]) -> None:
    _verdict(shared_results[name])


def _alone(infra: ChaosInfra, name: str) -> Result:
    return asyncio.run(run_on(infra, [name], SHORT, SEED, parallel=False))[0]


def test_database_outage_pauses_and_resumes_without_loss(chaos_infra: ChaosInfra) -> None:
    _verdict(_alone(chaos_infra, "db-outage"))


def test_broker_outage_answers_503_then_accepts_and_delivers(chaos_infra: ChaosInfra) -> None:
    _verdict(_alone(chaos_infra, "broker-outage"))


def test_sigterm_of_every_stage_is_graceful(chaos_infra: ChaosInfra) -> None:
    _verdict(_alone(chaos_infra, "sigterm"))
