"""Who may change the setup: admins and owners, plus the people they allow in the App Home.

Storage on both databases; the rest as signed Slack requests over real HTTP against the fake Slack.
"""

from __future__ import annotations

import json

from connector.features.permissions import ALLOWLIST_REFUSAL, refusal
from storage import allowlist, connections
from storage.db import Database
from tests.support.desk import eventually
from tests.support.fakes.slack import Channel
from tests.support.live import ADMIN, MEMBER, FakeClock, Live
from tests.support.slack_interactivity import home_action, texts

OWNER, HELPER = "UOWNER", "UHELPER"


def test_storage_allows_and_removes_per_workspace(db: Database, clock: FakeClock) -> None:
    with db.session() as session:
        one = connections.ensure_workspace(session, team_id="T0001", now=clock()).id
        two = connections.ensure_workspace(session, team_id="T0002", now=clock()).id
        assert (
            allowlist.allow(
                session, workspace_id=one, user_ids=["U1", "U2", "U1"], added_by=ADMIN, now=clock()
            )
            == 2
        )
    clock.advance(seconds=1)
    with db.session() as session:
        assert (
            allowlist.allow(session, workspace_id=one, user_ids=["U2", "U3"], added_by=ADMIN, now=clock())
            == 1
        )
        assert allowlist.allow(session, workspace_id=two, user_ids=["U9"], added_by=ADMIN, now=clock()) == 1
    with db.read() as session:
        assert allowlist.allowed_users(session, workspace_id=one) == ["U1", "U2", "U3"]
        assert allowlist.allowed_users(session, workspace_id=one, offset=1, limit=1) == ["U2"]
        assert allowlist.count_allowed(session, workspace_id=one) == 3
        assert allowlist.is_allowed(session, workspace_id=one, user_id="U3")
        assert not allowlist.is_allowed(session, workspace_id=two, user_id="U3")  # another workspace's list
    with db.session() as session:
        assert allowlist.disallow(session, workspace_id=one, user_id="U2")
        assert not allowlist.disallow(session, workspace_id=one, user_id="U2")
        assert not allowlist.disallow(session, workspace_id=two, user_id="U1")
    with db.read() as session:
        assert allowlist.allowed_users(session, workspace_id=one) == ["U1", "U3"]


def answer(live: Live, text: str, user: str, team: str = "T0001") -> str:
    response = live.slash(text, user_id=user, team_id=team)
    assert response.status_code == 200
    return str(response.json()["text"])


def home_of(live: Live, user: str) -> str:
    return json.dumps(live.slack.home_views.get(user, {}))


def test_allowed_people_may_change_rules_until_removed(live: Live) -> None:
    live.slack.add_channel(Channel("C0123", name="alerts"))
    live.slack.add_user(OWNER, owner=True)
    live.connect()
    route = "route invoice <#C0123|alerts>"
    refused = refusal("run `/freshbooks route`")
    assert refused == (
        "Only workspace admins, owners and people they allow in the FreshBooks app's Home tab can run "
        "`/freshbooks route`. Ask one of them."
    )
    assert answer(live, route, MEMBER) == refused
    assert answer(live, "unroute 1", MEMBER) == refusal("run `/freshbooks unroute`")
    assert answer(live, "connect", MEMBER) == refusal("run `/freshbooks connect`")
    # Reading and trying things out stay open to everyone.
    assert "FreshBooks for Slack" in answer(live, "help", MEMBER)
    assert "Acme Bookkeeping" in answer(live, "status", MEMBER)
    assert "Posted a sample message" in answer(live, "test <#C0123|alerts>", MEMBER)

    # An owner allows the member from the App Home.
    home_action(
        live, "home_allow_users", user=OWNER, type="multi_users_select", selected_users=[MEMBER, "bad id"]
    )
    eventually(lambda: f"<@{MEMBER}>" in home_of(live, OWNER), "owner's home lists the member")
    assert answer(live, route, MEMBER).startswith("Rule saved")
    # The member now sees the rule controls, but not the allowlist controls.
    home_action(live, "home_page_rules_next", "r0.a0.d0.u0", user=MEMBER)
    eventually(lambda: "home_rule_edit" in home_of(live, MEMBER), "member's home has rule buttons")
    assert "home_allow_users" not in home_of(live, MEMBER)
    assert "home_disallow_user" not in home_of(live, MEMBER)

    # Only admins and owners change the allowlist: an allowed member cannot add or remove anyone.
    home_action(live, "home_allow_users", user=MEMBER, type="multi_users_select", selected_users=[HELPER])
    eventually(lambda: bool(live.slack.opened_modals), "refused in a modal")
    assert ALLOWLIST_REFUSAL in texts(live.slack.modals[live.slack.opened_modals[-1]])
    home_action(live, "home_disallow_user", MEMBER, user=MEMBER)
    eventually(lambda: len(live.slack.opened_modals) == 2, "refused again")
    with live.services.db.read() as session:
        workspace = connections.workspace_of_team(session, "T0001")
        assert workspace is not None
        assert allowlist.allowed_users(session, workspace_id=workspace) == [MEMBER]

    # Allowed in T0001 is nobody in T0002.
    assert answer(live, route, MEMBER, team="T0002") == refused

    # An admin removes the member: refused again.
    home_action(live, "home_disallow_user", MEMBER, user=ADMIN)
    eventually(lambda: "Nobody else yet" in home_of(live, ADMIN), "admin's home republished")
    assert answer(live, route, MEMBER) == refused


def test_a_users_info_failure_counts_as_not_an_admin(live: Live) -> None:
    live.slack.add_channel(Channel("C0123"))
    live.connect()
    live.slack.script("users.info", "ratelimited")
    assert answer(live, "route invoice <#C0123|x>", ADMIN) == refusal("run `/freshbooks route`")
    assert answer(live, "route invoice <#C0123|x>", ADMIN).startswith("Rule saved")
