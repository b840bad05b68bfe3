"""``python -m loadtest.chaos``: run the fault-injection scenarios and print their table."""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import time
from pathlib import Path

from loadtest.chaos.harness import run
from loadtest.chaos.report import table
from loadtest.chaos.scenarios import SCENARIOS
from loadtest.chaos.session import FULL, SHORT
from notifsvc import logs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadtest.chaos", description=__doc__)
    parser.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help=f"any of {', '.join(SCENARIOS)} (default: all, in this order)",
    )
    parser.add_argument("--short", action="store_true", help="the shortened CI variant")
    parser.add_argument(
        "--serial", action="store_true", help="one scenario at a time (slower, less noisy)"
    )
    parser.add_argument("--seed", type=int, default=None, help="fault timing (default: random)")
    parser.add_argument("--state-dir", default=".notifsvc/chaos", help="stage logs go here")
    parser.add_argument("--log-level", default="WARNING", help="the harness's own logging")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    unknown = [n for n in args.scenarios if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    logs.setup(args.log_level)
    seed = random.randrange(2**32) if args.seed is None else args.seed
    folder = Path(args.state_dir)
    shutil.rmtree(folder, ignore_errors=True)
    names = args.scenarios or list(SCENARIOS)
    profile = SHORT if args.short else FULL
    print(f"chaos: {', '.join(names)} ({'short' if args.short else 'full'}, seed {seed})")
    began = time.monotonic()
    results = asyncio.run(run(names, profile, folder, seed, parallel=not args.serial))
    print(table(results))
    print(f"total {time.monotonic() - began:.0f}s; stage logs in {folder}/")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
