"""The rule modal: opened by /freshbooks route and the App Home, previewed against the recorded events,
saved with field errors for bad input; signed requests over real HTTP against the fake Slack, both DBs.

Goldens of the modal live in tests/fixtures/slack_ui/; `UPDATE_GOLDENS=1` regenerates them.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from slack_sdk.models.views import View
from sqlalchemy import select

from connector.domain.events import ALL_EVENT_NAMES
from connector.domain.money import Money
from connector.domain.rules import RouteSpec, Rule
from connector.features.rules import modal as modals
from connector.features.rules.modal import FormErrors, RuleForm, form_from_rule, rule_modal, validate
from connector.features.rules.preview import Example, Preview, PreviewService, RecordedEvent, evaluate
from connector.features.rules.syntax import MAX_AMOUNT_DIGITS
from connector.pipeline.route.matching import KINDS, facts_of
from storage import connections, events, outbox, rules
from storage.models import Delivery, DeliveryState, Event, RoutingRule
from tests.support.builders import invoice_json, money
from tests.support.desk import ACCOUNTING, SALES, Desk, eventually
from tests.support.fakes.slack import Channel
from tests.support.goldens import assert_golden
from tests.support.live import MEMBER, Live
from tests.support.slack_interactivity import home_action, modal_action, state_of, submit, texts

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
PRIVATE, ARCHIVED = "G0SECRET1", "C0ARCHIVE"


def assert_valid_modal(view: dict[str, Any]) -> None:
    View(**view).validate_json()  # slack_sdk's own limits (title, blocks, metadata, elements)
    assert 1 <= len(view["blocks"]) <= 100
    for block in view["blocks"]:
        element = block.get("element", {})
        if element.get("type") == "checkboxes":
            assert len(element["options"]) <= 10  # Slack's limit per checkboxes element


# -- the pure builder and validation --------------------------------------------------------------

PREVIEW = Preview(
    channel_id="C0EXEC",
    days=30,
    matched=14,
    capped=False,
    scanned=220,
    oldest_scanned=NOW - dt.timedelta(days=29),
    by_event=(("invoice.paid", 9), ("invoice.create", 5)),
    examples=(
        Example(
            NOW - dt.timedelta(days=1),
            "invoice.paid",
            "Northwind <Traders> & Co",
            Money(Decimal("7500.00"), "USD"),
        ),
        Example(NOW - dt.timedelta(days=400), "invoice.create", None, None),
    ),
    already_posted=3,
)
EDITED = Rule(
    id=7,
    patterns=("invoice.create", "invoice.paid"),
    channel_id="C0EXEC",
    min_amount=Decimal("5000"),
    max_amount=Decimal("250000.5"),
    currency="USD",
    counterparty="Northwind Traders",
    paused=True,
)
GOLDEN_MODALS: dict[str, dict[str, Any]] = {
    "modal__new_from_command": rule_modal(RuleForm(from_command=True)),
    "modal__new_from_home": rule_modal(RuleForm()),
    "modal__edit_with_preview": rule_modal(form_from_rule(EDITED), now=NOW, preview=PREVIEW),
    "modal__preview_problems": rule_modal(
        RuleForm(min_text="10", max_text="5"), problems=["Pick a channel."]
    ),
    "modal__saved": modals.message_modal("Rule saved", "Rule saved: `#7` `invoice` → <#C0EXEC>."),
}


@pytest.mark.parametrize("name", sorted(GOLDEN_MODALS))
def test_modal_golden(name: str) -> None:
    view = GOLDEN_MODALS[name]
    assert_valid_modal(view)
    assert_golden(name, view)


def test_every_routable_event_has_a_checkbox() -> None:
    boxes = {value for value in modals.EVENT_LABELS if "." in value}
    assert boxes == set(ALL_EVENT_NAMES)
    assert {value for value in modals.EVENT_LABELS if "." not in value} == set(KINDS)


def form(**fields: Any) -> RuleForm:
    return RuleForm(**{"patterns": ("invoice.create",), "channel_id": "C0EXEC", **fields})


EVENTS_ERROR = "Pick at least one event to post (in any of the four groups)."


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"patterns": ()}, {"events_invoice": EVENTS_ERROR}),
        ({"patterns": ("nonsense",)}, {"events_invoice": EVENTS_ERROR}),
        ({"channel_id": None}, {"channel": "Pick the channel to post in."}),
        ({"min_text": "5,00"}, {"min": "Commas go between groups of three digits, like 1,234,567.89."}),
        ({"min_text": "$5000"}, {"min": "Leave out the currency symbol; set the currency below instead."}),
        ({"max_text": "-3"}, {"max": "Amounts here are zero or more."}),
        (
            {"max_text": "5.123"},
            {"max": "Use at most two decimal places. Write an amount like 5000, 5,000 or 5000.50."},
        ),
        (
            {"min_text": "lots"},
            {"min": "That is not an amount. Write an amount like 5000, 5,000 or 5000.50."},
        ),
        (
            {"min_text": "10,000", "max_text": "5000"},
            {"max": "The maximum is below the minimum (10,000), so nothing could match."},
        ),
        (
            {"currency": "XYZ"},
            {"currency": "XYZ is not a currency code I know. Use an ISO code like USD, EUR or CAD."},
        ),
        (
            {"currency": "US"},
            {"currency": "US is not a currency code I know. Use an ISO code like USD, EUR or CAD."},
        ),
        (
            {"billable": True},
            {"billable": "This only filters expenses, and this rule picks no expense event."},
        ),
        (
            {"client": "Acme", "vendor": "Acme"},
            {"vendor": "Fill in a client or a vendor, not both: a rule filters on one name."},
        ),
        (
            {"vendor": "Office Co"},
            {"vendor": "A vendor name filters bill and expense events, and this rule picks none of them."},
        ),
        (
            {"patterns": ("bill",), "client": "Acme"},
            {"client": "A client name filters invoice and payment events, and this rule picks none of them."},
        ),
        ({"client": "x" * 101}, {"client": "Names are at most 100 characters."}),
        (
            {"patterns": (), "channel_id": None, "min_text": "9", "max_text": "1", "currency": "ABC"},
            {
                "events_invoice": EVENTS_ERROR,
                "channel": "Pick the channel to post in.",
                "max": "The maximum is below the minimum (9), so nothing could match.",
                "currency": "ABC is not a currency code I know. Use an ISO code like USD, EUR or CAD.",
            },
        ),
    ],
)
def test_invalid_forms_name_every_wrong_field(fields: dict[str, Any], errors: dict[str, str]) -> None:
    assert validate(form(**fields)) == FormErrors(errors)


def test_a_valid_form_is_a_route_spec() -> None:
    spec = validate(
        form(
            patterns=("invoice", "invoice.paid", "expense.create"),
            min_text="1,000",
            max_text="2000.5",
            currency="usd",
            billable=True,
            vendor="  Office   Supply Co ",
        )
    )
    assert spec == RouteSpec(
        patterns=("invoice", "expense.create"),
        channel_id="C0EXEC",
        channel_name=None,
        min_amount=Decimal("1000"),
        max_amount=Decimal("2000.5"),
        currency="USD",
        billable_only=True,
        counterparty="Office Supply Co",
    )
    everything = validate(form(patterns=("invoice", "payment", "bill", "expense")))
    assert isinstance(everything, RouteSpec) and everything.patterns == ("all",)


@pytest.mark.parametrize(
    "rule",
    [
        EDITED,
        Rule(id=1, patterns=("all",), channel_id="C1"),
        Rule(
            id=2,
            patterns=("bill", "expense.create"),
            channel_id="C1",
            billable_only=True,
            counterparty="Staples",
        ),
        Rule(id=3, patterns=("payment",), channel_id="C1", min_amount=Decimal("0.5"), counterparty="Acme"),
    ],
)
def test_a_saved_rule_round_trips_through_the_edit_form(rule: Rule) -> None:
    spec = validate(form_from_rule(rule))
    assert isinstance(spec, RouteSpec)
    assert modals.draft_rule(spec, rule.id) == Rule(**{**_fields(rule), "paused": False})


def _fields(rule: Rule) -> dict[str, Any]:
    return {name: getattr(rule, name) for name in Rule.__slots__}


def test_private_metadata_is_read_defensively() -> None:
    assert modals.read_metadata('{"rule_id": 4, "from_command": true}') == {
        "rule_id": 4,
        "from_command": True,
    }
    for junk in (None, "", "[1]", "{", '{"rule_id": "4"}', '{"rule_id": true}'):
        assert modals.read_metadata(junk)["rule_id"] is None


# -- the preview, pure ------------------------------------------------------------------------------


def recorded(
    event_id: int, name: str, amount: str | None, days_ago: float, who: str = "Acme"
) -> RecordedEvent:
    from connector.freshbooks.models import parse_invoice

    obj = (
        None
        if amount is None
        else parse_invoice(invoice_json("0", "2026-11-01 00:00:00", amount=money(amount), organization=who))
    )
    return RecordedEvent(event_id, NOW - dt.timedelta(days=days_ago), facts_of(name, obj))


def test_evaluate_counts_matches_newest_examples_and_what_was_posted() -> None:
    seen = [
        recorded(9, "invoice.paid", "9000.00", 1),
        recorded(8, "invoice.create", "100.00", 2),  # under the minimum
        recorded(7, "invoice.create", "6000.00", 3, "Globex"),
        recorded(6, "invoice.delete", None, 4),  # unknown amount: an amount filter cannot match it
        recorded(5, "invoice.create", "5000.00", 5),
        recorded(4, "invoice.create", "5000.00", 6),
    ]
    rule = Rule(id=1, patterns=("invoice",), channel_id="C1", min_amount=Decimal("5000"), paused=True)

    result = evaluate(rule, seen, delivered={9, 5, 8}, examples=2)

    assert (result.matched, result.scanned, result.already_posted, result.capped) == (4, 6, 2, False)
    assert result.by_event == (("invoice.create", 3), ("invoice.paid", 1))
    assert [(e.event_name, e.counterparty, e.amount) for e in result.examples] == [
        ("invoice.paid", "Acme", Money(Decimal("9000.00"), "USD")),
        ("invoice.create", "Globex", Money(Decimal("6000.00"), "USD")),
    ]
    assert result.oldest_scanned == NOW - dt.timedelta(days=6)
    text = modals.preview_text(result, NOW)
    assert text.startswith("Over the last 30 days this rule would have posted *4* messages to <#C1>.")
    assert "2 of them are in <#C1> already." in text
    assert "• Nov 23 · `invoice.paid` · Acme · 9,000.00 USD" in text


def test_preview_text_says_at_least_when_capped_and_explains_nothing() -> None:
    capped = evaluate(
        Rule(id=1, patterns=("all",), channel_id="C1"),
        [recorded(1, "invoice.create", "1.00", 2)],
        capped=True,
    )
    text = modals.preview_text(capped, NOW)
    assert "would have posted at least *1* message to <#C1>." in text
    assert "Only the newest 5,000 events (back to Nov 22) were checked." in text
    none = evaluate(Rule(id=1, patterns=("bill",), channel_id="C1", min_amount=Decimal(10)), [])
    assert "No such event was recorded in that time." in modals.preview_text(none, NOW)
    missed = evaluate(
        Rule(id=1, patterns=("invoice",), channel_id="C1", min_amount=Decimal(10)),
        [recorded(1, "invoice.create", "1.00", 2)],
    )
    assert "None of the 1 events recorded in that time matched." in modals.preview_text(missed, NOW)


# -- live: open, preview, save -----------------------------------------------------------------------


def seed(
    desk: Desk,
    name: str,
    object_id: int,
    amount: str,
    *,
    days_ago: float,
    who: str = "Acme",
    posted_to: str | None = None,
    notable: bool = True,
    connection_id: int | None = None,
) -> int:
    """A recorded event `days_ago` days back (optionally already posted to a channel)."""
    live = desk.live
    obj = invoice_json("0.00", "2026-11-01 00:00:00", id=object_id, amount=money(amount), organization=who)
    with live.services.db.session() as session:
        event_id, _ = events.record_event(
            session,
            live.services.cipher,
            connection_id=connection_id or desk.connection_id,
            inbox_id=None,
            object_kind="invoice",
            name=name,
            object_id=str(object_id),
            object_updated=str(days_ago),
            obj=obj,
            notable=notable,
            now=live.clock(),
        )
        event = session.get_one(Event, event_id)
        event.created_at = live.clock() - dt.timedelta(days=days_ago)
        event.routed_at = live.clock()
        if posted_to:
            outbox.add_delivery(
                session,
                event_id=event_id,
                workspace_id=desk.workspace_id,
                channel_id=posted_to,
                rule_ids=[],
                now=live.clock(),
            )
            session.flush()
            delivery = session.scalars(select(Delivery).where(Delivery.event_id == event_id)).one()
            delivery.state = DeliveryState.DELIVERED
    return event_id


def open_from_home(live: Live, user: str = "UADMIN") -> str:
    before = len(live.slack.opened_modals)
    assert home_action(live, "home_rule_new", "new", user=user).status_code == 200
    eventually(lambda: len(live.slack.opened_modals) > before, "modal opened")
    return live.slack.opened_modals[-1]


def rows(live: Live) -> list[RoutingRule]:
    with live.services.db.read() as session:
        return list(session.scalars(select(RoutingRule).order_by(RoutingRule.id)))


def test_route_without_arguments_opens_the_modal_at_the_current_channel(desk: Desk) -> None:
    live = desk.live
    response = live.slash("route")

    assert response.status_code == 200
    assert not response.content  # acknowledged without a message: the modal is the answer
    ((_, params, _),) = live.slack.calls_to("views.open")
    assert params["trigger_id"] == "13345224609.738474920.8088930838d88f008e0"
    modal = live.slack.modals[live.slack.opened_modals[-1]]
    assert modal["callback_id"] == "rule_modal"
    channel = next(b for b in modal["blocks"] if b.get("block_id") == "channel")["element"]
    assert channel["default_to_current_conversation"] is True
    assert channel["filter"] == {"include": ["public", "private"], "exclude_bot_users": True}


def test_route_without_arguments_needs_a_connection_and_a_working_slack(live: Live) -> None:
    assert live.slash("route").json()["text"] == "Connect FreshBooks first: `/freshbooks connect`."
    live.connect()
    live.slack.script("views.open", "expired_trigger_id")
    text = live.slash("route").json()["text"]
    assert "Slack would not open the rule form (`expired_trigger_id`)" in text
    assert live.slack.opened_modals == []


def test_a_valid_submission_saves_the_rule_and_republishes_the_home(desk: Desk) -> None:
    live = desk.live
    live.slack.add_channel(Channel("C0PUBLIC", name="exec", is_member=False))
    view_id = open_from_home(live)
    values = state_of(
        live.slack.modals[view_id],
        events_invoice=["invoice.create", "invoice.paid"],
        events_expense=["expense"],
        channel="C0PUBLIC",
        min="5,000",
        max="",
        currency="cad",
        billable=True,
    )

    response = submit(live, view_id, values)

    assert response.status_code == 200
    answer = response.json()
    assert answer["response_action"] == "update"
    assert "Rule saved: `#1` `invoice.create`, `invoice.paid`, `expense` → <#C0PUBLIC> min 5,000" in texts(
        answer
    )
    assert "I joined the channel" in texts(answer)
    assert live.slack.channels["C0PUBLIC"].is_member
    (row,) = rows(live)
    assert (
        row.patterns,
        row.channel_id,
        row.min_amount,
        row.max_amount,
        row.currency,
        row.billable_only,
    ) == (["invoice.create", "invoice.paid", "expense"], "C0PUBLIC", "5000", None, "CAD", True)
    assert row.created_by_user_id == "UADMIN"
    eventually(lambda: "C0PUBLIC" in texts(live.slack.home_views.get("UADMIN", {})), "home republished")


INVALID = [
    ({"events_invoice": []}, {"events_invoice": EVENTS_ERROR}),
    ({"min": "5,00"}, {"min": "Commas go between groups of three digits, like 1,234,567.89."}),
    (
        {"min": "900", "max": "100"},
        {"max": "The maximum is below the minimum (900), so nothing could match."},
    ),
    (
        {"currency": "ABC"},
        {"currency": "ABC is not a currency code I know. Use an ISO code like USD, EUR or CAD."},
    ),
    (
        {"channel": PRIVATE},
        {"channel": "That channel is private and I am not in it: invite me first with /invite @FreshBooks."},
    ),
    ({"channel": ARCHIVED}, {"channel": "That channel is archived."}),
    (
        {"channel": "C0NOWHERE"},
        {"channel": "I can't see that channel. If it is private, invite me first: /invite @FreshBooks."},
    ),
]


def test_invalid_submissions_come_back_as_field_errors(desk: Desk) -> None:
    live = desk.live
    live.slack.add_channel(Channel(PRIVATE, name="board", is_private=True, is_member=False))
    live.slack.add_channel(Channel(ARCHIVED, name="old", is_archived=True, is_member=False))
    view_id = open_from_home(live)
    for changes, errors in INVALID:
        values = state_of(
            live.slack.modals[view_id], **{"events_invoice": ["invoice"], "channel": ACCOUNTING, **changes}
        )
        response = submit(live, view_id, values)
        assert response.status_code == 200
        assert response.json() == {"response_action": "errors", "errors": errors}, changes
    assert rows(live) == []
    assert not live.slack.channels[ARCHIVED].is_member


def test_edit_changes_the_rule_of_this_workspace_only(desk: Desk) -> None:
    live = desk.live
    assert (
        live.slash(f"route invoice <#{ACCOUNTING}|accounting> min 100")
        .json()["text"]
        .startswith("Rule saved")
    )
    assert home_action(live, "home_rule_pause", "1").status_code == 200
    eventually(lambda: rows(live)[0].paused, "paused")
    other = live.connect(team_id="T0002", account_id="OTHER1")
    with live.services.db.session() as session:
        theirs = rules.create_rule(
            session,
            live.services.cipher,
            workspace_id=other.connection.workspace_id,
            connection_id=other.connection.id,
            created_by="UOTHER",
            now=live.clock(),
            spec=RouteSpec(("bill",), "C0THEIRS", None, None, None, None, False, None),
        )

    assert home_action(live, "home_rule_edit", "1").status_code == 200
    eventually(lambda: bool(live.slack.opened_modals), "edit modal opened")
    view_id = live.slack.opened_modals[-1]
    modal = live.slack.modals[view_id]
    assert modal["title"]["text"] == "Edit rule #1"
    assert json.loads(modal["private_metadata"])["rule_id"] == 1
    response = submit(live, view_id, state_of(modal, min="250", channel=SALES))
    assert response.json()["response_action"] == "update"
    (mine, their_row) = rows(live)
    assert (mine.id, mine.min_amount, mine.channel_id, mine.paused, mine.patterns) == (
        1,
        "250",
        SALES,
        True,
        ["invoice"],
    )

    # A view from workspace T0001 naming T0002's rule id changes nothing there.
    forged = json.dumps({"rule_id": theirs.id, "from_command": False})
    answer = submit(live, view_id, state_of(modal, min="1"), metadata=forged).json()
    assert answer["response_action"] == "update"
    assert f"There is no rule #{theirs.id} in this workspace" in texts(answer)
    with live.services.db.read() as session:
        again = rules.get_rule(
            session, live.services.cipher, workspace_id=other.connection.workspace_id, rule_id=theirs.id
        )
    assert again == theirs and their_row.min_amount is None
    # Nor can T0001's Home edit it: the rule reads as absent.
    home_action(live, "home_rule_edit", str(theirs.id))
    eventually(lambda: "Rule not found" in texts(live.slack.modals[live.slack.opened_modals[-1]]), "told")


def test_preview_counts_the_last_30_days_and_what_was_posted(desk: Desk) -> None:
    live = desk.live
    seed(desk, "invoice.create", 1, "7500.00", days_ago=1, who="Northwind", posted_to=ACCOUNTING)
    seed(desk, "invoice.create", 2, "5200.00", days_ago=3, posted_to=SALES)  # posted elsewhere
    seed(desk, "invoice.create", 3, "9000.00", days_ago=10, posted_to=ACCOUNTING)
    seed(desk, "invoice.create", 4, "12000.00", days_ago=29.5)
    seed(desk, "invoice.create", 5, "4999.99", days_ago=2)  # under the minimum
    seed(desk, "invoice.create", 6, "8000.00", days_ago=31)  # too old
    seed(desk, "invoice.update", 7, "8000.00", days_ago=2, notable=False)  # never routed, never counted
    seed(desk, "invoice.paid", 8, "8000.00", days_ago=2)  # another event
    stranger = live.connect(team_id="T0002", account_id="OTHER1")
    seed(desk, "invoice.create", 9, "8000.00", days_ago=2, connection_id=stranger.connection.id)  # not ours
    view_id = open_from_home(live)
    values = state_of(
        live.slack.modals[view_id], events_invoice=["invoice.create"], channel=ACCOUNTING, min="5,000"
    )

    assert modal_action(live, view_id, "rule_modal_preview", values).status_code == 200

    eventually(lambda: "Preview again" in texts(live.slack.modals[view_id]), "preview shown")
    modal = live.slack.modals[view_id]
    assert_valid_modal(modal)
    text = texts(modal)
    assert f"would have posted *4* messages to <#{ACCOUNTING}>." in text
    assert f"2 of them are in <#{ACCOUNTING}> already." in text
    assert "• Nov 23 · `invoice.create` · Northwind · 7,500.00 USD" in text
    assert "Preview again" in text
    # The form keeps what was typed, and nothing was saved.
    assert state_of(modal)["min"]["value"]["value"] == "5,000"
    assert rows(live) == []
    # A form that cannot be a rule says what to fix instead.
    bad = state_of(modal, min="10", max="5")
    modal_action(live, view_id, "rule_modal_preview", bad)
    eventually(lambda: "Fix the form first" in texts(live.slack.modals[view_id]), "problems shown")
    assert "The maximum is below the minimum (10)" in texts(live.slack.modals[view_id])


def test_preview_scan_is_capped_and_says_at_least(desk: Desk) -> None:
    live = desk.live
    for n in range(5):
        seed(desk, "invoice.create", 100 + n, "10.00", days_ago=5 - n)
    service = PreviewService(db=live.services.db, cipher=live.services.cipher, clock=live.clock, cap=3)
    rule = Rule(id=0, patterns=("invoice",), channel_id=ACCOUNTING)

    capped = service.preview(team_id="T0001", rule=rule)
    full = PreviewService(db=live.services.db, cipher=live.services.cipher, clock=live.clock).preview(
        team_id="T0001", rule=rule
    )

    assert (capped.matched, capped.capped, capped.scanned) == (3, True, 3)
    assert capped.oldest_scanned == live.clock() - dt.timedelta(days=3)  # the newest three
    assert (full.matched, full.capped) == (5, False)
    assert service.preview(team_id="T9999", rule=rule).matched == 0  # unknown workspace: nothing


def test_members_cannot_open_preview_or_save_rules(desk: Desk) -> None:
    live = desk.live
    home_action(live, "home_rule_new", "new", user=MEMBER)
    eventually(lambda: bool(live.slack.opened_modals), "refusal shown")
    refusal = texts(live.slack.modals[live.slack.opened_modals[-1]])
    assert (
        "Only workspace admins, owners and people they allow in the FreshBooks app's Home tab can add rules"
        in refusal
    )
    view_id = open_from_home(live)  # an admin's modal, submitted by someone else
    values = state_of(live.slack.modals[view_id], events_invoice=["invoice"], channel=ACCOUNTING)
    answer = submit(live, view_id, values, user=MEMBER).json()
    assert answer["response_action"] == "update" and "can save rules" in texts(answer)
    modal_action(live, view_id, "rule_modal_preview", values, user=MEMBER)
    eventually(lambda: "can preview rules" in texts(live.slack.modals[view_id]), "preview refused")
    assert rows(live) == []


def test_the_workspace_must_be_connected_before_the_home_opens_a_modal(live: Live) -> None:
    home_action(live, "home_rule_new", "new")
    eventually(lambda: bool(live.slack.opened_modals), "told")
    assert "Connect FreshBooks first" in texts(live.slack.modals[live.slack.opened_modals[-1]])
    with live.services.db.read() as session:
        assert connections.workspace_of_team(session, "T0001") is None


def _amount_inputs(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        block["block_id"]: block["element"]
        for block in view["blocks"]
        if block.get("block_id") in (modals.MIN_BLOCK, modals.MAX_BLOCK)
    }


@pytest.mark.parametrize("digits", range(1, 33))
def test_a_saved_amount_always_fits_its_input(digits: int) -> None:
    # Up to 32 characters are stored (routing_rules.min_amount); with commas 31 digits would be 41.
    whole = Decimal("9" * digits)
    cents = Decimal("9" * (digits - 3) + ".99") if digits > 3 else Decimal("0.99")
    rule = Rule(id=1, patterns=("invoice",), channel_id="C1", min_amount=cents, max_amount=whole)
    inputs = _amount_inputs(rule_modal(form_from_rule(rule)))
    for element in inputs.values():
        assert len(element["initial_value"]) <= element["max_length"] == modals.AMOUNT_INPUT_MAX
    spec = validate(form_from_rule(rule))
    if digits <= MAX_AMOUNT_DIGITS:
        assert isinstance(spec, RouteSpec)
        assert (spec.min_amount, spec.max_amount) == (cents, whole)  # and it reads back as it was saved
    else:  # saved before amounts were capped: shown whole, and the form asks for a smaller one
        assert isinstance(spec, FormErrors)
        assert "too large" in spec.errors["max"]


def test_amounts_show_separators_only_when_they_fit() -> None:
    assert modals.amount_text(Decimal("5000")) == "5,000"
    assert modals.amount_text(Decimal("1234567.89")) == "1,234,567.89"
    assert modals.amount_text(Decimal("1" * 30)) == "111," + "111," * 8 + "111"  # 39 characters
    assert modals.amount_text(Decimal("1" * 30), max_length=38) == "1" * 30
    assert modals.amount_text(Decimal("1" * 31)) == "1" * 31  # 41 with commas
    assert modals.amount_text(None) == ""


def test_the_edit_modal_opens_on_a_31_digit_minimum(desk: Desk) -> None:
    live = desk.live
    huge = "1" * 31
    # Saved before amounts were capped at 15 digits: a command cannot make one any more.
    assert "too large" in live.slash(f"route invoice <#{ACCOUNTING}|accounting> min {huge}").json()["text"]
    spec = RouteSpec(("invoice",), ACCOUNTING, None, Decimal(huge), None, None, False, None)
    with live.services.db.session() as session:
        rules.create_rule(
            session,
            live.services.cipher,
            workspace_id=desk.workspace_id,
            connection_id=desk.connection_id,
            spec=spec,
            created_by="UADMIN",
            now=live.clock(),
        )
    assert home_action(live, "home_rule_edit", "1").status_code == 200
    eventually(lambda: bool(live.slack.opened_modals), "edit modal opened")
    modal = live.slack.modals[live.slack.opened_modals[-1]]
    assert_valid_modal(modal)
    minimum = _amount_inputs(modal)[modals.MIN_BLOCK]
    assert minimum["initial_value"] == huge
    assert len(minimum["initial_value"]) <= minimum["max_length"]
    # Saved again unchanged, the form asks for an amount within the cap; the rule is as it was.
    answer = submit(live, live.slack.opened_modals[-1], state_of(modal)).json()
    assert answer["response_action"] == "errors" and "too large" in answer["errors"][modals.MIN_BLOCK]
    assert rows(live)[0].min_amount == huge
