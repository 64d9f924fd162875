"""`fbslack preview`: one message exactly as delivery would post it, from sample data, with no
database, network or account; the real CLI, in process and as a subprocess."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import urllib.parse
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from connector.domain.clock import system_clock
from connector.domain.events import ALL_EVENT_NAMES, DERIVED_EVENTS, KIND_OF_EVENT
from connector.freshbooks.models import EASTERN, Bill, Expense, Invoice, Payment
from connector.ops import preview
from connector.ops.cli import main
from connector.pipeline.render.formatting import RenderContext
from connector.pipeline.render.messages import render
from tests.support.live import FakeClock

FBSLACK = [sys.executable, "-m", "connector.ops.cli"]
CTX = RenderContext(account_id=preview.ACCOUNT_ID, delivery_key=preview.DELIVERY_KEY)


def run(
    args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FBSLACK, *args],
        env={**os.environ, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def either_day(make: Callable[[dt.datetime], str], produce: Callable[[], str]) -> None:
    """`produce()` (a CLI run, which reads the system clock) equals `make(now)` for the time just
    before or just after it: a run across midnight in New York may use either day."""
    before = system_clock()
    got = produce()
    after = system_clock()
    assert got in {make(before), make(after)}, got


# -- what is previewed ------------------------------------------------------------------------------


@pytest.mark.date_sensitive
@pytest.mark.parametrize("event", ALL_EVENT_NAMES)
def test_each_event_is_rendered_by_the_real_renderer(event: str, clock: FakeClock) -> None:
    sample = preview.request(event, amount="7,500", client="Northwind & <Co>", currency="eur")
    obj = preview.sample_object(sample, clock())
    result = preview.preview(sample, clock())
    assert result.message == render(event, obj, CTX)
    assert result.payload() == {
        "text": result.message.text,
        "blocks": result.message.blocks,
        "metadata": {"event_type": "fbslack_delivery", "event_payload": {"delivery_key": "preview"}},
        "unfurl_links": False,
        "unfurl_media": False,
    }
    # The sample carries what was asked for, escaped as every customer text is.
    assert "Northwind &amp; &lt;Co&gt;" in result.message.text
    assert "7,500.00 EUR" in result.message.text
    assert "fbslack simulate" not in json.dumps(result.payload())


@pytest.mark.date_sensitive
def test_derived_events_come_from_the_state_the_pipeline_derives_them_from(clock: FakeClock) -> None:
    now = clock()
    today = now.astimezone(EASTERN).date()
    paid = preview.sample_object(preview.request("invoice.paid", amount="100"), now)
    partial = preview.sample_object(preview.request("invoice.partially_paid", amount="100.01"), now)
    overdue = preview.sample_object(preview.request("invoice.overdue"), now)
    bill = preview.sample_object(preview.request("bill.paid", amount="480"), now)
    assert isinstance(paid, Invoice) and isinstance(partial, Invoice) and isinstance(overdue, Invoice)
    assert isinstance(bill, Bill)
    assert paid.outstanding is not None and paid.outstanding.amount == 0
    assert partial.outstanding is not None and partial.paid is not None
    assert (partial.paid.amount, partial.outstanding.amount) == (Decimal("50.00"), Decimal("50.01"))
    assert overdue.due_date is not None and overdue.due_date < today
    assert overdue.outstanding is not None and overdue.outstanding.amount > 0
    assert (bill.status, [p.amount.amount for p in bill.payments]) == ("paid", [Decimal("480.00")])
    assert set(DERIVED_EVENTS) == {"invoice.paid", "invoice.partially_paid", "invoice.overdue", "bill.paid"}


@pytest.mark.date_sensitive
def test_the_object_is_of_the_events_kind_with_the_defaults(clock: FakeClock) -> None:
    types = {"invoice": Invoice, "payment": Payment, "bill": Bill, "expense": Expense}
    for event in ALL_EVENT_NAMES:
        obj = preview.sample_object(preview.request(event), clock())
        assert isinstance(obj, types[KIND_OF_EVENT[event]]), event
        assert obj.is_deleted == event.endswith(".delete"), event


def test_the_builder_link_decodes_to_the_blocks(clock: FakeClock) -> None:
    blocks = preview.preview(preview.request("invoice.create", client="A&B #1 ?x=y"), clock()).message.blocks
    url = preview.builder_url(blocks)
    base, _, fragment = url.partition("#")
    assert base == "https://app.slack.com/block-kit-builder"
    assert set(fragment) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789%-._~")
    assert json.loads(urllib.parse.unquote(fragment)) == {"blocks": blocks}


# -- the CLI ----------------------------------------------------------------------------------------


OPTIONS = {"amount": "12,345.6", "client": "Ana", "currency": "CAD"}


def _json_on(event: str) -> Callable[[dt.datetime], str]:
    def make(now: dt.datetime) -> str:
        return preview.format_json(preview.preview(preview.request(event, **OPTIONS), now)) + "\n"

    return make


@pytest.mark.parametrize("event", ALL_EVENT_NAMES)
def test_cli_json_is_the_payload_delivery_would_post(event: str, capsys: pytest.CaptureFixture[str]) -> None:
    def produce() -> str:
        assert (
            main(["preview", event, "--json", "--amount", "12,345.6", "--client", "Ana", "--currency", "CAD"])
            == 0
        )
        return capsys.readouterr().out

    either_day(_json_on(event), produce)
    payload = json.loads(produce())
    assert set(payload) == {"text", "blocks", "metadata", "unfurl_links", "unfurl_media"}
    assert "12,345.60 CAD" in payload["text"]


def _sections(out: str) -> dict[str, str]:
    head, rest = out.split("\n\n", 1)
    parts = rest.split("\n\n")
    return {"head": head, **{p.split(":\n", 1)[0]: p.split(":\n", 1)[1] for p in parts}}


def test_the_real_cli_prints_fallback_json_and_builder_link() -> None:
    done: list[subprocess.CompletedProcess[str]] = []

    def produce() -> str:
        done.append(run(["preview", "invoice.paid", "--amount", "5000", "--client", "Northwind"]))
        return done[-1].stdout

    def make(now: dt.datetime) -> str:
        sample = preview.request("invoice.paid", amount="5000", client="Northwind")
        return preview.format_text(preview.preview(sample, now)) + "\n"

    either_day(make, produce)
    assert done[-1].returncode == 0 and done[-1].stderr == ""
    shown = _sections(done[-1].stdout)
    assert shown["head"] == "invoice.paid, as it would be posted (sample data, nothing was sent)"
    text = shown["Fallback text (notifications, screen readers)"]
    assert text.startswith("Invoice SIM-100043 paid. Client: Northwind; Total: 5,000.00 USD;")
    blocks = json.loads(shown["Block Kit JSON"])["blocks"]
    assert blocks[0]["text"]["text"] == ":white_check_mark: *Invoice SIM-100043 paid*"
    link = shown["Open it in Slack's Block Kit Builder"].strip()
    assert link.startswith(preview.BUILDER_URL)
    assert json.loads(urllib.parse.unquote(link.partition("#")[2])) == {"blocks": blocks}


def test_help_explains_every_option() -> None:
    done = run(["preview", "--help"])
    assert done.returncode == 0
    for option in ("--amount", "--client", "--currency", "--json", "invoice.partially_paid", "bill.paid"):
        assert option in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["invoice.nope"],
            "fbslack preview: unknown event 'invoice.nope'; events: " + ", ".join(ALL_EVENT_NAMES),
        ),
        (
            ["callback.verify"],
            "fbslack preview: unknown event 'callback.verify'; events: " + ", ".join(ALL_EVENT_NAMES),
        ),
        (
            ["invoice.create", "--amount", "abc"],
            "fbslack preview: 'abc' is not an amount (e.g. 5000 or 5,000.00)",
        ),
        (
            ["invoice.create", "--amount", "-5"],
            "fbslack preview: '-5' must be more than 0 and less than 1,000,000,000",
        ),
        (["invoice.create", "--amount", "1.234"], "fbslack preview: '1.234' has more than 2 decimals"),
        (
            ["invoice.create", "--currency", "US"],
            "fbslack preview: 'US' is not a three-letter currency code (e.g. USD)",
        ),
        (["invoice.create", "--client", "  "], "fbslack preview: a name needs 1 to 200 characters"),
        (
            ["invoice.partially_paid", "--amount", "0.01"],
            "fbslack preview: an invoice of 0.01 USD cannot be partly paid",
        ),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["preview", *args]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", message + "\n")


def test_bad_input_from_the_real_cli() -> None:
    done = run(["preview", "invoice.nope", "--json"])
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "invoice.partially_paid" in done.stderr
    assert "Traceback" not in done.stderr


# -- no database, no network, no account --------------------------------------------------------------

# Loaded by the child interpreter before anything else (PYTHONPATH): any socket or database
# connection it tries fails loudly.
SANDBOX = """
import socket, sqlite3

class _NoNetwork(socket.socket):
    def __init__(self, *args, **kwargs):
        raise RuntimeError("preview opened a socket")

def _no_database(*args, **kwargs):
    raise RuntimeError("preview opened a database")

socket.socket = _NoNetwork
socket.create_connection = _no_database
sqlite3.connect = _no_database
try:
    import psycopg
    psycopg.connect = _no_database
    psycopg.Connection.connect = classmethod(_no_database)
except ImportError:
    pass
"""


@pytest.fixture
def sandbox(tmp_path: Path) -> dict[str, str]:
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(SANDBOX)
    env = {
        "PYTHONPATH": os.pathsep.join([str(guard), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "DATABASE_URL": "sqlite:////nonexistent-dir/unwritable/fbslack.db",
        "DATA_DIR": "/nonexistent-dir/unwritable",
        "APP_ENV": "production",  # would refuse to start without ENCRYPTION_KEYS, were settings read
        "http_proxy": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
    }
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "FRESHBOOKS_CLIENT_ID", "ENCRYPTION_KEYS"):
        env[name] = ""
    return env


def test_the_sandbox_does_stop_sockets_and_databases(sandbox: dict[str, str], tmp_path: Path) -> None:
    for code in ("import socket; socket.socket()", "import sqlite3; sqlite3.connect(':memory:')"):
        done = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, **sandbox},
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode != 0 and "preview opened" in done.stderr, done.stderr


@pytest.mark.parametrize("args", [["invoice.paid"], ["bill.paid", "--json", "--currency", "JPY"]])
def test_preview_needs_no_database_network_or_account(
    sandbox: dict[str, str], tmp_path: Path, args: list[str]
) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    done = run(["preview", *args], sandbox, cwd=work)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert list(work.iterdir()) == []  # no ./data, no database file
    assert not Path("/nonexistent-dir").exists()


def test_a_reader_that_stops_early_gets_no_traceback() -> None:
    """`fbslack preview invoice.create | head -1`: the reader may be gone before the output is
    written. Here it is gone before the command starts, so every write meets a closed pipe."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [*FBSLACK, "preview", "invoice.create"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode == 1
