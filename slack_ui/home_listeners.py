"""App Home, the rule modal and the quiet-hours modal: publish the Home, handle its buttons, open,
preview and save rules, set quiet hours.

Every handler is scoped to the workspace of the signed request (Bolt's context.team_id), never to an
id carried in a view or button: a request from one workspace cannot read or change another's rules.
Whatever changes something checks `may_manage` first; the allowlist itself needs an admin.
After every change the Home of the person who made it is published again.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from connector.features.home import Pages
from connector.features.permissions import ALLOWLIST_REFUSAL, is_admin, refusal
from connector.features.rules import modal as modals
from connector.features.rules import quiet_modal
from connector.features.rules.service import RuleError, ensure_postable
from connector.features.rules.syntax import parse_id
from slack_ui import digest_home, views
from slack_ui.commands import CommandServices
from slack_ui.home import (
    PAGE_ACTION_PREFIX,
    QUIET_OFF_ACTION_ID,
    QUIET_SET_ACTION_ID,
    Viewer,
    build_home,
)

log = logging.getLogger(__name__)

_USER_ID = re.compile(r"[UW][A-Z0-9]{2,31}")


def _pages_of(body: dict[str, Any]) -> Pages:
    """The pages the Home showed when its button was pressed (kept across changes)."""
    view = body.get("view") or {}
    return Pages.decode(view.get("private_metadata")) if view.get("type") == "home" else Pages()


CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{2,31}")


def _value(body: dict[str, Any]) -> str:
    return str(body["actions"][0].get("value", ""))


class HomeListeners:
    def __init__(self, services: CommandServices) -> None:
        self._s = services

    # -- the Home ---------------------------------------------------------------------------------

    def publish(self, client: WebClient, team_id: str, user_id: str, pages: Pages | None = None) -> None:
        access = self._s.permissions.access(client, team_id, user_id)
        digests = self._s.digests.service.list(team_id=team_id)
        # A member sees nothing of a private channel they are not in.
        hidden = self._s.visibility.hidden(
            client,
            team_id=team_id,
            user_id=user_id,
            channel_ids=()
            if access.can_manage
            else self._s.home.channels_shown(team_id) | {d.schedule.channel_id for d in digests},
            sees_all=access.can_manage,
        )
        data = self._s.home.gather(team_id, pages, hidden)
        section = digest_home.home_section(
            [d for d in digests if d.schedule.channel_id not in hidden], can_manage=access.can_manage
        )
        view = build_home(
            data, self._s.clock(), Viewer(can_manage=access.can_manage, admin=access.admin), digests=section
        )
        try:
            client.views_publish(user_id=user_id, view=view)
        except SlackApiError as exc:
            log.warning("views.publish failed: %s", exc.response.get("error"))

    def opened(self, event: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        if event.get("tab", "home") == "home":
            shown = event.get("view") or {}
            self.publish(
                client, str(context.team_id), str(event["user"]), Pages.decode(shown.get("private_metadata"))
            )

    def turn_page(self, ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        ack()
        self.publish(client, str(context.team_id), body["user"]["id"], Pages.decode(_value(body)))

    def _tell(self, client: WebClient, body: dict[str, Any], title: str, text: str) -> None:
        """A small modal: the Home tab cannot show an ephemeral message."""
        try:
            client.views_open(trigger_id=body["trigger_id"], view=modals.message_modal(title, text))
        except SlackApiError as exc:
            log.warning("views.open failed: %s", exc.response.get("error"))

    def managed(self, what: str, do: Callable[[str, str, int], object]) -> Callable[..., None]:
        """A Home button that changes something (pause, resume, delete, replay): `do(team, user, id)`."""

        def handle(ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
            ack()
            team_id, user_id = str(context.team_id), body["user"]["id"]
            if not self._s.permissions.may_manage(client, team_id, user_id):
                self._tell(client, body, "Not allowed", refusal(what))
                return
            thing_id = parse_id(_value(body))
            if thing_id is not None:
                do(team_id, user_id, thing_id)
            self.publish(client, team_id, user_id, _pages_of(body))

        return handle

    def quiet_off(self, ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        """A channel's *Turn off* in the Home's quiet hours: what they held goes out now."""
        ack()
        team_id, user_id = str(context.team_id), body["user"]["id"]
        if not self._s.permissions.may_manage(client, team_id, user_id):
            self._tell(client, body, "Not allowed", refusal("change quiet hours"))
            return
        channel = _value(body)
        if CHANNEL_ID.fullmatch(channel):
            self._s.rules.clear_quiet(team_id=team_id, channel_id=channel)
        self.publish(client, team_id, user_id, _pages_of(body))

    def quiet_set(self, ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        """*Set quiet hours* in the Home: the form; saved by quiet_submit."""
        ack()
        if not self._s.permissions.may_manage(client, str(context.team_id), body["user"]["id"]):
            self._tell(client, body, "Not allowed", refusal("change quiet hours"))
            return
        self._open(client, body, quiet_modal.quiet_modal())

    def quiet_submit(self, ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        """The quiet-hours form submitted: checked and saved as `/freshbooks quiet` saves them
        (QuietRequest, then RuleService.set_quiet with the admin's time zone); field errors stay
        in the form."""
        team_id, user_id, view = str(context.team_id), body["user"]["id"], body["view"]
        if not self._s.permissions.may_manage(client, team_id, user_id):
            refused = modals.message_modal("Not saved", refusal("change quiet hours"))
            ack(response_action="update", view=refused)
            return
        checked = quiet_modal.validate(quiet_modal.form_from_state(view["state"]["values"]))
        if isinstance(checked, modals.FormErrors):
            ack(response_action="errors", errors=checked.errors)
            return
        hours = self._s.rules.set_quiet(client, team_id=team_id, user_id=user_id, request=checked)
        ack(
            response_action="update",
            view=modals.message_modal("Quiet hours set", views.quiet_set_text(hours)),
        )
        self.publish(client, team_id, user_id)

    # -- the allowlist (admins and owners only) ----------------------------------------------------

    def _admin_change(self, body: dict[str, Any], context: BoltContext, client: WebClient) -> str | None:
        user_id = str(body["user"]["id"])
        if is_admin(client, user_id):
            return user_id
        self._tell(client, body, "Not allowed", ALLOWLIST_REFUSAL)
        return None

    def allow_users(self, ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        ack()
        admin = self._admin_change(body, context, client)
        if admin is None:
            return
        chosen = [
            str(u) for u in body["actions"][0].get("selected_users") or [] if _USER_ID.fullmatch(str(u))
        ]
        if chosen:
            added = self._s.home.allow(team_id=str(context.team_id), user_ids=chosen, by=admin)
            log.info("allowlist: %d people added", added)
        self.publish(client, str(context.team_id), admin, _pages_of(body))

    def disallow_user(self, ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        ack()
        admin = self._admin_change(body, context, client)
        if admin is None:
            return
        if _USER_ID.fullmatch(_value(body)):
            self._s.home.disallow(team_id=str(context.team_id), user_id=_value(body))
        self.publish(client, str(context.team_id), admin, _pages_of(body))

    # -- the rule modal ----------------------------------------------------------------------------

    def new_rule(self, ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        ack()
        team_id = str(context.team_id)
        if not self._s.permissions.may_manage(client, team_id, body["user"]["id"]):
            self._tell(client, body, "Not allowed", refusal("add rules"))
            return
        problem = self._s.rules.not_ready(team_id=team_id)
        if problem is not None:
            self._tell(client, body, "Not yet", problem)
            return
        self._open(client, body, modals.rule_modal(modals.RuleForm()))

    def edit_rule(self, ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        ack()
        team_id = str(context.team_id)
        if not self._s.permissions.may_manage(client, team_id, body["user"]["id"]):
            self._tell(client, body, "Not allowed", refusal("change rules"))
            return
        rule_id = parse_id(_value(body))
        rule = self._s.rules.get(team_id=team_id, rule_id=rule_id) if rule_id is not None else None
        if rule is None:
            self._tell(client, body, "Rule not found", "That rule is gone (deleted meanwhile?).")
            return
        self._open(client, body, modals.rule_modal(modals.form_from_rule(rule)))

    def _open(self, client: WebClient, body: dict[str, Any], view: dict[str, Any]) -> None:
        try:
            client.views_open(trigger_id=body["trigger_id"], view=view)
        except SlackApiError as exc:
            log.warning("views.open failed: %s", exc.response.get("error"))

    def preview(self, ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        """The Preview button inside the modal: evaluate the unsaved rule, show the result in place."""
        ack()
        team_id, view = str(context.team_id), body["view"]
        if not self._s.permissions.may_manage(client, team_id, body["user"]["id"]):
            new_view = modals.message_modal("Not allowed", refusal("preview rules"))
        else:
            form = modals.form_from_state(view["state"]["values"], metadata=view.get("private_metadata"))
            checked = modals.validate(form)
            if isinstance(checked, modals.FormErrors):
                new_view = modals.rule_modal(form, problems=list(checked.errors.values()))
            else:
                result = self._s.preview.preview(
                    team_id=team_id, rule=modals.draft_rule(checked, form.rule_id)
                )
                new_view = modals.rule_modal(form, now=self._s.clock(), preview=result)
        try:
            client.views_update(view_id=view["id"], hash=view.get("hash"), view=new_view)
        except SlackApiError as exc:
            # hash_conflict: the modal changed meanwhile (another click); that update wins.
            log.warning("views.update failed: %s", exc.response.get("error"))

    def submit(self, ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        team_id, user_id, view = str(context.team_id), body["user"]["id"], body["view"]
        if not self._s.permissions.may_manage(client, team_id, user_id):
            ack(response_action="update", view=modals.message_modal("Rule not saved", refusal("save rules")))
            return
        form = modals.form_from_state(view["state"]["values"], metadata=view.get("private_metadata"))
        checked = modals.validate(form)
        if isinstance(checked, modals.FormErrors):
            ack(response_action="errors", errors=checked.errors)
            return
        channel = ensure_postable(client, checked.channel_id)
        if not channel.ok:
            # Field errors are plain text: drop the mrkdwn code marks.
            ack(response_action="errors", errors={modals.CHANNEL_BLOCK: channel.reason.replace("`", "")})
            return
        try:
            if form.rule_id is None:
                rule = self._s.rules.add(team_id=team_id, user_id=user_id, spec=checked)
            else:
                rule = self._s.rules.update(team_id=team_id, rule_id=form.rule_id, spec=checked)
        except RuleError as exc:
            ack(response_action="update", view=modals.message_modal("Rule not saved", str(exc)))
            return
        joined = " I joined the channel to post there." if channel.joined else ""
        saved = modals.message_modal("Rule saved", f"Rule saved: {views.rule_line(rule)}.{joined}")
        ack(response_action="update", view=saved)
        self.publish(client, team_id, user_id)


def register(app: App, services: CommandServices) -> None:
    home, rules, replay = services.home, services.rules, services.audit.replay
    ui = HomeListeners(services)
    app.event("app_home_opened")(ui.opened)
    app.action(re.compile(f"^{PAGE_ACTION_PREFIX}"))(ui.turn_page)
    app.action("home_rule_pause")(
        ui.managed(
            "change rules", lambda team, _user, rid: home.set_paused(team_id=team, rule_id=rid, paused=True)
        )
    )
    app.action("home_rule_resume")(
        ui.managed(
            "change rules", lambda team, _user, rid: home.set_paused(team_id=team, rule_id=rid, paused=False)
        )
    )
    app.action("home_rule_delete")(
        ui.managed("delete rules", lambda team, _user, rid: rules.remove(team_id=team, rule_id=rid))
    )
    # The same replay as /freshbooks replay, audited with who pressed it. The button is only shown
    # for parked and failed deliveries, so it never re-posts something Slack already has.
    app.action("home_replay")(
        ui.managed(
            "replay deliveries",
            lambda team, user, did: replay.replay_one(
                team_id=team, delivery_id=did, to_channel=None, confirmed=False, actor=user
            ),
        )
    )
    app.action(QUIET_OFF_ACTION_ID)(ui.quiet_off)
    app.action(QUIET_SET_ACTION_ID)(ui.quiet_set)
    app.view(quiet_modal.CALLBACK_ID)(ui.quiet_submit)
    app.action("home_rule_new")(ui.new_rule)
    app.action("home_rule_edit")(ui.edit_rule)
    app.action("home_allow_users")(ui.allow_users)
    app.action("home_disallow_user")(ui.disallow_user)
    app.action(modals.PREVIEW_ACTION_ID)(ui.preview)
    app.view(modals.CALLBACK_ID)(ui.submit)
    digest_home.register(app, services, ui.publish, ui.managed)
