"""The ``notifsvc`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from notifsvc import channels, config, errors, kafka, logs, metrics, topics
from notifsvc.config import ConfigError, Settings
from notifsvc.service import run_stage, serve

log = logging.getLogger("notifsvc")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="notifsvc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    receiver = sub.add_parser("receiver", help="run the HTTP receiver")
    receiver.add_argument("--workers", type=int, default=1, help="processes sharing the port")
    sub.add_parser("router", help="run the deduplicating router")
    notificator = sub.add_parser("notificator", help="run the notificator of one channel")
    notificator.add_argument("--channel", required=True, choices=sorted(channels.REGISTRY))
    sub.add_parser("migrate", help="bring the database schema up to date")
    topics_cmd = sub.add_parser("topics", help="manage topics")
    topics_cmd.add_argument("action", choices=["create"])
    status = sub.add_parser("status", help="lag, states, send rates and DLQ size at a glance")
    status.add_argument("--watch", type=float, default=0.0, metavar="SECONDS", help="refresh")
    dev = sub.add_parser("dev", help="run everything locally on an embedded broker and database")
    dev.add_argument("--infra-only", action="store_true", help="only the broker and database")
    dev.add_argument("--keep", action="store_true", help="keep the database folder and logs")
    dev.add_argument("--state-dir", default=".notifsvc", help="folder for logs (default .notifsvc)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = config.load()
    except ConfigError as exc:
        print(f"notifsvc: {exc}", file=sys.stderr)
        return 2
    logs.setup(settings.log_level, settings.log_format)
    try:
        return _dispatch(args, settings)
    except (ConfigError, errors.StageError) as exc:
        print(f"notifsvc {args.command}: {exc}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    command: str = args.command
    if command == "dev":
        from notifsvc.dev.runner import run_dev  # noqa: PLC0415 - needs the dev extra

        return run_dev(
            settings, infra_only=args.infra_only, keep=args.keep, state_dir=args.state_dir
        )
    if command == "migrate":
        from notifsvc.db.migrate import migrate  # noqa: PLC0415

        applied = asyncio.run(migrate(settings.database))
        print(f"applied: {', '.join(applied) or 'nothing, schema is up to date'}")
        return 0
    if command == "status":
        from notifsvc.status import show  # noqa: PLC0415

        settings.require("kafka_bootstrap", "database_url")
        try:
            return asyncio.run(show(settings, watch=args.watch))
        except KeyboardInterrupt:
            return 0
    if command == "topics":
        created = kafka.create_topics(
            settings, topics.all_topics(settings, list(channels.REGISTRY))
        )
        print(f"created: {', '.join(created) or 'nothing, all topics exist'}")
        return 0
    return _run_stage(command, args, settings)


def _run_stage(command: str, args: argparse.Namespace, settings: Settings) -> int:
    if command == "receiver":
        settings.require("kafka_bootstrap", "database_url")
        if args.workers > 1:
            from notifsvc.workers import run_workers  # noqa: PLC0415

            return run_workers(args.workers)
        from notifsvc.receiver import ReceiverServer  # noqa: PLC0415

        serve(lambda stopping: run_stage(ReceiverServer(settings), stopping))
        return 0
    settings.require("kafka_bootstrap", "database_url")
    metrics.serve(settings.metrics_port)
    if command == "router":
        from notifsvc.router import Router  # noqa: PLC0415

        serve(lambda stopping: run_stage(Router(settings), stopping))
        return 0
    return _run_notificator(args.channel, settings)


def _run_notificator(name: str, settings: Settings) -> int:
    from notifsvc.notificator import Notificator  # noqa: PLC0415

    reason = channels.disabled(settings).get(name)
    if reason is not None:
        print(f"notifsvc notificator: channel {name} is disabled: {reason}", file=sys.stderr)
        return 2
    channel = channels.REGISTRY[name](settings)
    serve(lambda stopping: run_stage(Notificator(settings, channel), stopping))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
