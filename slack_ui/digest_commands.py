"""`/freshbooks digest`, `digests` and `undigest`: parse, check the channel, call the digest service.

The channel is checked as `/freshbooks route` checks it (connector.features.rules.service
.ensure_postable: the bot can see it, it is not archived, and the bot joins a public one). The
time zone is the admin's own, from Slack (users.info `tz`), stored as its IANA name.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from slack_bolt import Respond
from slack_sdk import WebClient

from connector.domain.clock import Clock
from connector.features.digest.schedule import (
    DigestSyntaxError,
    NowRequest,
    parse_digest_command,
)
from connector.features.digest.service import DigestError, DigestService, ScheduleLine, user_zone
from connector.features.permissions import ChannelVisibility, Permissions
from connector.features.rules.service import ensure_postable
from connector.features.rules.syntax import id_problem, parse_id
from slack_ui.answer import DeferredAck

UTC = ZoneInfo("UTC")
NO_ZONE_NOTE = " _(Slack has no time zone for you, so the time is UTC; set yours in Slack's preferences.)_"


def _when(moment: dt.datetime, zone: ZoneInfo) -> str:
    local = moment.astimezone(zone)
    return f"{local:%a %b} {local.day} {local:%H:%M}"


def schedule_line(line: ScheduleLine) -> str:
    """`#2` <#C1> weekly on Monday at 08:00 (Europe/Paris), next Mon Dec 7 08:00, last: delivered. Pure."""
    text = (
        f"`#{line.schedule.id}` <#{line.schedule.channel_id}> {line.timing.describe()}, "
        f"next {_when(line.next_at, line.timing.zone)}"
    )
    if line.last is not None:
        problem = f" (`{line.last.error}`)" if line.last.error and line.last.state != "delivered" else ""
        text += f", last: {line.last.state}{problem}"
    return text


def digests_text(lines: list[ScheduleLine]) -> str:
    if not lines:
        return "No digests yet. Schedule one with `/freshbooks digest #channel daily` (or `weekly`)."
    return "\n".join(["*Cash-flow digests*", *(f"• {schedule_line(line)}" for line in lines)])


@dataclass(frozen=True)
class DigestCommands:
    service: DigestService
    clock: Clock
    permissions: Permissions
    visibility: ChannelVisibility  # a member sees no digest of a private channel they are not in

    def digest(self, command: dict[str, Any], ack: DeferredAck, _respond: Respond, client: WebClient) -> None:
        args = (command.get("text") or "").strip()[len("digest") :]
        try:
            request = parse_digest_command(args)
        except DigestSyntaxError as exc:
            ack(response_type="ephemeral", text=str(exc))
            return
        team_id, user_id = command["team_id"], command["user_id"]
        problem = self.service.not_ready(team_id=team_id)
        if problem is not None:
            ack(response_type="ephemeral", text=problem)
            return
        channel_id = request.channel_id or command.get("channel_id", "")
        ack.meanwhile = f"Checking <#{channel_id}>…"
        check = ensure_postable(client, channel_id)
        if not check.ok:
            ack(response_type="ephemeral", text=f"No digest: {check.reason}")
            return
        found = user_zone(client, user_id)
        zone, note = (found, "") if found is not None else (UTC, NO_ZONE_NOTE)
        joined = " I joined the channel to post there." if check.joined else ""
        if isinstance(request, NowRequest):
            ack.meanwhile = f"Preparing the digest for <#{channel_id}> (reading FreshBooks)…"
            try:
                answer = self.service.post_now(
                    team_id=team_id, user_id=user_id, channel_id=channel_id, zone=zone, client=client
                )
            except DigestError as exc:
                answer = str(exc)
            ack(response_type="ephemeral", text=answer + joined)
            return
        try:
            line = self.service.add(team_id=team_id, user_id=user_id, request=request, zone=zone)
        except DigestError as exc:
            ack(response_type="ephemeral", text=str(exc))
            return
        ack(response_type="ephemeral", text=f"Digest scheduled: {schedule_line(line)}.{joined}{note}")

    def digests(
        self, command: dict[str, Any], ack: DeferredAck, _respond: Respond, client: WebClient
    ) -> None:
        ack.meanwhile = "Listing the digests…"
        team_id, user_id = command["team_id"], command["user_id"]
        lines = self.service.list(team_id=team_id)
        hidden: frozenset[str] = frozenset()
        if lines:  # none: nothing to hide, and no Slack call to find out
            hidden = self.visibility.hidden(
                client,
                team_id=team_id,
                user_id=user_id,
                channel_ids={line.schedule.channel_id for line in lines},
                sees_all=self.permissions.may_manage(client, team_id, user_id),
            )
        shown = [line for line in lines if line.schedule.channel_id not in hidden]
        note = "\n_Digests for private channels are shown to the people in them._" if hidden else ""
        ack(response_type="ephemeral", text=digests_text(shown) + note)

    def undigest(
        self, command: dict[str, Any], ack: DeferredAck, _respond: Respond, _client: WebClient
    ) -> None:
        words = (command.get("text") or "").split()
        wanted = words[1].lstrip("#") if len(words) == 2 else ""
        schedule_id = parse_id(wanted)
        if schedule_id is None:
            usage = "Usage: `/freshbooks undigest N` (the number `/freshbooks digests` shows, e.g. `#2`)."
            problem = f"{id_problem(wanted, 'a digest number')}\n" if wanted else ""
            ack(response_type="ephemeral", text=problem + usage)
            return
        removed = self.service.remove(
            team_id=command["team_id"], schedule_id=schedule_id, user_id=command["user_id"]
        )
        text = (
            f"Digest #{schedule_id} removed."
            if removed
            else f"There is no digest #{schedule_id} in this workspace."
        )
        ack(response_type="ephemeral", text=text)
