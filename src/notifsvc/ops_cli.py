"""The operator commands of ``notifsvc``: list, show, cancel, retry and replay notifications
through the receiver's HTTP API (:mod:`notifsvc.ops_client`), never the database directly,
so that they need only an API key and obey the same rules as any other client.

Every failure is one line on stderr naming the problem, exit code 1; a malformed argument
is refused by argparse before any request, exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
import time
import uuid as uuid_mod
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import IO, Any, Final, Protocol

import orjson

from notifsvc import channels
from notifsvc.config import Settings
from notifsvc.model import Priority, Reason, State
from notifsvc.ops_client import Filter, Job, OpsClient, OpsError, one_line

Action = Callable[[OpsClient, argparse.Namespace], Awaitable[int]]

#: Largest page ``GET /notifications`` serves (its ``limit``).
MAX_LIMIT: Final = 200
#: Seconds between plain progress lines of a replay followed off a terminal.
LINE_EVERY: Final = 10.0
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_AGE = re.compile(r"(?:\d+[smhd])+")


def parse_time(text: str, now: datetime) -> datetime:
    """An RFC 3339 time with its offset, or an age (``90s``, ``15m``, ``2h``, ``1d``,
    ``1h30m``) meaning ``now`` minus that; ``ValueError`` naming the accepted forms."""
    value = text.strip()
    if _AGE.fullmatch(value):
        seconds = sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)([smhd])", value))
        try:
            return now - timedelta(seconds=seconds)
        except OverflowError:
            raise ValueError(f"{text!r} reaches back before the year 1") from None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an RFC 3339 time (2024-05-01T12:00:00Z) "
            "nor an age (90s, 15m, 2h, 1d)"
        ) from None
    if when.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset: add Z or +HH:MM")
    return when


def _time(text: str) -> datetime:
    try:
        return parse_time(text, datetime.now(UTC))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"expected a number from 1 to {MAX_LIMIT}, got {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.01 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds from 0.01 to 3600, got {text!r}")
    return value


def _uuid(text: str) -> uuid_mod.UUID:
    try:
        return uuid_mod.UUID(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a UUID") from None


def _filters(parser: argparse.ArgumentParser, *, replay: bool) -> None:
    parser.add_argument("--channel", type=str.lower, choices=sorted(channels.REGISTRY))
    if not replay:
        parser.add_argument("--state", choices=[s.value for s in State])
        parser.add_argument("--priority", type=str.lower, choices=[p.value for p in Priority])
    parser.add_argument("--reason", choices=[r.value for r in Reason], help="why it failed")
    parser.add_argument("--since", type=_time, metavar="T", help="RFC 3339, or an age: 15m, 2h")
    parser.add_argument("--until", type=_time, metavar="T", help="RFC 3339, or an age: 15m, 2h")


def _command(
    sub: Any, name: str, action: Action, help_text: str, **kwargs: Any
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, **kwargs)
    parser.set_defaults(action=action, error=parser.error)
    return parser


def add_parsers(sub: Any) -> None:
    """Add the operator commands to ``notifsvc``'s subparsers (each runs :func:`run`)."""
    notes = sub.add_parser("notifications", help="list and show notifications (receiver API)")
    notes_sub = notes.add_subparsers(dest="action_name", required=True, metavar="ACTION")
    listing = _command(notes_sub, "list", _list, "newest first, filtered")
    _filters(listing, replay=False)
    listing.add_argument("--limit", type=_limit, help=f"per page, 1-{MAX_LIMIT} (default 50)")
    listing.add_argument("--cursor", help="continue after a page (its next_cursor)")
    listing.add_argument("--all", action="store_true", help="follow the cursor to the last page")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    show = _command(notes_sub, "show", _show, "one notification's state and attempts")
    show.add_argument("uuid", type=_uuid, metavar="UUID")
    show.add_argument("--json", action="store_true")
    cancel = _command(sub, "cancel", _cancel, "cancel a notification not sent yet")
    cancel.add_argument("uuid", type=_uuid, metavar="UUID")
    retry = _command(sub, "retry", _retry, "send a failed notification again")
    retry.add_argument("uuid", type=_uuid, metavar="UUID")
    replay = _command(sub, "replay", _replay, "send the failed notifications of a filter again")
    _filters(replay, replay=True)
    _waiting(replay)
    jobs = sub.add_parser("replays", help="replay jobs and their progress")
    jobs_sub = jobs.add_subparsers(dest="action_name", required=True, metavar="ACTION")
    job = _command(jobs_sub, "show", _job, "one replay job")
    job.add_argument("id", metavar="ID")
    job.add_argument("--json", action="store_true")
    _waiting(job)
    _command(jobs_sub, "list", _jobs, "the latest replay jobs")


def _waiting(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true", help="follow the job until it is done")
    parser.add_argument(
        "--interval", type=_seconds, default=1.0, metavar="SECONDS", help="how often to ask"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run one operator command; its exit code."""
    if hasattr(args, "reason"):
        args.filter = _filter_of(args)
        if args.action is _replay and args.filter == Filter():
            args.error(
                "give at least one of --channel, --reason, --since, --until: "
                "a replay without a filter would send every failed notification again"
            )
    # httpx logs every request at INFO: noise between an operator and the answer.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return asyncio.run(_run(args.action, args, settings))
    except OpsError as exc:
        print(f"notifsvc {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"notifsvc {args.command}: interrupted", file=sys.stderr)
        return 130


async def _run(action: Action, args: argparse.Namespace, settings: Settings) -> int:
    async with OpsClient(settings.api_url, settings.api_key) as client:
        return await action(client, args)


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


def _note(line: str) -> None:
    print(line, file=sys.stderr)


def _filter_of(args: argparse.Namespace) -> Filter:
    if args.since is not None and args.until is not None and args.since >= args.until:
        args.error("--since must be before --until")
    names = ("state", "channel", "priority", "reason", "since", "until")
    return Filter(**{n: getattr(args, n, None) for n in names})


# -- notifications ------------------------------------------------------------------------

#: The columns of ``notifications list``: (title, width); the last one takes the rest.
COLUMNS: Final = (
    ("uuid", 36),
    ("channel", max(len("channel"), *map(len, channels.REGISTRY))),
    ("state", max(len("state"), *(len(s) for s in State))),
    ("reason", max(len("reason"), *(len(r) for r in Reason))),
    ("received_at", len("2024-05-01T12:00:00.000000+00:00")),
    ("to", 0),
)


def table_row(values: Iterable[str]) -> str:
    cells = [f"{v:<{w}}" if w else v for v, (_, w) in zip(values, COLUMNS, strict=True)]
    return "  ".join(cells).rstrip()


def _cell(item: dict[str, Any], key: str) -> str:
    value = item.get(key)
    if key == "to" and value is None:
        value = item.get("recipient")
    return "-" if value is None or value == "" else one_line(str(value))


def item_line(item: dict[str, Any], *, as_json: bool) -> str:
    """A notification as a line of the table, or as one JSON object."""
    if as_json:
        return orjson.dumps(item).decode()
    return table_row(_cell(item, title) for title, _ in COLUMNS)


async def _list(client: OpsClient, args: argparse.Namespace) -> int:
    limit = args.limit or (MAX_LIMIT if args.all else None)
    shown = 0
    if not args.json:
        _out(table_row(title for title, _ in COLUMNS))
    async for page in client.pages(args.filter, limit=limit, cursor=args.cursor):
        for item in page.items:
            shown += 1
            _out(item_line(item, as_json=args.json))
        if not args.all:
            if page.next_cursor is not None:
                _note(f"more match: add --all, or --cursor {page.next_cursor}")
            break
    if shown == 0:
        _note("no notification matches")
    return 0


async def _show(client: OpsClient, args: argparse.Namespace) -> int:
    state = await client.get(args.uuid)
    attempts = await client.attempts(args.uuid)
    if args.json:
        _out(orjson.dumps({"notification": state, "attempts": attempts}).decode())
        return 0
    width = max(map(len, state), default=0)
    for key, value in state.items():
        _out(f"{key:<{width}}  {'-' if value is None else one_line(str(value))}")
    _out(f"attempts ({len(attempts)}):" if attempts else "attempts: none recorded")
    for a in attempts:
        _out("  " + attempt_line(a))
    return 0


def attempt_line(attempt: dict[str, Any]) -> str:
    """One attempt of the history: number, outcome, when, provider, status, error."""
    keys = ("attempt_number", "outcome", "started_at", "provider", "status_code", "error")
    parts = [one_line(str(attempt[k])) for k in keys if attempt.get(k) not in (None, "")]
    return "#" + "  ".join(parts)


async def _cancel(client: OpsClient, args: argparse.Namespace) -> int:
    state = await client.cancel(args.uuid)
    _out(f"{args.uuid}: {one_line(str(state.get('state', 'canceled')))}")
    return 0


async def _retry(client: OpsClient, args: argparse.Namespace) -> int:
    state = await client.retry(args.uuid)
    _out(f"{args.uuid}: {one_line(str(state.get('state', 'forwarded')))}, sent again")
    return 0


# -- replays ------------------------------------------------------------------------------


async def _replay(client: OpsClient, args: argparse.Namespace) -> int:
    job = await client.start_replay(args.filter)
    _out(job.id)
    if args.wait:
        job = await follow(client, job, args.interval)
        _out(summary(job))
    return 0


async def _job(client: OpsClient, args: argparse.Namespace) -> int:
    job = await client.replay(args.id)
    if args.wait:
        job = await follow(client, job, args.interval)
    if args.json:
        _out(orjson.dumps(job.__dict__).decode())
        return 0
    _out(f"{job.id}  {job.state}  {summary(job)}")
    _out(f"filter: {one_line(orjson.dumps(job.filter).decode())}")
    _out(f"created_at: {job.created_at}  finished_at: {job.finished_at or '-'}")
    return 0


async def _jobs(client: OpsClient, _args: argparse.Namespace) -> int:
    jobs = await client.replays()
    for job in jobs:
        shown = one_line(orjson.dumps(job.filter).decode())
        _out(f"{job.id}  {job.state:<7}  {summary(job)}  {job.created_at}  {shown}")
    if not jobs:
        _note("no replay job yet")
    return 0


def summary(job: Job) -> str:
    return f"matched {job.matched}, requeued {job.requeued}, skipped {job.skipped}"


async def follow(client: OpsClient, job: Job, interval: float) -> Job:
    """Poll the job until it is done, showing its progress on stderr. The job does not
    depend on this: a failure here says so, and how to look at it again."""
    progress = progress_for(sys.stderr)
    try:
        while True:
            progress.update(job)
            if job.done:
                return job
            await asyncio.sleep(interval)
            try:
                job = await client.replay(job.id)
            except OpsError as exc:
                hint = f"the replay goes on: notifsvc replays show {job.id} --wait"
                raise OpsError(f"{exc}; {hint}", status=exc.status) from None
    finally:
        progress.close()


class Progress(Protocol):
    def update(self, job: Job) -> None: ...

    def close(self) -> None: ...


def progress_for(stream: IO[str]) -> Progress:
    """A live bar on a terminal; plain lines (for logs) otherwise."""
    return BarProgress(stream) if stream.isatty() else LineProgress(stream)


class BarProgress:
    """A rich progress bar: done (requeued + skipped) of matched."""

    def __init__(self, stream: IO[str], *, force_terminal: bool | None = None) -> None:
        from rich import progress  # noqa: PLC0415 - only on a terminal, rich loads slowly
        from rich.console import Console  # noqa: PLC0415

        console = Console(file=stream, force_terminal=force_terminal)
        self._bar = progress.Progress(
            progress.TextColumn("replay {task.fields[id]}"),
            progress.BarColumn(),
            progress.MofNCompleteColumn(),
            progress.TextColumn("requeued {task.fields[requeued]}, skipped {task.fields[skipped]}"),
            progress.TimeElapsedColumn(),
            console=console,
        )
        self._task: Any = None

    def update(self, job: Job) -> None:
        total = job.matched if job.matched or job.done else None
        done = job.requeued + job.skipped
        if self._task is None:
            self._bar.start()
            self._task = self._bar.add_task("", total=total, id=job.id, requeued=0, skipped=0)
        requeued, skipped = job.requeued, job.skipped
        self._bar.update(
            self._task, total=total, completed=done, requeued=requeued, skipped=skipped
        )

    def close(self) -> None:
        self._bar.stop()


class LineProgress:
    """One line when the counts changed, at most every ``every`` seconds, and the last."""

    def __init__(
        self,
        stream: IO[str],
        *,
        every: float = LINE_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream, self._every, self._clock = stream, every, clock
        self._shown: str | None = None
        self._at = float("-inf")

    def update(self, job: Job) -> None:
        line = f"replay {job.id}: {job.state}, {summary(job)}"
        now = self._clock()
        if line != self._shown and (job.done or now - self._at >= self._every):
            self._stream.write(line + "\n")
            self._stream.flush()
            self._shown, self._at = line, now

    def close(self) -> None:
        """Nothing to undo: every line is complete."""
