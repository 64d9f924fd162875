"""`/freshbooks audit` and `/freshbooks replay`, with the confirmation buttons replays need.

The work is in connector.features.audit.search and .replay (shared with `fbslack audit|replay`); this
module parses Slack's payloads, asks before anything risky and words the answers.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from connector.features.audit import views as audit_views
from connector.features.audit.replay import (
    BulkPlan,
    Outcome,
    ReplayFailed,
    ReplayService,
    ReplaySyntaxError,
    parse_replay_command,
)
from connector.features.audit.search import AuditService, AuditSyntaxError, DeliveryHistory
from connector.features.audit.views import CANCEL_ACTION, CONFIRM_ACTION
from connector.features.rules.service import ensure_postable
from slack_ui.answer import Answer

log = logging.getLogger(__name__)

MayManage = Callable[[WebClient, str, str], bool]


@dataclass(frozen=True)
class AuditCommands:
    audit: AuditService
    replay: ReplayService
    may_manage: MayManage
    clock: Callable[[], dt.datetime]

    def audit_answer(self, command: dict[str, Any]) -> str:
        """What `/freshbooks audit ...` answers: the matches, one delivery's history, or why not."""
        text = (command.get("text") or "").strip()[len("audit") :]
        try:
            query = self.audit.parse(text)
        except AuditSyntaxError as exc:
            return str(exc)
        team_id = command["team_id"]
        if query.digests:
            return audit_views.digest_trail_text(self.audit.digest_trail(team_id=team_id, query=query))
        if query.delivery_id is not None:
            history = self.audit.history(team_id=team_id, delivery_id=query.delivery_id)
            return _history_or_missing(history, query.delivery_id)
        result = self.audit.search(team_id=team_id, query=query)
        return audit_views.search_text(result, query)

    def run_replay(self, command: dict[str, Any], ack: Answer, client: WebClient) -> None:
        text = (command.get("text") or "").strip()[len("replay") :]
        try:
            request = parse_replay_command(text, today=self.clock().date())
        except ReplaySyntaxError as exc:
            ack(response_type="ephemeral", text=str(exc))
            return
        if request.to_channel is not None:
            check = ensure_postable(client, request.to_channel)
            if not check.ok:
                ack(response_type="ephemeral", text=f"Nothing replayed: {check.reason}")
                return
        team_id, user_id = command["team_id"], command["user_id"]
        if isinstance(request, ReplayFailed):
            plan = self.replay.plan_failed(
                team_id=team_id, since=request.since, to_channel=request.to_channel
            )
            if plan.count == 0:
                ack(response_type="ephemeral", text=audit_views.nothing_failed(plan))
                return
            ack(response_type="ephemeral", **audit_views.confirm_bulk(plan, _bulk_value(plan)))
            return
        answer = self.replay.replay_one(
            team_id=team_id,
            delivery_id=request.delivery_id,
            to_channel=request.to_channel,
            confirmed=False,
            actor=user_id,
        )
        if answer.outcome == Outcome.NEEDS_CONFIRMATION:
            value = json.dumps({"op": "one", "id": answer.delivery_id, "to": answer.channel_id})
            ack(response_type="ephemeral", **audit_views.confirm_repost(answer, value))
            return
        ack(response_type="ephemeral", text=audit_views.replay_answer_text(answer, request.delivery_id))

    def on_confirm(self, ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        ack()
        team_id = (body.get("team") or {}).get("id") or body["user"].get("team_id", "")
        user_id = body["user"]["id"]
        if not self.may_manage(client, team_id, user_id):
            respond(response_type="ephemeral", replace_original=False, text=audit_views.REFUSED)
            return
        try:
            value = json.loads(body["actions"][0]["value"])
        except (KeyError, IndexError, ValueError):
            respond(replace_original=True, text="That button is no longer valid; run the command again.")
            return
        if value.get("op") == "one":
            answer = self.replay.replay_one(
                team_id=team_id,
                delivery_id=int(value["id"]),
                to_channel=value.get("to"),
                confirmed=True,
                actor=user_id,
            )
            respond(replace_original=True, text=audit_views.replay_answer_text(answer, int(value["id"])))
            return
        plan = BulkPlan(
            count=int(value["count"]),
            up_to_id=int(value["up_to"]),
            since=dt.date.fromisoformat(value["since"]) if value.get("since") else None,
            to_channel=value.get("to"),
        )
        result = self.replay.replay_failed(team_id=team_id, plan=plan, actor=user_id)
        respond(replace_original=True, text=audit_views.bulk_done(plan, result))

    def register(self, app: App) -> None:
        app.action(CONFIRM_ACTION)(self.on_confirm)

        def cancel(ack: Ack, respond: Respond) -> None:
            ack()
            respond(replace_original=True, text="Replay cancelled; nothing was sent.")

        app.action(CANCEL_ACTION)(cancel)


def _bulk_value(plan: BulkPlan) -> str:
    return json.dumps(
        {
            "op": "failed",
            "count": plan.count,
            "up_to": plan.up_to_id,
            "since": plan.since.isoformat() if plan.since else None,
            "to": plan.to_channel,
        }
    )


def _history_or_missing(history: DeliveryHistory | None, delivery_id: int) -> str:
    if history is None:
        return f"There is no delivery D{delivery_id} in this workspace."
    return audit_views.history_text(history)
