"""Runs scenarios one after another on one broker and one database owned by this process."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path

from loadtest.chaos.infra import ChaosInfra
from loadtest.chaos.report import Result
from loadtest.chaos.scenarios import EXCLUSIVE, SCENARIOS
from loadtest.chaos.session import Context, Profile

log = logging.getLogger(__name__)


async def run_scenario(name: str, infra: ChaosInfra, profile: Profile, seed: int) -> Result:
    """One scenario, timed; an error in the harness itself becomes a failed result."""
    ctx = Context(infra, profile, random.Random(f"{seed}:{name}"))
    began = time.monotonic()
    log.info("scenario %s: starting", name)
    try:
        result = await SCENARIOS[name](ctx)
    except Exception as exc:
        log.exception("scenario %s: harness error", name)
        result = Result(name, failures=[f"harness error: {exc!r}"])
    result.seconds = time.monotonic() - began
    log.info("scenario %s: %s in %.0fs", name, "ok" if result.ok else "FAIL", result.seconds)
    return result


async def run_on(
    infra: ChaosInfra, names: Sequence[str], profile: Profile, seed: int, *, parallel: bool
) -> list[Result]:
    """Run ``names`` on started infrastructure; results come back in the order of ``names``.

    With ``parallel``, the scenarios that leave the shared broker and database alone run
    concurrently first (each has its own topics, groups and database); the others run alone.
    """
    shared = [n for n in names if parallel and n not in EXCLUSIVE]
    alone = [n for n in names if n not in shared]
    results = dict(
        zip(
            shared,
            await asyncio.gather(*(run_scenario(n, infra, profile, seed) for n in shared)),
            strict=True,
        )
    )
    for name in alone:
        results[name] = await run_scenario(name, infra, profile, seed)
    return [results[n] for n in names]


async def run(
    names: Sequence[str], profile: Profile, folder: Path, seed: int, *, parallel: bool = True
) -> list[Result]:
    """Start the infrastructure, run ``names``, always stop everything."""
    infra = ChaosInfra(folder)
    await asyncio.to_thread(infra.start)
    try:
        return await run_on(infra, names, profile, seed, parallel=parallel)
    finally:
        await asyncio.to_thread(infra.stop)
