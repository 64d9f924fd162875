"""Managing digests for a workspace: schedule, list, remove, preview and post one now.

The slash commands and the App Home call these. Every method is scoped to the workspace that
asked (its team id), never to an id from elsewhere.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from connector.domain.clock import Clock
from connector.features.digest.fetch import fetch_inputs
from connector.features.digest.figures import Digest, DigestInputs, compute
from connector.features.digest.message import render_digest
from connector.features.digest.period import MONDAY, Cadence, period_just_ended
from connector.features.digest.schedule import ScheduleRequest, Timing, next_due, zone_or_none
from connector.features.digest.sender import (
    AUDIT_KIND,
    ChartHook,
    DigestPosted,
    chart_after,
    freshbooks_reason,
    subject,
    timing_of,
)
from connector.freshbooks.client import FreshBooksClient, FreshBooksError
from connector.freshbooks.tokens import NoToken, TokenSource
from connector.pipeline.deliver.engine import CONNECTION_ERRORS, failed_call
from connector.pipeline.deliver.errors import Outcome, classify
from connector.pipeline.render.formatting import Message, RenderContext
from storage import audit, connections, digests
from storage.crypto import Cipher
from storage.db import Database
from storage.digests import RunLine, Schedule
from storage.models import FreshBooksConnection

log = logging.getLogger(__name__)

MAX_SCHEDULES = 20  # per workspace: each costs a full listing of the books at send time


class DigestError(Exception):
    """Why it cannot be done, in words for the person who asked (mrkdwn)."""


def user_zone(client: WebClient, user_id: str) -> ZoneInfo | None:
    """The person's Slack time zone (users.info `tz`, an IANA name), or None when Slack has none."""
    try:
        user = client.users_info(user=user_id)["user"]
    except SlackApiError as exc:
        log.warning("users.info failed: %s", exc.response.get("error"))
        return None
    return zone_or_none(str(user.get("tz") or ""))


@dataclass(frozen=True, slots=True)
class Rendered:
    message: Message
    digest: Digest
    inputs: DigestInputs


@dataclass(frozen=True, slots=True)
class ScheduleLine:
    schedule: Schedule
    timing: Timing
    next_at: dt.datetime
    last: RunLine | None


class DigestService:
    def __init__(
        self,
        *,
        db: Database,
        cipher: Cipher,
        client: FreshBooksClient,
        tokens: TokenSource,
        clock: Clock,
        chart: ChartHook | None = None,
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._client = client
        self._tokens = tokens
        self._clock = clock
        self._chart = chart

    def _connection(self, team_id: str) -> FreshBooksConnection:
        with self._db.read() as session:
            linked = connections.connections_of_team(session, team_id)
            if not linked:
                raise DigestError("Connect FreshBooks first: `/freshbooks connect`.")
            if len(linked) > 1:
                raise DigestError(
                    "This workspace has several FreshBooks connections, and digests cannot say which one yet."
                )
            session.expunge(linked[0])
            return linked[0]

    def not_ready(self, *, team_id: str) -> str | None:
        try:
            self._connection(team_id)
        except DigestError as exc:
            return str(exc)
        return None

    def add(self, *, team_id: str, user_id: str, request: ScheduleRequest, zone: ZoneInfo) -> ScheduleLine:
        connection = self._connection(team_id)
        now = self._clock()
        with self._db.session() as session:
            if len(digests.schedules(session, workspace_id=connection.workspace_id)) >= MAX_SCHEDULES:
                raise DigestError(
                    f"A workspace has at most {MAX_SCHEDULES} digests. "
                    "Remove one first (`/freshbooks digests`)."
                )
            schedule_id = digests.add_schedule(
                session,
                workspace_id=connection.workspace_id,
                connection_id=connection.id,
                channel_id=request.channel_id,
                cadence=request.cadence.value,
                weekday=request.weekday,
                local_time=f"{request.at:%H:%M}",
                zone=zone.key,
                created_by=user_id,
                now=now,
            )
            audit.record(
                session,
                self._cipher,
                kind=AUDIT_KIND,
                outcome="scheduled",
                now=now,
                workspace_id=connection.workspace_id,
                connection_id=connection.id,
                subject_id=subject(schedule_id),
                actor=user_id,
                detail={"channel": request.channel_id},
            )
            schedule = digests.get_schedule(session, schedule_id=schedule_id)
        assert schedule is not None
        timing = timing_of(schedule)
        return ScheduleLine(schedule, timing, next_due(timing, now), None)

    def list(self, *, team_id: str) -> list[ScheduleLine]:
        now = self._clock()
        with self._db.read() as session:
            workspace = connections.workspace_of_team(session, team_id)
            if workspace is None:
                return []
            found = digests.schedules(session, workspace_id=workspace)
            last = digests.last_runs(session, schedule_ids=[s.id for s in found])
        lines = []
        for schedule in found:
            timing = timing_of(schedule)
            lines.append(ScheduleLine(schedule, timing, next_due(timing, now), last.get(schedule.id)))
        return lines

    def remove(self, *, team_id: str, schedule_id: int, user_id: str) -> bool:
        now = self._clock()
        with self._db.session() as session:
            workspace = connections.workspace_of_team(session, team_id)
            if workspace is None or not digests.delete_schedule(
                session, workspace_id=workspace, schedule_id=schedule_id
            ):
                return False
            audit.record(
                session,
                self._cipher,
                kind=AUDIT_KIND,
                outcome="removed",
                now=now,
                workspace_id=workspace,
                subject_id=subject(schedule_id),
                actor=user_id,
            )
        return True

    def cadence_for(self, *, team_id: str, channel_id: str) -> Cadence:
        """The cadence of the channel's (first) schedule, daily when it has none."""
        for line in self.list(team_id=team_id):
            if line.schedule.channel_id == channel_id:
                return line.timing.cadence
        return Cadence.DAILY

    def render_now(self, *, team_id: str, cadence: Cadence, zone: ZoneInfo, delivery_key: str) -> Rendered:
        """The digest of the period just ended, computed now (DigestError if FreshBooks cannot be read)."""
        connection = self._connection(team_id)
        now = self._clock()
        period = period_just_ended(now, cadence=cadence, zone=zone, week_start=MONDAY)
        try:
            inputs = fetch_inputs(
                client=self._client,
                tokens=self._tokens,
                connection_id=connection.id,
                account_id=connection.account_id,
                period=period,
            )
        except (FreshBooksError, NoToken) as error:
            raise DigestError(f"No digest: {freshbooks_reason(error)}. Try again in a moment.") from None
        digest = compute(inputs, period, now)
        message = render_digest(
            digest, RenderContext(account_id=connection.account_id, delivery_key=delivery_key)
        )
        return Rendered(message, digest, inputs)

    def post_now(
        self, *, team_id: str, user_id: str, channel_id: str, zone: ZoneInfo, client: WebClient
    ) -> str:
        """`/freshbooks digest now`: post the digest to the channel at once; the answer for the person."""
        key = str(uuid.uuid4())
        cadence = self.cadence_for(team_id=team_id, channel_id=channel_id)
        rendered = self.render_now(team_id=team_id, cadence=cadence, zone=zone, delivery_key=key)
        message = rendered.message
        try:
            response = client.chat_postMessage(
                channel=channel_id,
                text=message.text,
                blocks=message.blocks,
                metadata=message.metadata,
                unfurl_links=False,
                unfurl_media=False,
            )
        except (SlackApiError, *CONNECTION_ERRORS) as exc:
            code, _ = failed_call(exc)
            if classify(code).outcome is Outcome.IN_DOUBT:
                self._audit_now(team_id, user_id, channel_id, "in_doubt", error=code)
                return (
                    f"Slack did not answer (`{code}`): the digest may be in <#{channel_id}>; "
                    "look there before asking again."
                )
            self._audit_now(team_id, user_id, channel_id, "failed", error=code)
            return f"Slack refused the digest (`{code}`)."
        ts = str(response["ts"])
        self._audit_now(team_id, user_id, channel_id, "posted_now", ts=ts)
        if self._chart is not None:
            posted = DigestPosted(team_id, channel_id, ts, rendered.digest, rendered.inputs, client)
            chart_after(
                self._chart,
                posted,
                lambda code: self._audit_now(team_id, user_id, channel_id, "chart_failed", error=code),
            )
        return f"Posted the {cadence.value} digest to <#{channel_id}>."

    def _audit_now(self, team_id: str, user_id: str, channel_id: str, outcome: str, **detail: object) -> None:
        with self._db.session() as session:
            workspace = connections.workspace_of_team(session, team_id)
            audit.record(
                session,
                self._cipher,
                kind=AUDIT_KIND,
                outcome=outcome,
                now=self._clock(),
                workspace_id=workspace,
                subject_id="digest:now",
                actor=user_id,
                detail={"channel": channel_id, **detail},
            )
