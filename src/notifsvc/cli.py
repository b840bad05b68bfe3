"""The ``notifsvc`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence

from notifsvc import (
    channels,
    config,
    deploy,
    errors,
    kafka,
    logs,
    metrics,
    ops_cli,
    status,
    topics,
)
from notifsvc.callbacks import Dispatcher
from notifsvc.config import ConfigError, Settings
from notifsvc.db.migrate import migrate
from notifsvc.notificator import Notificator
from notifsvc.receiver import ReceiverServer
from notifsvc.router import Router
from notifsvc.service import run_stage, serve
from notifsvc.workers import run_workers

log = logging.getLogger("notifsvc")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="notifsvc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    receiver = sub.add_parser("receiver", help="run the HTTP receiver")
    receiver.add_argument("--workers", type=int, default=1, help="processes sharing the port")
    sub.add_parser("router", help="run the deduplicating router")
    notificator = sub.add_parser("notificator", help="run the notificator of one channel")
    notificator.add_argument("--channel", required=True, choices=sorted(channels.REGISTRY))
    sub.add_parser("callbacks", help="run the status-callback dispatcher")
    sub.add_parser("migrate", help="bring the database schema up to date")
    topics_cmd = sub.add_parser("topics", help="manage topics")
    topics_cmd.add_argument("action", choices=["create"])
    status = sub.add_parser("status", help="lag, states, send rates and DLQ size at a glance")
    status.add_argument("--watch", type=float, default=0.0, metavar="SECONDS", help="refresh")
    status.add_argument(
        "--metrics",
        default="",
        metavar="URL,...",
        help="the notificators' /metrics URLs, for their circuit breakers "
        "(default: those of notifsvc dev)",
    )
    dev = sub.add_parser("dev", help="run everything locally on an embedded broker and database")
    dev.add_argument("--infra-only", action="store_true", help="only the broker and database")
    dev.add_argument("--keep", action="store_true", help="keep the database folder and logs")
    dev.add_argument("--state-dir", default=".notifsvc", help="folder for logs (default .notifsvc)")
    deploy_cmd = sub.add_parser("deploy", help="the deployment files generated from the channels")
    deploy_cmd.add_argument("action", choices=["render"])
    deploy_cmd.add_argument("--check", action="store_true", help="only report stale files (exit 1)")
    ops_cli.add_parsers(sub)
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
    return COMMANDS[args.command](args, settings)


def _dev(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here alone: it needs the `dev` extra, which a production image lacks.
    from notifsvc.dev.runner import run_dev  # noqa: PLC0415

    return run_dev(settings, infra_only=args.infra_only, keep=args.keep, state_dir=args.state_dir)


def _migrate(_args: argparse.Namespace, settings: Settings) -> int:
    applied = asyncio.run(migrate(settings.database))
    print(f"applied: {', '.join(applied) or 'nothing, schema is up to date'}")
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    settings.require("kafka_bootstrap", "database_url")
    try:
        urls = [u.strip() for u in args.metrics.split(",") if u.strip()]
        return asyncio.run(status.show(settings, watch=args.watch, metrics=urls))
    except KeyboardInterrupt:
        return 0


def _topics(_args: argparse.Namespace, settings: Settings) -> int:
    created = kafka.create_topics(settings, topics.all_topics(settings, list(channels.REGISTRY)))
    print(f"created: {', '.join(created) or 'nothing, all topics exist'}")
    return 0


def _receiver(args: argparse.Namespace, settings: Settings) -> int:
    settings.require("kafka_bootstrap", "database_url")
    if args.workers > 1:
        return run_workers(args.workers, settings)
    serve(lambda stopping: run_stage(ReceiverServer(settings), stopping))
    return 0


def _router(_args: argparse.Namespace, settings: Settings) -> int:
    settings.require("kafka_bootstrap", "database_url")
    metrics.serve(settings.metrics_port)
    serve(lambda stopping: run_stage(Router(settings), stopping))
    return 0


def _notificator(args: argparse.Namespace, settings: Settings) -> int:
    settings.require("kafka_bootstrap", "database_url")
    name: str = args.channel
    reason = channels.disabled(settings).get(name)
    if reason is not None:
        print(f"notifsvc notificator: channel {name} is disabled: {reason}", file=sys.stderr)
        return 2
    metrics.serve(settings.metrics_port)
    channel = channels.build(name, settings)
    serve(lambda stopping: run_stage(Notificator(settings, channel), stopping))
    return 0


def _callbacks(_args: argparse.Namespace, settings: Settings) -> int:
    settings.require("kafka_bootstrap", "database_url")
    metrics.serve(settings.metrics_port)
    serve(lambda stopping: run_stage(Dispatcher(settings), stopping))
    return 0


#: Every command of ``notifsvc``, by name (the parser above lists the same names).
COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "dev": _dev,
    "migrate": _migrate,
    "status": _status,
    "topics": _topics,
    "receiver": _receiver,
    "router": _router,
    "notificator": _notificator,
    "callbacks": _callbacks,
    "deploy": deploy.run,
    # The operator commands, over the receiver's HTTP API (notifsvc/ops_cli.py).
    "notifications": ops_cli.run,
    "cancel": ops_cli.run,
    "retry": ops_cli.run,
    "replay": ops_cli.run,
    "replays": ops_cli.run,
}


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
