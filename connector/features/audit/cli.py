"""`fbslack audit` and `fbslack replay`: the slash commands' code paths
(connector.features.audit.search and .replay) for operators, with plain-text output, progress and an
explicit confirmation."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import sys
from collections.abc import Callable
from typing import Any, TextIO

from connector.domain.clock import system_clock
from connector.domain.settings import Settings
from connector.features.audit.replay import (
    Outcome,
    ReplayAnswer,
    ReplayOne,
    ReplayService,
    ReplaySyntaxError,
    describe,
    parse_replay_command,
)
from connector.features.audit.search import AuditHit, AuditService, AuditSyntaxError, describe_state
from connector.pipeline.render.formatting import format_money
from storage import connections
from storage.db import Database
from storage.search import BlindIndex

SWEEP_NOTE = "A running `fbslack serve` sends them within about 15 seconds."


def _when(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def plain_hit(hit: AuditHit) -> str:
    parts = [
        f"D{hit.delivery_id}" if hit.delivery_id is not None else "-",
        hit.event_name,
        hit.number or "",
        hit.counterparty or "",
        format_money(hit.amount) if hit.amount is not None else "",
        hit.channel_id or "",
        describe_state(hit),
        _when(hit.received_at),
    ]
    if hit.permalink:
        parts.append(hit.permalink)
    return "  ".join(p for p in parts if p)


def _team(db: Database, wanted: str | None) -> str:
    with db.read() as session:
        teams = connections.team_ids(session)
    if wanted is not None:
        if wanted not in teams:
            raise SystemExit(
                f"fbslack: no installed workspace has team id {wanted!r}; known: {', '.join(teams) or 'none'}"
            )
        return wanted
    if len(teams) == 1:
        return teams[0]
    if not teams:
        raise SystemExit("fbslack: no Slack workspace is installed yet")
    raise SystemExit(f"fbslack: several workspaces are installed; pick one with --team ({', '.join(teams)})")


def _confirm(question: str, *, yes: bool, stdin: TextIO, out: TextIO) -> bool:
    if yes:
        return True
    if not stdin.isatty():
        print(f"{question} Not confirmed: run again with --yes.", file=out)
        return False
    print(f"{question} [y/N] ", end="", file=out, flush=True)
    return stdin.readline().strip().lower() in ("y", "yes")


def _open(settings: Settings) -> tuple[Database, Any]:
    from storage.crypto import build_cipher

    return Database(settings.resolved_database_url), build_cipher(settings)


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    db, cipher = _open(settings)
    try:
        service = AuditService(
            db=db, cipher=cipher, blind_index=BlindIndex(db, cipher, clock=system_clock), clock=system_clock
        )
        try:
            query = service.parse(" ".join(args.query))
        except AuditSyntaxError as exc:
            print(f"fbslack: {exc}", file=sys.stderr)
            return 2
        team = _team(db, args.team)
        if query.digests:
            lines = service.digest_trail(team_id=team, query=query, limit=args.limit)
            for line in lines:
                where = f" {line.detail['channel']}" if line.detail.get("channel") else ""
                error = f" ({line.detail['error']})" if line.detail.get("error") else ""
                who = f" by {line.actor}" if line.actor else ""
                print(f"{_when(line.at)}  {line.kind} {line.outcome}{where}{who}{error}")
            if not lines:
                print("no digest in the audit trail", file=sys.stderr)
            return 0
        if query.delivery_id is not None:
            history = service.history(team_id=team, delivery_id=query.delivery_id)
            if history is None:
                print(f"no delivery D{query.delivery_id} in {team}", file=sys.stderr)
                return 1
            print(plain_hit(history.hit))
            for line in history.lines:
                who = f" by {line.actor}" if line.actor else ""
                error = f" ({line.detail['error']})" if line.detail.get("error") else ""
                print(f"  {_when(line.at)}  {line.kind} {line.outcome}{who}{error}")
            return 0
        result = service.search(
            team_id=team, query=query, limit=args.limit, time_limit=None
        )  # a terminal waits
        for hit in result.hits:
            print(plain_hit(hit))
        if not result.hits:
            print("nothing matches", file=sys.stderr)
        elif result.more:
            print(f"(showing the newest {args.limit}; narrow the search or raise --limit)", file=sys.stderr)
        return 0
    finally:
        db.dispose()


def _answer_line(answer: ReplayAnswer, asked: int) -> str:
    text = describe(answer, asked, lambda channel_id: channel_id) + "."
    return f"{text} {SWEEP_NOTE}" if answer.outcome in (Outcome.REQUEUED, Outcome.CREATED) else text


def cmd_replay(
    args: argparse.Namespace, settings: Settings, *, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout
) -> int:
    words = [args.target]
    if args.to:
        words += ["to", f"<#{args.to}>"]
    if args.since:
        words += ["since", args.since]
    try:
        request = parse_replay_command(" ".join(words), today=system_clock().date())
    except ReplaySyntaxError as exc:
        print(f"fbslack: {exc}", file=sys.stderr)
        return 2
    db, cipher = _open(settings)
    actor = f"cli:{getpass.getuser()}"
    try:
        service = ReplayService(db=db, cipher=cipher, clock=system_clock, on_requeued=lambda: None)
        team = _team(db, args.team)
        if isinstance(request, ReplayOne):
            answer = service.replay_one(
                team_id=team,
                delivery_id=request.delivery_id,
                to_channel=request.to_channel,
                confirmed=False,
                actor=actor,
            )
            if answer.outcome == Outcome.NEEDS_CONFIRMATION:
                question = (
                    f"D{answer.delivery_id} was already delivered to {answer.channel_id}; post it again?"
                )
                if not _confirm(question, yes=args.yes, stdin=stdin, out=out):
                    return 1
                answer = service.replay_one(
                    team_id=team,
                    delivery_id=request.delivery_id,
                    to_channel=request.to_channel,
                    confirmed=True,
                    actor=actor,
                )
            print(_answer_line(answer, request.delivery_id), file=out)
            return 0 if answer.outcome != Outcome.NOT_FOUND else 1
        plan = service.plan_failed(team_id=team, since=request.since, to_channel=request.to_channel)
        if plan.count == 0:
            print("nothing failed or parked: nothing to replay", file=out)
            return 0
        where = plan.to_channel or "their channels"
        if not _confirm(
            f"{plan.count} failed or parked deliveries will be sent again to {where}.",
            yes=args.yes,
            stdin=stdin,
            out=out,
        ):
            return 1
        progress: Callable[[int, int], None] = lambda done, total: print(f"  {done}/{total}", file=sys.stderr)  # noqa: E731
        result = service.replay_failed(team_id=team, plan=plan, actor=actor, progress=progress)
        print(
            f"queued {result.requeued} of {plan.count} again; {result.skipped} left alone "
            f"(already delivered or waiting there). {SWEEP_NOTE}",
            file=out,
        )
        return 0
    finally:
        db.dispose()


def add_commands(sub: Any, settings: Callable[[], Settings]) -> None:
    audit = sub.add_parser("audit", help="search the audit trail (same query as /freshbooks audit)")
    audit.add_argument("query", nargs="*", help="e.g. acme invoice.paid since:30d, or D123 for one delivery")
    audit.add_argument("--team", help="Slack team id (needed when several workspaces are installed)")
    audit.add_argument(
        "--limit", type=int, default=25, metavar="N", help="show at most N entries (default: 25)"
    )
    audit.set_defaults(func=lambda args: cmd_audit(args, settings()))

    replay = sub.add_parser("replay", help="send deliveries again (same as /freshbooks replay)")
    replay.add_argument("target", help="a delivery id like D123, or `failed` (failed and parked deliveries)")
    replay.add_argument("--to", metavar="CHANNEL_ID", help="send to this channel instead (e.g. C0123ABC)")
    replay.add_argument("--since", metavar="DATE", help="with `failed`: only since 2026-11-01 or 7d")
    replay.add_argument("--team", help="Slack team id (needed when several workspaces are installed)")
    replay.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    replay.set_defaults(func=lambda args: cmd_replay(args, settings()))
