"""Sends each scheduled digest exactly once, across processes and crashes (the scheduled job).

Each minute, `DigestSender.run`:
1. creates the run of every schedule's latest due period (UNIQUE (schedule, period start): any
   number of processes create it once), and
2. leases the runs that are due (one process per run), then for each: if an earlier attempt may
   have posted (in doubt), looks for its delivery key in the channel's history, as the delivery
   engine does (connector.pipeline.deliver.engine.find_posted); otherwise lists the figures from
   FreshBooks, marks the run in doubt and posts it with the key in its metadata.

Failures: FreshBooks not answering is retried with backoff (connector.pipeline.backoff); once the
digest is an hour late the channel gets one "Digest delayed: why" message, then the digest when
FreshBooks answers. A disconnected or revoked connection skips the digest, and the channel is told
once (until a digest goes out again). Slack's answers are classified by the delivery engine's
table (connector.pipeline.deliver.errors). Every outcome is audited (kind `digest`).

The chart: the message goes first, and `chart` (when given) is called after it landed with its
`ts`, to add the chart (an upload in the message's thread, or an edit). A chart that fails never
un-sends the digest nor sends it twice: it is logged, and the run stays delivered.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.orm import Session

from connector.domain.clock import Clock
from connector.domain.process import worker_id
from connector.features.digest.chart_upload import share_chart
from connector.features.digest.fetch import fetch_inputs
from connector.features.digest.figures import Digest, DigestInputs, compute
from connector.features.digest.message import render_digest
from connector.features.digest.period import Cadence, Period
from connector.features.digest.schedule import Timing, latest_due, occurrence_on, zone_or_none
from connector.freshbooks.client import FreshBooksClient, FreshBooksError
from connector.freshbooks.tokens import NoToken, TokenRevoked, TokenSource
from connector.pipeline.backoff import retry_delay
from connector.pipeline.deliver.engine import CONNECTION_ERRORS, failed_call, find_posted
from connector.pipeline.deliver.engine import LEASE as ENGINE_LEASE
from connector.pipeline.deliver.errors import Outcome, classify, classify_upload
from connector.pipeline.render.formatting import Message, RenderContext
from connector.slack.files import UploadFailed
from storage import audit, digests, outbox
from storage.crypto import Cipher
from storage.db import Database
from storage.digests import RunClaim, Schedule
from storage.models import ConnectionStatus, DigestRunState

log = logging.getLogger(__name__)

LEASE = dt.timedelta(minutes=5)  # fetching a big business's books takes up to about 20 s
IN_DOUBT_RECHECK = dt.timedelta(seconds=10)
# How long the channel's turn is held for one post, as the engine holds it (a crash mid-post
# blocks the channel's other posts no longer than a crashed delivery would).
CHANNEL_HOLD = ENGINE_LEASE
LATE_NOTICE_AFTER = dt.timedelta(hours=1)
AUDIT_KIND = "digest"
SKIPPED_TEXT = (
    ":warning: Digest skipped: FreshBooks is disconnected or its access was revoked. "
    "Run `/freshbooks connect` to reconnect; digests resume after."
)
DELAYED_TAIL = "It will be posted here as soon as FreshBooks answers."


@dataclass(frozen=True, slots=True)
class DigestPosted:
    """A digest that landed in Slack: what the chart hook needs."""

    team_id: str
    channel_id: str
    ts: str
    digest: Digest
    inputs: DigestInputs  # what it was computed from (the chart draws the movements)
    client: WebClient


class ChartHook(Protocol):
    def __call__(self, posted: DigestPosted) -> None: ...


def share_chart_after(posted: DigestPosted) -> None:
    """The chart hook the app uses: the chart drawn from the digest and shared in its channel, where
    it lands just below the message (Slack shares a file after completeUploadExternal answers, so
    a message posted after an upload could land above it; posted before, it cannot)."""
    share_chart(
        posted.client,
        channel_id=posted.channel_id,
        thread_ts=None,
        digest=posted.digest,
        inputs=posted.inputs,
    )


def timing_of(schedule: Schedule) -> Timing:
    zone = zone_or_none(schedule.zone)
    if zone is None:
        raise ValueError(f"schedule {schedule.id} has an unknown time zone")
    hours, minutes = (int(part) for part in schedule.local_time.split(":"))
    return Timing(
        cadence=Cadence(schedule.cadence), at=dt.time(hours, minutes), zone=zone, weekday=schedule.weekday
    )


def subject(schedule_id: int) -> str:
    """The audit subject of a schedule's digests (`/freshbooks audit digest` lists them)."""
    return f"digest:{schedule_id}"


def freshbooks_reason(error: Exception) -> str:
    """Why FreshBooks could not be read, in words for the channel (no customer data). Pure."""
    if isinstance(error, FreshBooksError):
        if error.status:
            return f"FreshBooks is not answering (HTTP {error.status}, {error.kind})"
        return f"FreshBooks could not be reached ({error.kind})"
    return "FreshBooks access could not be renewed for now"


class DigestSender:
    def __init__(
        self,
        *,
        db: Database,
        cipher: Cipher,
        client: FreshBooksClient,
        tokens: TokenSource,
        client_for_team: Callable[[str], WebClient | None],
        clock: Clock,
        chart: ChartHook | None = None,
        owner: str | None = None,
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._client = client
        self._tokens = tokens
        self._client_for_team = client_for_team
        self._clock = clock
        self._chart = chart
        self._owner = owner or f"digest-{worker_id()}-{id(self):x}"

    def run(self) -> int:
        """The scheduled job: create what became due, send what may go now; returns posts made."""
        self.create_due_runs()
        return self.send_due()

    def create_due_runs(self) -> int:
        """The run of each schedule's latest due period, unless it exists (or predates the schedule)."""
        now = self._clock()
        created = 0
        with self._db.session() as session:
            for schedule in digests.schedules(session):
                try:
                    occurrence = latest_due(timing_of(schedule), now)
                except ValueError:
                    log.error("digest schedule %d cannot be read; skipped", schedule.id)
                    continue
                if occurrence is None or occurrence.due_at < schedule.created_at:
                    continue
                created += digests.add_run(
                    session,
                    schedule_id=schedule.id,
                    period_start=occurrence.period.start,
                    due_at=occurrence.due_at,
                    now=now,
                )
        return created

    def send_due(self, limit: int = 20) -> int:
        """Send up to `limit` due runs, leasing one at a time: a big business takes seconds to read,
        and a run leased long before its turn could see its lease run out while it waits."""
        posted = 0
        for _ in range(limit):
            with self._db.session() as session:
                claims = digests.claim_runs(
                    session, owner=self._owner, now=self._clock(), lease=LEASE, limit=1
                )
            if not claims:
                break
            try:
                posted += self._send(claims[0])
            except Exception:
                # A bug must not lose the digest: the run stays leased and comes back when it ends.
                log.exception("digest run %d crashed", claims[0].run_id)
        return posted

    # -- one run ---------------------------------------------------------------------------------

    def _send(self, claim: RunClaim) -> int:
        with self._db.read() as session:
            schedule = digests.get_schedule(session, schedule_id=claim.schedule_id)
        if schedule is None:
            return 0  # removed meanwhile (its runs went with it)
        client = self._client_for_team(schedule.team_id)
        if client is None:
            self._retry(claim, schedule, "not_authed", DigestRunState.PENDING)
            return 0
        if claim.state == DigestRunState.IN_DOUBT and claim.sent_at is not None:
            try:
                ts = find_posted(
                    client,
                    channel_id=schedule.channel_id,
                    delivery_key=claim.delivery_key,
                    sent_at=claim.sent_at,
                    thread_ts=None,
                )
            except (SlackApiError, *CONNECTION_ERRORS) as exc:
                code, _ = failed_call(exc)
                self._retry(claim, schedule, code, DigestRunState.IN_DOUBT)
                return 0
            if ts is not None:
                self._delivered(claim, schedule, ts, reconciled=True)
                return 0
        if schedule.connection_status != ConnectionStatus.ACTIVE:
            self._skip(claim, schedule, client)
            return 0
        timing = timing_of(schedule)
        period = occurrence_on(timing, claim.due_at.astimezone(timing.zone).date()).period
        try:
            inputs, digest = self._compute(schedule, period)
        except TokenRevoked:
            self._skip(claim, schedule, client)
            return 0
        except (FreshBooksError, NoToken) as error:
            self._freshbooks_failed(claim, schedule, client, error)
            return 0
        message = render_digest(
            digest, RenderContext(account_id=schedule.account_id, delivery_key=claim.delivery_key)
        )
        return self._post(claim, schedule, client, message, (digest, inputs))

    def _compute(self, schedule: Schedule, period: Period) -> tuple[DigestInputs, Digest]:
        inputs = fetch_inputs(
            client=self._client,
            tokens=self._tokens,
            connection_id=schedule.connection_id,
            account_id=schedule.account_id,
            period=period,
        )
        return inputs, compute(inputs, period, self._clock())

    def _post(
        self,
        claim: RunClaim,
        schedule: Schedule,
        client: WebClient,
        message: Message,
        computed: tuple[Digest, DigestInputs],
    ) -> int:
        now = self._clock()
        with self._db.session() as session:
            # The channel's turn, shared with the delivery engine: never two posts in one second.
            if not outbox.take_channel(
                session,
                workspace_id=schedule.workspace_id,
                channel_id=schedule.channel_id,
                now=now,
                busy=CHANNEL_HOLD,
            ):
                digests.finish(
                    session,
                    run_id=claim.run_id,
                    owner=self._owner,
                    state=DigestRunState(claim.state),
                    now=now,
                    next_attempt_at=now + outbox.CHANNEL_GAP,
                )
                return 0
            if not digests.mark_sent(session, run_id=claim.run_id, owner=self._owner, now=now):
                log.warning("digest run %d: lease lost before posting", claim.run_id)
                outbox.release_channel(
                    session, workspace_id=schedule.workspace_id, channel_id=schedule.channel_id, now=now
                )
                return 0  # another process owns it now, and checks the channel before posting
        try:
            response = client.chat_postMessage(
                channel=schedule.channel_id,
                text=message.text,
                blocks=message.blocks,
                metadata=message.metadata,
                unfurl_links=False,
                unfurl_media=False,
            )
        except (SlackApiError, *CONNECTION_ERRORS) as exc:
            self._release(schedule)
            self._slack_failed(claim, schedule, exc)
            return 0
        self._release(schedule)
        ts = str(response["ts"])
        self._delivered(claim, schedule, ts, reconciled=False)
        if self._chart is not None:
            posted = DigestPosted(schedule.team_id, schedule.channel_id, ts, *computed, client)
            chart_after(self._chart, posted, self._chart_failed(claim, schedule))
        return 1

    def _chart_failed(self, claim: RunClaim, schedule: Schedule) -> Callable[[str], None]:
        def record(code: str) -> None:
            with self._db.session() as session:
                self._audit(session, claim, schedule, "chart_failed", error=code)

        return record

    def _release(self, schedule: Schedule) -> None:
        """The channel's next post (of any kind) waits a second from Slack's answer (engine.py)."""
        answered_at = self._clock()
        with self._db.session() as session:
            outbox.release_channel(
                session,
                workspace_id=schedule.workspace_id,
                channel_id=schedule.channel_id,
                now=answered_at,
                posted_at=answered_at,
            )

    # -- outcomes --------------------------------------------------------------------------------

    def _audit(
        self, session: Session, claim: RunClaim, schedule: Schedule, outcome: str, **detail: object
    ) -> None:
        audit.record(
            session,
            self._cipher,
            kind=AUDIT_KIND,
            outcome=outcome,
            now=self._clock(),
            workspace_id=schedule.workspace_id,
            connection_id=schedule.connection_id,
            subject_id=subject(schedule.id),
            detail={
                "channel": schedule.channel_id,
                "period_start": claim.period_start.isoformat(),
                "attempt": claim.attempts,
                **detail,
            },
        )

    def _delivered(self, claim: RunClaim, schedule: Schedule, ts: str, *, reconciled: bool) -> None:
        with self._db.session() as session:
            if not digests.finish(
                session,
                run_id=claim.run_id,
                owner=self._owner,
                state=DigestRunState.DELIVERED,
                now=self._clock(),
                slack_ts=ts,
            ):
                # Our lease ran out while the post was on its way: whoever took the run over finds
                # this post by its key (it is in the channel) and records it.
                log.warning("digest run %d: lease lost while posting; left to its new holder", claim.run_id)
                return
            digests.clear_skip(session, schedule_id=schedule.id)
            self._audit(session, claim, schedule, "reconciled" if reconciled else "delivered", ts=ts)

    def _retry(
        self,
        claim: RunClaim,
        schedule: Schedule,
        code: str,
        state: DigestRunState,
        retry_after: float | None = None,
    ) -> None:
        """Try again later (an in-doubt recheck waits at least IN_DOUBT_RECHECK); fail after about a day."""
        now = self._clock()
        delay = retry_delay(claim.attempts, random.random())  # noqa: S311 - jitter
        if delay is None:
            self._finish(
                claim, schedule, DigestRunState.FAILED, code, not_posted=state is DigestRunState.PENDING
            )
            log.error("digest run %d failed: still %s after %d attempts", claim.run_id, code, claim.attempts)
            return
        if retry_after is not None:
            delay = max(delay, dt.timedelta(seconds=retry_after))
        if state is DigestRunState.IN_DOUBT:
            delay = max(delay, IN_DOUBT_RECHECK)
        next_at = now + delay
        late_at = claim.due_at + LATE_NOTICE_AFTER
        if claim.delayed_notice_at is None and now < late_at < next_at:
            next_at = late_at  # try once more right when the digest becomes an hour late
        self._finish(
            claim, schedule, state, code, next_attempt_at=next_at, not_posted=state is DigestRunState.PENDING
        )

    def _finish(
        self,
        claim: RunClaim,
        schedule: Schedule,
        state: DigestRunState,
        code: str | None,
        *,
        next_attempt_at: dt.datetime | None = None,
        not_posted: bool = False,
    ) -> None:
        with self._db.session() as session:
            ours = digests.finish(
                session,
                run_id=claim.run_id,
                owner=self._owner,
                state=state,
                now=self._clock(),
                next_attempt_at=next_attempt_at,
                error=code,
                not_posted=not_posted,
            )
            if not ours:  # the lease ran out meanwhile: whoever holds the run now records it
                log.warning(
                    "digest run %d: lease lost before its outcome (%s) was recorded", claim.run_id, code
                )
                return
            outcome = "retry" if state is DigestRunState.PENDING else str(state)
            self._audit(session, claim, schedule, outcome, error=code)

    def _slack_failed(self, claim: RunClaim, schedule: Schedule, exc: BaseException) -> None:
        code, retry_after = failed_call(exc)
        outcome = classify(code).outcome
        if retry_after is not None or outcome is Outcome.RETRY:
            self._retry(claim, schedule, code, DigestRunState.PENDING, retry_after)
        elif outcome is Outcome.IN_DOUBT:
            self._retry(claim, schedule, code, DigestRunState.IN_DOUBT)
        else:
            # A channel gone or archived, a revoked install, or our bug: no retry fixes it.
            log.error("digest run %d refused by Slack (%s)", claim.run_id, code)
            self._finish(claim, schedule, DigestRunState.FAILED, code, not_posted=True)

    def _freshbooks_failed(
        self, claim: RunClaim, schedule: Schedule, client: WebClient, error: Exception
    ) -> None:
        code = f"freshbooks_{error.kind}" if isinstance(error, FreshBooksError) else "freshbooks_token"
        now = self._clock()
        if now >= claim.due_at + LATE_NOTICE_AFTER:
            with self._db.session() as session:
                first = digests.note_delay(session, run_id=claim.run_id, now=now)
            if first:
                why = freshbooks_reason(error)
                self._notice(client, schedule, f":hourglass: Digest delayed: {why}. {DELAYED_TAIL}")
                with self._db.session() as session:
                    self._audit(session, claim, schedule, "delayed", error=code)
                claim = dataclasses.replace(claim, delayed_notice_at=now)
        self._retry(claim, schedule, code, DigestRunState.PENDING)

    def _skip(self, claim: RunClaim, schedule: Schedule, client: WebClient) -> None:
        now = self._clock()
        with self._db.session() as session:
            first = digests.note_skip(session, schedule_id=schedule.id, now=now)
        if first:
            self._notice(client, schedule, SKIPPED_TEXT)
        self._finish(claim, schedule, DigestRunState.SKIPPED, "freshbooks_disconnected", not_posted=True)

    def _notice(self, client: WebClient, schedule: Schedule, text: str) -> None:
        """One short message to the channel instead of silence; a failure is only logged."""
        try:
            client.chat_postMessage(channel=schedule.channel_id, text=text)
        except (SlackApiError, *CONNECTION_ERRORS) as exc:
            log.warning("digest notice to the channel failed: %s", failed_call(exc)[0])


def chart_after(chart: ChartHook, posted: DigestPosted, failed: Callable[[str], None]) -> None:
    """Run the chart hook once the digest landed. A chart that fails is logged and reported to
    `failed` (the audit trail) with its code; the digest stays posted, once."""
    try:
        chart(posted)
    except UploadFailed as failure:
        code, _ = classify_upload(failure)
        log.warning("the digest's chart was not shared (%s); the digest itself was posted", code)
        failed(code)
    except Exception:
        log.exception("the digest's chart failed (the digest itself was posted)")
        failed("bug")
