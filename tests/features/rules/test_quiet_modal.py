"""The App Home's quiet-hours modal (issue 15 §3): *Set quiet hours* opens it, a submission is checked
as `/freshbooks quiet` checks it and saved in the admin's Slack time zone, field errors stay in the
form, members are refused. Signed requests over real HTTP against the fake Slack, both databases.
What the saved quiet hours then hold back: tests/pipeline/deliver/test_quiet_hours.py.

The modal's golden is tests/fixtures/slack_ui/modal__quiet_hours.json (`UPDATE_GOLDENS=1` regenerates it).
"""

from __future__ import annotations

from typing import Any

import pytest
from slack_sdk.models.views import View

from connector.domain.quiet import QuietHours, QuietRequest
from connector.features.rules import quiet_modal
from connector.features.rules.modal import CHANNEL_FILTER, FormErrors
from connector.features.rules.quiet_modal import QuietForm, validate
from storage import quiet
from tests.support.desk import ACCOUNTING, SALES, Desk, eventually, slack_event
from tests.support.goldens import assert_golden
from tests.support.live import ADMIN, MEMBER, Live
from tests.support.slack_interactivity import home_action, state_of, submit, texts

# -- the pure form ----------------------------------------------------------------------------------


def test_modal_golden() -> None:
    view = quiet_modal.quiet_modal()
    View(**view).validate_json()  # slack_sdk's own limits
    channel = next(b for b in view["blocks"] if b.get("block_id") == "channel")["element"]
    assert channel["filter"] == CHANNEL_FILTER  # the rule modal's channels: public and private, no DMs
    assert_golden("modal__quiet_hours", view)


def form(**fields: Any) -> QuietForm:
    return QuietForm(
        **{"channel_id": "C0EXEC", "start": "19:00", "end": "08:00", "weekends": False, **fields}
    )


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"channel_id": None}, {"channel": "Pick the channel to keep quiet."}),
        ({"channel_id": "D0DIRECT"}, {"channel": "Pick a channel (public or private), not a person."}),
        ({"start": None}, {"start": "Pick when the quiet hours start."}),
        ({"end": "25:00"}, {"end": "Hours go from 00 to 23 and minutes from 00 to 59, like 19:00-08:00."}),
        ({"start": "7pm"}, {"start": "7pm is not a time. Write it like 19:00 (24-hour clock)."}),
        (
            {"start": "08:00"},
            {"end": "The quiet hours start and end at the same time. Give a range like 19:00-08:00."},
        ),
        (
            {"channel_id": None, "start": None, "end": None},
            {
                "channel": "Pick the channel to keep quiet.",
                "start": "Pick when the quiet hours start.",
                "end": "Pick when the quiet hours end.",
            },
        ),
    ],
)
def test_invalid_forms_name_every_wrong_field(fields: dict[str, Any], errors: dict[str, str]) -> None:
    assert validate(form(**fields)) == FormErrors(errors)


def test_the_submitted_state_reads_as_a_request() -> None:
    view = quiet_modal.quiet_modal()
    values = state_of(view, channel="C0EXEC", start="22:30", weekends=True)

    request = validate(quiet_modal.form_from_state(values))

    assert request == QuietRequest("C0EXEC", 22 * 60 + 30, 8 * 60, weekends=True)
    untouched = quiet_modal.form_from_state(state_of(view))
    assert untouched == QuietForm(None, "19:00", "08:00", weekends=False)
    assert quiet_modal.form_from_state({"start": "junk", "end": {"time": []}}) == QuietForm(
        None, None, None, weekends=False
    )


# -- live: the Home's button, the modal, the save ----------------------------------------------------


def open_quiet_modal(live: Live, user: str = ADMIN) -> str:
    before = len(live.slack.opened_modals)
    assert home_action(live, "home_quiet_set", "set", user=user).status_code == 200
    eventually(lambda: len(live.slack.opened_modals) > before, "modal opened")
    return live.slack.opened_modals[-1]


def saved(desk: Desk) -> list[QuietHours]:
    with desk.live.services.db.read() as session:
        return quiet.quiet_of_workspace(session, workspace_id=desk.workspace_id)


def open_home(live: Live, user: str) -> str:
    live.slack.home_views.pop(user, None)
    slack_event(live, {"type": "app_home_opened", "user": user, "channel": f"D{user}", "tab": "home"})
    eventually(lambda: user in live.slack.home_views, "home published")
    return texts(live.slack.home_views[user])


def test_the_home_offers_set_quiet_hours_to_those_who_may_change_them(desk: Desk) -> None:
    admin = open_home(desk.live, ADMIN)
    assert '"action_id": "home_quiet_set"' in admin
    assert "None: messages are posted as they come." in admin
    assert "home_quiet_set" not in open_home(desk.live, MEMBER)


def test_a_valid_submission_saves_them_in_the_admins_zone_and_republishes_the_home(desk: Desk) -> None:
    live = desk.live
    live.slack.users[ADMIN]["tz"] = "Europe/Berlin"  # users.info, as Slack answers it
    view_id = open_quiet_modal(live)
    modal = live.slack.modals[view_id]
    assert modal["callback_id"] == "quiet_modal"
    live.slack.home_views.pop(ADMIN, None)

    response = submit(live, view_id, state_of(modal, channel=ACCOUNTING, start="18:30", weekends=True))

    assert response.status_code == 200
    answer = response.json()
    assert answer["response_action"] == "update"
    said = texts(answer)
    assert f"Quiet hours for <#{ACCOUNTING}>: 18:30-08:00 and all weekend (Europe/Berlin)" in said
    assert saved(desk) == [QuietHours(ACCOUNTING, 18 * 60 + 30, 8 * 60, True, "Europe/Berlin")]
    eventually(lambda: ADMIN in live.slack.home_views, "home republished")
    assert f"<#{ACCOUNTING}> 18:30-08:00 and all weekend (Europe/Berlin)" in texts(
        live.slack.home_views[ADMIN]
    )

    # Setting them again replaces them, as the command does; an admin without a zone gets UTC.
    live.slack.users[ADMIN].pop("tz", None)
    again = submit(live, open_quiet_modal(live), state_of(modal, channel=ACCOUNTING, end="07:00"))
    assert "19:00-07:00 (UTC)" in texts(again.json())
    assert saved(desk) == [QuietHours(ACCOUNTING, 19 * 60, 7 * 60, False, "UTC")]


def test_invalid_submissions_come_back_as_field_errors(desk: Desk) -> None:
    live = desk.live
    view_id = open_quiet_modal(live)
    modal = live.slack.modals[view_id]
    invalid: list[tuple[dict[str, str | None], dict[str, str]]] = [
        ({"channel": None}, {"channel": "Pick the channel to keep quiet."}),
        ({"channel": SALES, "end": None}, {"end": "Pick when the quiet hours end."}),
        (
            {"channel": SALES, "start": "08:00"},
            {"end": "The quiet hours start and end at the same time. Give a range like 19:00-08:00."},
        ),
    ]
    for changes, errors in invalid:
        response = submit(live, view_id, state_of(modal, **changes))
        assert response.status_code == 200
        assert response.json() == {"response_action": "errors", "errors": errors}, changes
    assert saved(desk) == []


def test_a_member_is_refused_at_the_button_and_at_the_submission(desk: Desk) -> None:
    live = desk.live
    view_id = open_quiet_modal(live, user=MEMBER)
    told = texts(live.slack.modals[view_id])
    assert "Not allowed" in told and "change quiet hours" in told
    assert "quiet_modal" not in told  # the form itself was not opened

    form_view = open_quiet_modal(live)  # an admin's form, submitted by a member (forged, or rights lost)
    answer = submit(live, form_view, state_of(live.slack.modals[form_view], channel=SALES), user=MEMBER)

    assert answer.json()["response_action"] == "update"
    assert "change quiet hours" in texts(answer.json())
    assert saved(desk) == []
