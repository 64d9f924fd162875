"""The app's REAL messages and App Home as the demo page shows them: the real renderers on typed
objects, then Block Kit -> HTML, compared with tests/fixtures/demo_html/<name>.html.

After a deliberate change to the messages or to the HTML, regenerate with
`UPDATE_GOLDENS=1 pytest tests/ops/demo/test_blockkit_goldens.py` and review the diff.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from connector.domain.events import ALL_EVENT_NAMES, ObjectKind
from connector.domain.rules import Rule
from connector.features.home import DeliveryLine, HomeData, Page, page_of
from connector.features.status import ConnectionReport
from connector.freshbooks.models import FreshBooksObject, Invoice, parse_object
from connector.ops.demo.blockkit_html import render_message, render_view
from connector.pipeline.render.cards import render_card
from connector.pipeline.render.formatting import Message, RenderContext
from connector.pipeline.render.messages import render
from slack_ui.home import Viewer, build_home
from slack_ui.views import sample_message
from tests.support.paths import FIXTURES

EVENT_FIXTURES = sorted((FIXTURES / "freshbooks").glob("*.json"))
VIEW_FIXTURES = sorted((FIXTURES / "slack_ui").glob("*.json"))
GOLDEN_DIR = FIXTURES / "demo_html"
UPDATE_GOLDENS = os.environ.get("UPDATE_GOLDENS") == "1"
TS = "1764892800.000100"  # 2025-12-05 00:00 UTC
NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
NAMES = {"C0001": "accounting", "C0002": "exec-alerts", "C1": "accounting", "U00001": "ana"}
HREF = re.compile(r'href="([^"]*)"')


def assert_html_golden(name: str, actual: str) -> None:
    path = GOLDEN_DIR / f"{name}.html"
    if UPDATE_GOLDENS:
        GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(actual + "\n", encoding="utf-8")
        return
    expected = path.read_text(encoding="utf-8").removesuffix("\n")
    if actual != expected:
        diff = difflib.unified_diff(
            expected.splitlines(), actual.splitlines(), "expected", "actual", lineterm=""
        )
        pytest.fail(f"{path.name} differs (UPDATE_GOLDENS=1 regenerates):\n" + "\n".join(diff), pytrace=False)


def _event(path: Path) -> str:
    return path.stem.split("__", 1)[0]


def _load(path: Path) -> tuple[FreshBooksObject | None, RenderContext]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    raw = doc["object"]
    obj = None if raw is None else parse_object(ObjectKind(_event(path).split(".", 1)[0]), raw)
    return obj, RenderContext(**doc["context"])


def _posted(message: Message, ts: str = TS, **extra: Any) -> dict[str, Any]:
    """What chat.postMessage stores: the payload the delivery engine sends, with its ts."""
    return {"ts": ts, "text": message.text, "blocks": message.blocks, **extra}


def assert_shown_honestly(html: str) -> None:
    assert "bk-unknown" not in html, "a block or element this app renders is not known to the HTML"
    assert "<script" not in html.lower()
    for href in HREF.findall(html):
        assert href.startswith(("https://", "mailto:")), href


def test_every_event_has_a_golden() -> None:
    assert {_event(path) for path in EVENT_FIXTURES} == set(ALL_EVENT_NAMES)


@pytest.mark.parametrize("path", EVENT_FIXTURES, ids=lambda path: path.stem)
def test_event_message(path: Path) -> None:
    obj, ctx = _load(path)
    message = render(_event(path), obj, ctx)
    html = render_message(_posted(message))
    assert_shown_honestly(html)
    assert 'class="bk-block bk-fallback"' not in html  # the blocks are shown, not the fallback
    assert_html_golden(path.stem, html)


def _fixture(stem: str) -> FreshBooksObject:
    obj, _ = _load(FIXTURES / "freshbooks" / f"{stem}.json")
    assert obj is not None
    return obj


def test_an_invoice_thread_card_with_its_events_as_replies() -> None:
    ctx = RenderContext(account_id="ACM123", delivery_key="dlv_thread")
    invoice = _fixture("invoice.paid__paid")
    assert isinstance(invoice, Invoice)
    replies = [
        _posted(
            render("invoice.sendByEmail", _fixture("invoice.sendByEmail__sent"), ctx), "1764892860.000200"
        ),
        _posted(
            render("payment.create", _fixture("payment.create__with_includes"), ctx), "1764892920.000300"
        ),
        # Delivery sends invoice.paid to the thread and the channel (engine.BROADCAST).
        _posted(render("invoice.paid", invoice, ctx), "1764892921.000400", reply_broadcast=True),
    ]
    card = _posted(render_card(invoice, ctx), edited=True, replies=replies)
    html = render_message(card)
    assert_shown_honestly(html)
    assert '<div class="bk-thread-count">3 replies</div>' in html
    assert html.count('class="bk-message bk-reply"') == 3
    assert html.count('<div class="bk-broadcast-note">Also sent to the channel</div>') == 1
    assert_html_golden("thread__invoice_paid", html)


def test_a_simulated_message_says_so() -> None:
    ctx = RenderContext(account_id="ACM123", delivery_key="dlv_sim", simulated=True)
    html = render_message(_posted(render("expense.create", _fixture("expense.create__billable"), ctx)))
    assert '<span class="bk-context-text">Simulated with fbslack simulate</span>' in html
    assert_html_golden("simulated__expense.create", html)


def test_the_sample_message_of_freshbooks_test() -> None:
    html = render_message(_posted(sample_message()))
    assert_shown_honestly(html)
    assert "<i>Sample message with made-up data.</i>" in html
    assert_html_golden("sample_message", html)


def test_the_fallback_text_of_a_real_message_reads_well_alone() -> None:
    obj, ctx = _load(FIXTURES / "freshbooks" / "invoice.create__non_ascii_client.json")
    message = render("invoice.create", obj, ctx)
    html = render_message({"ts": TS, "text": message.text})
    assert_shown_honestly(html)
    assert_html_golden("fallback__invoice.create", html)


# -- the App Home, from the real builder ---------------------------------------------------------------


def _home_data() -> HomeData:
    report = ConnectionReport(
        connection_id=1,
        business_name="Acme & <Sons>",
        status="active",
        status_reason=None,
        callbacks_verified=12,
        callbacks_expected=13,
        token_expires_at=NOW + dt.timedelta(hours=5),
        last_event_at=NOW - dt.timedelta(minutes=3),
    )
    rules = [
        Rule(id=1, patterns=("invoice",), channel_id="C0001"),
        Rule(
            id=2,
            patterns=("invoice.create", "invoice.paid"),
            channel_id="C0002",
            min_amount=5000,
            paused=True,
        ),
    ]
    parked = DeliveryLine(7, "bill.create", "C0001", "parked", NOW - dt.timedelta(hours=2), "is_archived")
    done = DeliveryLine(8, "invoice.paid", "C0002", "delivered", NOW - dt.timedelta(minutes=5), None)
    return HomeData(
        connections=[report],
        rules=page_of(rules, 0),
        recent=Page([done, parked], 0, 2),
        attention=Page([parked], 0, 1),
        allowed=Page(["U00001"], 0, 1),
        alerts=["is_archived:C0001"],
    )


@pytest.mark.parametrize(
    ("name", "viewer"),
    [
        ("home__admin", Viewer(can_manage=True, admin=True)),
        ("home__member", Viewer(can_manage=False, admin=False)),
    ],
)
def test_app_home(name: str, viewer: Viewer) -> None:
    html = render_view(build_home(_home_data(), NOW, viewer), names=NAMES)
    assert_shown_honestly(html)
    assert "Acme &amp; &lt;Sons&gt;" in html
    assert '<span class="bk-mention bk-channel">#accounting</span>' in html
    assert_html_golden(name, html)


@pytest.mark.parametrize("path", VIEW_FIXTURES, ids=lambda path: path.stem)
def test_every_view_the_app_builds_is_shown_without_placeholders(path: Path) -> None:
    """The App Home and rule modal goldens of tests/fixtures/slack_ui (kept true by their own tests)."""
    view = json.loads(path.read_text(encoding="utf-8"))
    assert_shown_honestly(render_view(view, names=NAMES))
