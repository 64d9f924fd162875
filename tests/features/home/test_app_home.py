"""The App Home: published when opened, with connection health, rules, parked deliveries; its buttons,
its pages (always within Slack's 100 blocks) and its goldens (tests/fixtures/slack_ui/home__*.json)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from slack_sdk.models.views import View
from sqlalchemy import update

from connector.domain.quiet import QuietHours
from connector.domain.rules import RouteSpec, Rule
from connector.features.home import PAGE, DeliveryLine, HomeData, Page, Pages, page_of
from connector.features.status import ConnectionReport
from slack_ui.home import HOME_QUIET, MAX_BLOCKS, Viewer, build_home
from storage import rules
from storage.models import Delivery, DeliveryState
from tests.support.desk import ACCOUNTING, PRIVATE, Desk, eventually, slack_event
from tests.support.fakes.slack import Channel
from tests.support.goldens import assert_golden
from tests.support.live import ADMIN, MEMBER, Live
from tests.support.slack_interactivity import home_action, texts

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
ADMIN_VIEW = Viewer(can_manage=True, admin=True)


def home_text(live: Live, user: str = ADMIN) -> str:
    return json.dumps(live.slack.home_views.get(user, {}))


def open_home(live: Live, user: str = ADMIN) -> dict[str, Any]:
    live.slack.home_views.pop(user, None)
    slack_event(live, {"type": "app_home_opened", "user": user, "channel": f"D{user}", "tab": "home"})
    eventually(lambda: user in live.slack.home_views, "home published")
    return live.slack.home_views[user]


def test_home_is_published_when_opened_and_buttons_work(desk: Desk) -> None:
    live = desk.live
    live.slack.add_channel(Channel(PRIVATE, name="board", is_private=True, is_member=False))
    assert live.slash(f"route invoice <#{ACCOUNTING}|accounting>").json()["text"].startswith("Rule saved")
    (parked,) = desk.queue(PRIVATE)
    desk.drain()
    assert desk.states([parked]) == [DeliveryState.PARKED]

    open_home(live)
    text = home_text(live)
    assert "Acme Bookkeeping" in text
    assert "invoice" in text and ACCOUNTING in text
    assert "Needs attention" in text and "not_in_channel" in text
    assert '"action_id": "home_replay"' in text
    assert '"action_id": "home_rule_edit"' in text and '"action_id": "home_rule_new"' in text

    assert home_action(live, "home_rule_pause", "1").status_code == 200
    eventually(lambda: "(paused)" in home_text(live), "rule paused and home republished")
    home_action(live, "home_rule_resume", "1")
    eventually(lambda: "(paused)" not in home_text(live), "rule resumed")

    live.slack.channels[PRIVATE].is_member = True  # the admin invited the app, then pressed Replay
    home_action(live, "home_replay", str(parked))
    eventually(lambda: desk.states([parked]) == [DeliveryState.PENDING], "replayed")
    desk.drain()
    assert desk.states([parked]) == [DeliveryState.DELIVERED]
    history = live.services.audit.history(team_id="T0001", delivery_id=parked)
    assert history is not None
    assert [(h.kind, h.outcome, h.actor) for h in history.lines if h.kind == "replay"] == [
        ("replay", "requeued", ADMIN)
    ]  # who pressed Replay is in the audit trail

    home_action(live, "home_rule_delete", "1", user=MEMBER)
    eventually(
        lambda: bool(live.slack.opened_modals), "member told, in a modal (the Home cannot show ephemerals)"
    )
    told = texts(live.slack.modals[live.slack.opened_modals[-1]])
    assert "Only workspace admins, owners and people they allow in the FreshBooks app's Home tab" in told
    assert "home_rule_delete" in home_text(live)  # still there
    home_action(live, "home_rule_delete", "1")
    eventually(lambda: "home_rule_delete" not in home_text(live), "rule deleted")


def test_a_member_sees_the_home_without_controls(desk: Desk) -> None:
    live = desk.live
    live.slash(f"route invoice <#{ACCOUNTING}|accounting>")
    text = json.dumps(open_home(live, MEMBER))
    assert ACCOUNTING in text  # the rules are readable
    for control in ("home_rule_new", "home_rule_edit", "home_rule_delete", "home_allow_users"):
        assert control not in text
    assert "can change rules" in text


def test_a_member_sees_nothing_of_a_private_channel_they_are_not_in(desk: Desk) -> None:
    live = desk.live
    live.slack.add_channel(Channel(PRIVATE, name="board", is_private=True, members={ADMIN}))
    live.slack.add_channel(Channel("G0LEFT", name="left", is_private=True, is_member=False))
    live.slack.add_channel(Channel(ACCOUNTING, name="accounting", members={MEMBER}))
    assert live.slash(f"route invoice <#{ACCOUNTING}|accounting>").json()["text"].startswith("Rule saved")
    saved = live.slash(f"route invoice <#{PRIVATE}|board> min 250,000").json()["text"]
    assert saved.startswith("Rule saved")
    delivered = desk.queue(PRIVATE, 2) + desk.queue(ACCOUNTING)
    parked = desk.queue("G0LEFT")  # the app is not in it: parked, and an alert names the channel
    desk.drain()
    assert desk.states(delivered + parked) == ["delivered"] * 3 + ["parked"]

    member = json.dumps(open_home(live, MEMBER))
    assert ACCOUNTING in member and "Acme Bookkeeping" in member
    assert [s for s in (PRIVATE, "250,000", "G0LEFT") if s in member] == []
    assert "Nothing parked or failed" in member
    admin = json.dumps(open_home(live, ADMIN))
    assert all(s in admin for s in (PRIVATE, "250,000", "G0LEFT", "Needs attention"))


# -- pages -----------------------------------------------------------------------------------------


def pager_value(view: dict[str, Any], action_id: str) -> str | None:
    for block in view["blocks"]:
        for element in block.get("elements", []):
            if element.get("action_id") == action_id:
                return str(element["value"])
    return None


def walk(live: Live, name: str, shown: Any) -> list[list[str]]:
    """Press Next on list `name` until it is gone; what `shown(view)` found on each page."""
    view = open_home(live)
    seen = [shown(view)]
    while (value := pager_value(view, f"home_page_{name}_next")) is not None:
        assert len(view["blocks"]) <= MAX_BLOCKS
        before = live.slack.home_views[ADMIN]
        home_action(live, f"home_page_{name}_next", value, pages=view["private_metadata"])
        eventually(lambda b=before: live.slack.home_views[ADMIN] is not b, "next page published")
        view = live.slack.home_views[ADMIN]
        seen.append(shown(view))
    assert len(view["blocks"]) <= MAX_BLOCKS
    return seen


def rule_ids(view: dict[str, Any]) -> list[str]:
    return [
        str(e["value"])
        for b in view["blocks"]
        for e in b.get("elements", [])
        if e.get("action_id") == "home_rule_edit"
    ]


def replay_ids(view: dict[str, Any]) -> list[str]:
    return [
        str(b["accessory"]["value"])
        for b in view["blocks"]
        if b.get("accessory", {}).get("action_id") == "home_replay"
    ]


def test_every_list_pages_through_everything_within_the_block_limit(desk: Desk) -> None:
    live = desk.live
    with live.services.db.session() as session:
        for n in range(25):
            rules.create_rule(
                session,
                live.services.cipher,
                workspace_id=desk.workspace_id,
                connection_id=desk.connection_id,
                created_by=ADMIN,
                now=live.clock(),
                spec=RouteSpec(("invoice",), f"C{n:05d}", None, None, None, None, False, None),
            )
    parked = desk.queue(PRIVATE, 23)
    delivered = desk.queue(ACCOUNTING, 8)
    with live.services.db.session() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(parked))
            .values(state=DeliveryState.PARKED, parked_reason="not_in_channel")
        )
        session.execute(
            update(Delivery).where(Delivery.id.in_(delivered)).values(state=DeliveryState.DELIVERED)
        )

    rule_pages = walk(live, "rules", rule_ids)
    assert [len(p) for p in rule_pages] == [10, 10, 5]
    assert sorted(int(i) for p in rule_pages for i in p) == list(range(1, 26))

    attention_pages = walk(live, "attention", replay_ids)
    assert [len(p) for p in attention_pages] == [10, 10, 3]
    assert sorted(int(i) for p in attention_pages for i in p) == sorted(parked)

    recent_pages = walk(
        live,
        "recent",
        lambda v: [
            b
            for b in v["blocks"]
            if "→" in json.dumps(b) and b.get("accessory") is None and "Recent" not in json.dumps(b)
        ],
    )
    assert len(recent_pages) == 4  # 31 deliveries, 10 a page

    # Another list's button keeps the page this one is on; a page past the end shows the last page.
    view = live.slack.home_views[ADMIN]
    assert "31-31 of 31 deliveries" in json.dumps(view)
    home_action(
        live, "home_page_rules_next", Pages(rules=99, recent=3).encode(), pages=view["private_metadata"]
    )
    eventually(lambda: "21-25 of 25 rules" in home_text(live), "clamped to the last rule page")
    assert "31-31 of 31 deliveries" in home_text(live)
    # A change (pause) republishes the page the admin was on.
    shown = live.slack.home_views[ADMIN]
    home_action(live, "home_rule_pause", "22", pages=shown["private_metadata"])
    eventually(lambda: "(paused)" in home_text(live), "paused, same page")
    assert "21-25 of 25 rules" in home_text(live)


# -- the pure builder ------------------------------------------------------------------------------


def rule(n: int, **kwargs: Any) -> Rule:
    return Rule(id=n, patterns=("invoice",), channel_id=f"C{n:04d}", **kwargs)


def line(n: int, state: str = "delivered") -> DeliveryLine:
    return DeliveryLine(
        delivery_id=n,
        event_name="invoice.create",
        channel_id="C1",
        state=state,
        at=NOW - dt.timedelta(minutes=n),
        reason=None if state == "delivered" else "is_archived",
    )


REPORT = ConnectionReport(
    connection_id=1,
    business_name="Acme Bookkeeping",
    status="active",
    status_reason=None,
    callbacks_verified=13,
    callbacks_expected=13,
    token_expires_at=NOW + dt.timedelta(hours=5),
    last_event_at=NOW - dt.timedelta(minutes=3),
)


def full(pages: Pages) -> HomeData:
    """Everything at its largest: many rules, deliveries, people, alerts and quiet channels."""
    return HomeData(
        connections=[REPORT],
        rules=page_of([rule(n, paused=n % 3 == 0) for n in range(1, 80)], pages.rules),
        recent=page_of([line(n) for n in range(500)], pages.recent),
        attention=page_of([line(n, "parked") for n in range(300)], pages.attention),
        allowed=page_of([f"U{n:05d}" for n in range(40)], pages.allowed),
        alerts=[f"is_archived:C{n}" for n in range(9)] + ["token_revoked"],
        quiet=tuple(
            QuietHours(f"C9{n:04d}", 19 * 60, 8 * 60, n % 2 == 0, "America/New_York") for n in range(40)
        ),
    )


@pytest.mark.parametrize("viewer", [ADMIN_VIEW, Viewer(can_manage=True, admin=False), Viewer(False, False)])
@pytest.mark.parametrize(
    "pages", [Pages(), Pages(rules=3, attention=29, recent=49, allowed=3), Pages(2, 2, 2, 2)]
)
def test_home_stays_within_slacks_block_limit(viewer: Viewer, pages: Pages) -> None:
    view = build_home(full(pages), NOW, viewer)
    assert view["type"] == "home"
    assert len(view["blocks"]) <= 70  # far below 100: the page size leaves room
    turn_offs = [b for b in view["blocks"] if b.get("accessory", {}).get("action_id") == "home_quiet_off"]
    assert len(turn_offs) == (HOME_QUIET if viewer.can_manage else 0)  # of 40 channels with quiet hours
    View(**view).validate_json()  # slack_sdk's own limits
    assert Pages.decode(view["private_metadata"]) == pages


def test_page_state_is_read_defensively() -> None:
    assert Pages.decode(Pages(1, 2, 3, 4).encode()) == Pages(1, 2, 3, 4)
    for junk in (None, "", "r1", "r-1.a0.d0.u0", "r9999999.a0.d0.u0", "x" * 3000):
        assert Pages.decode(junk) == Pages()
    assert page_of(list(range(25)), 7).number == 2
    assert page_of([], 3) == Page([], 0, 0)
    assert (page_of(list(range(20)), 1).has_next, page_of(list(range(21)), 1).has_next) == (False, True)


GOLDEN_HOMES = {
    "home__admin_second_page": (full(Pages(rules=1, attention=1)), ADMIN_VIEW),
    "home__allowed_user": (full(Pages()), Viewer(can_manage=True, admin=False)),
    "home__member_empty": (
        HomeData([], Page([], 0, 0), Page([], 0, 0), Page([], 0, 0), Page([], 0, 0), []),
        Viewer(False, False),
    ),
}


@pytest.mark.parametrize("name", sorted(GOLDEN_HOMES))
def test_home_golden(name: str) -> None:
    data, viewer = GOLDEN_HOMES[name]
    view = build_home(data, NOW, viewer)
    View(**view).validate_json()
    assert_golden(name, view)


def test_an_empty_home_says_what_to_do() -> None:
    empty = HomeData([], Page([], 0, 0), Page([], 0, 0), Page([], 0, 0), Page([], 0, 0), [])
    text = json.dumps(build_home(empty, NOW, ADMIN_VIEW))
    assert "/freshbooks connect" in text
    assert "No rules yet" in text and "*New rule*" in text
    assert "Nothing parked or failed" in text
    assert "Nobody else yet" in text
    assert "home_quiet_set" in text and "None: messages are posted as they come." in text
    assert PAGE == 10
