"""The /freshbooks slash command: parse, check who may do it, call one service, answer ephemerally."""

from __future__ import annotations

import concurrent.futures
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from connector.domain.clock import Clock
from connector.domain.quiet import QuietHoursError, QuietRequest, parse_range
from connector.features.home import HomeService
from connector.features.limits import SampleLimit, wait_words
from connector.features.permissions import ChannelVisibility, Permissions, refusal
from connector.features.rules.modal import RuleForm, rule_modal
from connector.features.rules.preview import PreviewService
from connector.features.rules.service import RuleError, RuleService, ensure_postable
from connector.features.rules.syntax import RouteSyntaxError, id_problem, parse_id, parse_route_command
from connector.features.status import ConnectionReport
from connector.freshbooks.connect import ConnectError, ConnectService, DisconnectService
from connector.pipeline.render.formatting import OPEN_IN_FRESHBOOKS_ACTION_ID, escape
from slack_ui import views
from slack_ui.answer import ACK_BUDGET_SECONDS, ARRIVED, DeferredAck, run_in_time
from slack_ui.audit_commands import AuditCommands
from slack_ui.digest_commands import DigestCommands
from slack_ui.views import HELP_TEXT

log = logging.getLogger(__name__)

ADMIN_ONLY = frozenset({"connect", "disconnect", "route", "unroute", "audit", "replay", "digest", "undigest"})


@dataclass(frozen=True)
class CommandServices:
    connect: ConnectService
    disconnect: DisconnectService
    status: Callable[[str], list[ConnectionReport]]
    rules: RuleService
    home: HomeService
    clock: Clock
    permissions: Permissions  # who may run ADMIN_ONLY subcommands (connector.features.permissions)
    preview: PreviewService  # the rule modal's preview (connector.features.rules.preview)
    audit: AuditCommands  # audit search and replay (connector.features.audit)
    samples: SampleLimit  # one `/freshbooks test` per person per interval (connector.features.limits)
    visibility: ChannelVisibility  # private channels a member is not in stay out of their view
    digests: DigestCommands  # cash-flow digests: digest, digests, undigest (slack_ui.digest_commands)


Handler = Callable[[dict[str, Any], DeferredAck, Respond, WebClient], None]


class FreshbooksCommand:
    def __init__(self, services: CommandServices) -> None:
        self._services = services
        # Runs every command's work, so that the listener thread can acknowledge in time however
        # slow Slack is (see slack_ui.answer); threads are created only when used.
        self._work = concurrent.futures.ThreadPoolExecutor(
            max_workers=32, thread_name_prefix="fbslack-command"
        )
        # One table, no special cases: every handler parses, calls one service, answers.
        self._handlers: dict[str, Handler] = {
            "help": self._help,
            "connect": self._connect,
            "status": self._status,
            "disconnect": self._disconnect,
            "route": self._route,
            "rules": self._rules,
            "quiet": self._quiet,
            "unroute": self._unroute,
            "test": self._test,
            "audit": self._audit,
            "replay": self._replay,
            "digest": self._digest,
            "digests": self._digests,
            "undigest": self._undigest,
        }

    @property
    def subcommands(self) -> tuple[str, ...]:
        """Every `/freshbooks` subcommand, in the table's order (manifest.yml's usage_hint names them)."""
        return tuple(self._handlers)

    def __call__(
        self, ack: Ack, command: dict[str, Any], client: WebClient, respond: Respond, context: BoltContext
    ) -> None:
        arrived = context.get(ARRIVED) or time.monotonic()
        text = (command.get("text") or "").strip()
        sub = text.split(maxsplit=1)[0].lower() if text else "help"
        answer = DeferredAck(ack, respond, arrived=arrived, meanwhile=f"Working on `/freshbooks {sub}`…")
        handler = self._handlers.get(sub)
        if handler is None:
            shown = escape(sub[:30])
            answer(response_type="ephemeral", text=f"`{shown}` is not a /freshbooks command.\n\n{HELP_TEXT}")
            return

        def work(answer: DeferredAck) -> None:
            # The admin check may ask Slack (users.info): it counts against the budget too.
            if sub in ADMIN_ONLY and not self._services.permissions.may_manage(
                client, command["team_id"], command["user_id"]
            ):
                answer(response_type="ephemeral", text=refusal(f"run `/freshbooks {sub}`"))
                return
            handler(command, answer, respond, client)

        run_in_time(self._work.submit, work, answer, deadline=arrived + ACK_BUDGET_SECONDS)

    def _help(
        self, _command: dict[str, Any], ack: DeferredAck, _respond: Respond, _client: WebClient
    ) -> None:
        ack(response_type="ephemeral", text=HELP_TEXT)

    def _connect(
        self, command: dict[str, Any], ack: DeferredAck, _respond: Respond, _client: WebClient
    ) -> None:
        try:
            url = self._services.connect.start(team_id=command["team_id"], user_id=command["user_id"])
        except ConnectError as exc:
            ack(response_type="ephemeral", text=str(exc))
            return
        ack(
            response_type="ephemeral",
            text=f"<{url}|Connect FreshBooks> (the link works once, for 10 minutes).",
            blocks=[
                {
                    "type": "section",
                    "text": {
                        "type": "mrkdwn",
                        "text": "Sign in to FreshBooks and approve read access. The link works once, for 10 "
                        "minutes.",
                    },
                    "accessory": {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Connect FreshBooks"},
                        "url": url,
                        "style": "primary",
                        "action_id": "freshbooks_connect_link",
                    },
                }
            ],
        )

    def _status(
        self, command: dict[str, Any], ack: DeferredAck, _respond: Respond, _client: WebClient
    ) -> None:
        reports = self._services.status(command["team_id"])
        ack(response_type="ephemeral", text=views.status_text(reports, self._services.clock()))

    def _disconnect(
        self, command: dict[str, Any], ack: DeferredAck, respond: Respond, _client: WebClient
    ) -> None:
        # Deleting the webhooks at FreshBooks takes longer than Slack's 3 s: answer first.
        ack(response_type="ephemeral", text="Disconnecting FreshBooks…")
        result = self._services.disconnect.disconnect(team_id=command["team_id"], user_id=command["user_id"])
        if not result.business_names:
            respond(response_type="ephemeral", text="FreshBooks was not connected to this workspace.")
            return
        names = ", ".join(escape(n) for n in result.business_names)
        lines = [f"Disconnected {names}. Tokens are wiped; the audit trail is kept."]
        lines += [f":warning: {escape(p)}" for p in result.problems]
        respond(response_type="ephemeral", text="\n".join(lines))

    def _route(self, command: dict[str, Any], ack: DeferredAck, respond: Respond, client: WebClient) -> None:
        args = (command.get("text") or "").strip()[len("route") :]
        if not args.strip():
            self._open_rule_modal(command, ack, client)
            return
        try:
            spec = parse_route_command(args)
        except RouteSyntaxError as exc:
            ack(response_type="ephemeral", text=str(exc))
            return

        ack.meanwhile = f"Checking <#{spec.channel_id}> and saving the rule…"
        # Up to two Slack calls (conversations.info, conversations.join) and a write.
        check = ensure_postable(client, spec.channel_id)
        if not check.ok:
            ack(response_type="ephemeral", text=f"Rule not saved: {check.reason}")
            return
        try:
            rule = self._services.rules.add(team_id=command["team_id"], user_id=command["user_id"], spec=spec)
        except RuleError as exc:
            ack(response_type="ephemeral", text=str(exc))
            return
        joined = " I joined the channel to post there." if check.joined else ""
        ack(response_type="ephemeral", text=f"Rule saved: {views.rule_line(rule)}.{joined}")

    def _open_rule_modal(self, command: dict[str, Any], ack: DeferredAck, client: WebClient) -> None:
        """`/freshbooks route` alone: the rule form, defaulting to the channel the command ran in."""
        problem = self._services.rules.not_ready(team_id=command["team_id"])
        if problem is not None:
            ack(response_type="ephemeral", text=problem)
            return
        try:  # the trigger_id is valid for 3 s: open first, then acknowledge
            client.views_open(trigger_id=command["trigger_id"], view=rule_modal(RuleForm(from_command=True)))
        except SlackApiError as exc:
            ack(
                response_type="ephemeral",
                text=f"Slack would not open the rule form (`{exc.response.get('error')}`). Try again, or "
                "type the rule: `/freshbooks route EVENTS #channel`.",
            )
            return
        ack()

    def _rules(self, command: dict[str, Any], ack: DeferredAck, _respond: Respond, client: WebClient) -> None:
        # A member's listing asks Slack who is in which private channel first (two calls, cached).
        ack.meanwhile = "Listing the rules…"
        team_id, user_id = command["team_id"], command["user_id"]
        rules = self._services.rules.list(team_id=team_id)
        hidden: frozenset[str] = frozenset()
        if rules:  # no rule: nothing to hide, and no Slack call to find out
            hidden = self._services.visibility.hidden(
                client,
                team_id=team_id,
                user_id=user_id,
                channel_ids={r.channel_id for r in rules},
                sees_all=self._services.permissions.may_manage(client, team_id, user_id),
            )
        shown = [r for r in rules if r.channel_id not in hidden]
        note = "\n_Rules for private channels are shown to the people in them._" if hidden else ""
        quiet = [h for h in self._services.rules.quiet_hours(team_id=team_id) if h.channel_id not in hidden]
        more = f"\n\n{views.quiet_text(quiet)}" if quiet else ""
        ack(response_type="ephemeral", text=views.rules_text(shown) + note + more)

    def _quiet(self, command: dict[str, Any], ack: DeferredAck, _respond: Respond, client: WebClient) -> None:
        """`quiet` lists; `quiet #channel 19:00-08:00 [weekends]` sets, in the admin's Slack time
        zone (users.info `tz`); `quiet #channel off` removes."""
        usage = (
            "Usage: `/freshbooks quiet #channel 19:00-08:00 [weekends]` or `/freshbooks quiet #channel off`."
        )
        words = (command.get("text") or "").split()[1:]
        team_id, user_id = command["team_id"], command["user_id"]
        if not words:  # members see nothing of private channels they are not in
            listed = self._services.rules.quiet_hours(team_id=team_id)
            hidden = (
                self._services.visibility.hidden(
                    client,
                    team_id=team_id,
                    user_id=user_id,
                    channel_ids={h.channel_id for h in listed},
                    sees_all=self._services.permissions.may_manage(client, team_id, user_id),
                )
                if listed
                else frozenset()
            )
            ack(
                response_type="ephemeral",
                text=views.quiet_text([h for h in listed if h.channel_id not in hidden]),
            )
            return
        if not self._services.permissions.may_manage(client, team_id, user_id):
            ack(response_type="ephemeral", text=refusal("change quiet hours"))
            return
        found = CHANNEL_REF.fullmatch(words[0])
        if found is None or len(words) < 2:
            ack(response_type="ephemeral", text=f"Which channel, and when? {usage}")
            return
        channel = found.group(1)
        if [w.lower() for w in words[1:]] == ["off"]:
            removed = self._services.rules.clear_quiet(team_id=team_id, channel_id=channel)
            text = (
                f"Quiet hours in <#{channel}> are off; anything they were holding goes out now."
                if removed
                else f"<#{channel}> had no quiet hours."
            )
            ack(response_type="ephemeral", text=text)
            return
        extra = [w.lower() for w in words[2:]]
        if extra not in ([], ["weekends"]):
            ack(
                response_type="ephemeral",
                text=f"`{escape(' '.join(words[2:])[:40])}` is not an option. {usage}",
            )
            return
        try:
            start, end = parse_range(words[1])
            request = QuietRequest(channel, start, end, weekends=bool(extra))
        except QuietHoursError as exc:
            ack(response_type="ephemeral", text=f"{exc} {usage}")
            return
        hours = self._services.rules.set_quiet(client, team_id=team_id, user_id=user_id, request=request)
        ack(response_type="ephemeral", text=views.quiet_set_text(hours))

    def _unroute(
        self, command: dict[str, Any], ack: DeferredAck, _respond: Respond, _client: WebClient
    ) -> None:
        words = (command.get("text") or "").split()
        wanted = words[1].lstrip("#") if len(words) == 2 else ""
        rule_id = parse_id(wanted)
        if rule_id is None:
            usage = "Usage: `/freshbooks unroute RULE-ID` (the number `/freshbooks rules` shows, e.g. `#3`)."
            problem = f"{id_problem(wanted, 'a rule number')}\n" if wanted else ""
            ack(response_type="ephemeral", text=problem + usage)
            return
        removed = self._services.rules.remove(team_id=command["team_id"], rule_id=rule_id)
        text = f"Rule #{rule_id} removed." if removed else f"There is no rule #{rule_id} in this workspace."
        ack(response_type="ephemeral", text=text)

    def _audit(
        self, command: dict[str, Any], ack: DeferredAck, _respond: Respond, _client: WebClient
    ) -> None:
        # The word cap bounds the search's cost; a database slow for other reasons still answers
        # by response_url instead of missing Slack's 3 s.
        ack.meanwhile = "Searching the audit trail…"
        ack(response_type="ephemeral", text=self._services.audit.audit_answer(command))

    # The digest commands live in slack_ui.digest_commands; looked up when called, so the table
    # can be built without services (the manifest test reads it).
    def _digest(self, command: dict[str, Any], ack: DeferredAck, respond: Respond, client: WebClient) -> None:
        self._services.digests.digest(command, ack, respond, client)

    def _digests(
        self, command: dict[str, Any], ack: DeferredAck, respond: Respond, client: WebClient
    ) -> None:
        self._services.digests.digests(command, ack, respond, client)

    def _undigest(
        self, command: dict[str, Any], ack: DeferredAck, respond: Respond, client: WebClient
    ) -> None:
        self._services.digests.undigest(command, ack, respond, client)

    def _replay(
        self, command: dict[str, Any], ack: DeferredAck, _respond: Respond, client: WebClient
    ) -> None:
        self._services.audit.run_replay(command, ack, client)

    def _test(self, command: dict[str, Any], ack: DeferredAck, respond: Respond, client: WebClient) -> None:
        """Post a sample message (made-up data) so people can see what notifications look like."""
        words = (command.get("text") or "").split()
        channel = command.get("channel_id", "")
        if len(words) > 1:
            found = CHANNEL_REF.fullmatch(words[1])
            if not found:
                ack(
                    response_type="ephemeral",
                    text="Usage: `/freshbooks test` or `/freshbooks test #channel`.",
                )
                return
            channel = found.group(1)
        wait = self._services.samples.take(team_id=command["team_id"], user_id=command["user_id"])
        if wait is not None:
            ack(
                response_type="ephemeral",
                text=f"You posted a sample message a moment ago; you can post another in {wait_words(wait)}. "
                f"(One sample per person every {wait_words(self._services.samples.interval)}, so that "
                "nobody floods a channel.)",
            )
            return

        ack.meanwhile = f"Posting a sample message to <#{channel}>…"
        ack(response_type="ephemeral", text=self._post_sample(command, client, channel))

    def _post_sample(self, command: dict[str, Any], client: WebClient, channel: str) -> str:
        team_id, user_id = command["team_id"], command["user_id"]
        manager = self._services.permissions.may_manage(client, team_id, user_id)
        if self._services.visibility.hidden(
            client, team_id=team_id, user_id=user_id, channel_ids=[channel], sees_all=manager
        ):
            return "No sample posted: that is a private channel you are not in."
        # Joining a channel stays an admin's act: a member's sample goes only where the app is.
        check = ensure_postable(client, channel, join=manager)
        if not check.ok:
            return f"No sample posted: {check.reason}"
        message = views.sample_message()
        try:
            client.chat_postMessage(
                channel=channel,
                text=message.text,
                blocks=message.blocks,
                unfurl_links=False,
                unfurl_media=False,
            )
        except SlackApiError as exc:
            return f"Slack refused the sample (`{exc.response.get('error')}`)."
        return f"Posted a sample message (made-up data) to <#{channel}>."


CHANNEL_REF = re.compile(r"<#([CG][A-Z0-9]+)(?:\|[^>]*)?>")


def register(app: App, services: CommandServices) -> None:
    app.command("/freshbooks")(FreshbooksCommand(services))
    services.audit.register(app)
    # The connect button only opens a URL; Slack still sends the click, which must be acknowledged.
    app.action("freshbooks_connect_link")(lambda ack: ack())
    app.action(OPEN_IN_FRESHBOOKS_ACTION_ID)(lambda ack: ack())
