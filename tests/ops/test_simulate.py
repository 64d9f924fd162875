"""`fbslack simulate`: signed samples through the live app, answered without FreshBooks, and every
way it can refuse, as an operator runs it (a real `fbslack` process)."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from werkzeug.serving import make_server

from connector.domain.events import ObjectKind
from connector.freshbooks.models import Invoice, Payment, parse_invoice, parse_object
from connector.ops import simulate
from connector.pipeline.ingest.form import parse_notification
from connector.pipeline.render.formatting import SIMULATED_NOTE, RenderContext
from connector.pipeline.render.messages import render
from connector.pipeline.route.matching import facts_of
from storage import connections, simulated
from storage.crypto import Cipher
from storage.db import Database
from storage.models import ConnectionStatus, Event, SimulatedObject
from tests.support.fakes.freshbooks import FakeFreshBooks
from tests.support.fakes.slack import Channel
from tests.support.live import Live, drain

FBSLACK = [sys.executable, "-m", "connector.ops.cli", "simulate"]
NOW = dt.datetime(2026, 11, 24, 15, 30, tzinfo=dt.UTC)
EXEC, ACCOUNTING = "C0EXECALR", "C0ACCOUNT"
VERIFIER = "sim-verifier-0123456789"


def ids(n: int = 1) -> simulate.SampleIds:
    base = simulated.SIMULATED_ID_MIN + n * 1000
    return simulate.SampleIds(object_id=str(base + 1), related_id=str(base + 2), party_id=str(base + 3))


def run_cli(
    args: list[str], *, database_url: str, key: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PUBLIC_URL", "DATABASE_URL", "ENCRYPTION_KEYS")}
    env.update(DATABASE_URL=database_url, ENCRYPTION_KEYS=key, DATA_DIR=str(tmp_path / "cli-data"))
    return subprocess.run([*FBSLACK, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def seed(db: Database, cipher: Cipher, *, account_id: str = "p7rQW5", team_id: str = "T0001",
         name: str = "Acme Bookkeeping", verified: bool | None = True) -> int:  # fmt: skip
    """A connection and, unless `verified` is None, its invoice.create callback."""
    with db.session() as session:
        workspace = connections.ensure_workspace(session, team_id=team_id, now=NOW)
        new = connections.create_connection(
            session, cipher, workspace_id=workspace.id, account_id=account_id, business_id=14393743,
            business_name=name, access_token="fb-access-token", refresh_token="fb-refresh-token",
            token_expires_at=NOW + dt.timedelta(hours=12), now=NOW,
        )  # fmt: skip
        if verified is not None:
            callback = connections.record_callback(
                session, connection_id=new.connection.id, callback_id=4242, event="invoice.create", now=NOW
            )
            if verified:
                connections.adopt_verifier(
                    session, callback_row_id=callback.id, verifier_enc=cipher.encrypt(VERIFIER), now=NOW
                )
        return new.connection.id


def samples_stored(db: Database) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(SimulatedObject)) or 0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- pure: samples, ids, input, choices ------------------------------------------------------------


@pytest.mark.parametrize("event", simulate.SIMULATED_EVENTS)
def test_every_event_has_a_sample_the_parser_and_router_read(event: str) -> None:
    sample = simulate.Sample.of(event, amount=Decimal("7500.00"), party="Northwind Traders", currency="CAD")
    stored = simulate.sample_objects(sample, ids(), account_id="ACM123", now=NOW)
    assert stored[0].object_id == ids().object_id
    for item in stored:
        assert simulated.is_simulated_id(item.object_id)
        obj = parse_object(item.kind, item.raw)
        assert str(obj.id) == item.object_id
        assert obj.amount.amount == Decimal("7500.00") and obj.amount.currency == "CAD"
        assert obj.is_deleted == (event.endswith(".delete") and item is stored[0])
    facts = facts_of(event, parse_object(stored[0].kind, stored[0].raw))
    assert facts.amount is not None and facts.amount.amount == Decimal("7500.00")
    assert facts.counterparty == "Northwind Traders"
    assert facts.billable in (None, True)  # a simulated expense is billable: `billable` rules see it


def test_a_payment_embeds_the_invoice_it_pays_and_stores_it_too() -> None:
    sample = simulate.Sample.of("payment.create", amount=Decimal("99.00"), party=None, currency=None)
    payment_item, invoice_item = simulate.sample_objects(sample, ids(), account_id="ACM123", now=NOW)
    payment = parse_object(ObjectKind.PAYMENT, payment_item.raw)
    assert isinstance(payment, Payment) and isinstance(payment.invoice, Invoice)
    assert payment.invoice_id == int(invoice_item.object_id) == payment.invoice.id
    assert payment.invoice.outstanding is not None and payment.invoice.outstanding.amount == 0
    assert invoice_item.kind is ObjectKind.INVOICE
    assert facts_of("payment.create", payment).counterparty == simulate.DEFAULT_NAMES[ObjectKind.PAYMENT]


def test_timestamps_follow_freshbooks_zones() -> None:
    sample = simulate.Sample.of("invoice.create", amount=None, party=None, currency=None)
    (invoice,) = simulate.sample_objects(sample, ids(), account_id="A", now=NOW)
    assert invoice.raw["updated"] == "2026-11-24 10:30:00"  # US/Eastern, like FreshBooks
    assert parse_invoice(invoice.raw).updated == NOW
    bill_sample = simulate.Sample.of("bill.create", amount=None, party=None, currency=None)
    (bill,) = simulate.sample_objects(bill_sample, ids(), account_id="A", now=NOW)
    assert bill.raw["updated_at"] == "2026-11-24 15:30:00"  # bills are UTC


def test_simulated_ids_cannot_be_freshbooks_ids() -> None:
    for _ in range(200):
        object_id = simulated.new_simulated_id()
        assert simulated.is_simulated_id(object_id)
        fields = simulate.webhook_fields(
            "invoice.create", object_id, account_id="p7rQW5", business_id=1, identity_id=2
        )
        assert parse_notification(tuple(fields)).object_id == object_id  # the intake accepts it
    for real in (
        "987654",
        "1204417",
        "1",
        str(2**53),
        str(2**63 - 1),
        "9" * 17,
        "9" * 19,
        "\uff19" * 18,
        "sim",
    ):
        assert not simulated.is_simulated_id(real), real


def test_webhook_fields_are_in_freshbooks_wire_order() -> None:
    fields = simulate.webhook_fields(
        "bill.create", "9" * 18, account_id="p7rQW5", business_id=None, identity_id=7
    )
    assert [k for k, _ in fields] == [
        "name",
        "object_id",
        "user_id",
        "identity_id",
        "business_id",
        "account_id",
    ]
    assert dict(fields)["identity_id"] == "7"


def test_input_is_checked_with_reasons() -> None:
    assert simulate.parse_amount("5,000") == Decimal("5000.00")
    assert simulate.parse_amount(" 1234.5 ") == Decimal("1234.50")
    for bad, reason in (("abc", "not an amount"), ("0", "more than 0"), ("-5", "more than 0"),
                        ("1.234", "2 decimals"), ("NaN", "more than 0"), ("1e12", "less than")):  # fmt: skip
        with pytest.raises(ValueError, match=reason):
            simulate.parse_amount(bad)
    assert simulate.parse_currency("cad") == "CAD"
    for bad in ("US", "USDX", "U$D", "ÉUR"):
        with pytest.raises(ValueError, match="three-letter"):
            simulate.parse_currency(bad)
    assert simulate.parse_name("  Northwind   Traders ") == "Northwind Traders"
    with pytest.raises(ValueError):
        simulate.parse_name("   ")
    with pytest.raises(simulate.SimulateError, match=r"invoice\.create, invoice\.update"):
        simulate.Sample.of("invoice.paid", amount=None, party=None, currency=None)  # derived: not sent


def test_the_instance_url_must_be_http() -> None:
    assert simulate.instance_url("https://fb.example.com/ ") == "https://fb.example.com"
    assert simulate.instance_url("http://127.0.0.1:3000") == "http://127.0.0.1:3000"
    for bad in ("localhost:3000", "ftp://x.example", "http://", "fb.example.com"):
        with pytest.raises(simulate.SimulateError, match="not an http:// or https:// URL"):
            simulate.instance_url(bad)


def test_connection_choice() -> None:
    active = ConnectionStatus.ACTIVE
    one = simulate.ConnectionChoice(3, active, "Acme", "A1")
    two = simulate.ConnectionChoice(5, active, None, "B2")
    parked = simulate.ConnectionChoice(7, ConnectionStatus.NEEDS_RECONNECT, "Old", "C3")
    assert simulate.choose_connection([one], None) is one
    assert simulate.choose_connection([one, parked], None) is one
    assert simulate.choose_connection([one, two], 5) is two
    assert simulate.choose_connection([parked], 7) is parked  # asked for by id: fine, it needs no token
    with pytest.raises(simulate.SimulateError, match=r"--connection ID: 3 \(Acme, account A1\); 5 \(unnamed"):
        simulate.choose_connection([one, two], None)
    with pytest.raises(
        simulate.SimulateError, match="no active FreshBooks connection: run `/freshbooks connect`"
    ):
        simulate.choose_connection([], None)
    with pytest.raises(simulate.SimulateError, match=r"attention: 7 \(Old, account C3, needs_reconnect\)"):
        simulate.choose_connection([parked], None)
    with pytest.raises(simulate.SimulateError, match="no FreshBooks connection 9; connections: 3"):
        simulate.choose_connection([one], 9)


def test_signing_key_needs_a_verified_callback_for_the_event() -> None:
    verified = simulate.CallbackState("invoice.create", True, "enc")
    pending = simulate.CallbackState("bill.create", False, None)
    assert simulate.signing_key([pending, verified], event="invoice.create", connection_id=1) == "enc"
    with pytest.raises(simulate.SimulateError, match=r"bill\.create is registered but not verified.*status"):
        simulate.signing_key([pending, verified], event="bill.create", connection_id=1)
    with pytest.raises(simulate.SimulateError, match=r"expense\.create is not registered"):
        simulate.signing_key([pending, verified], event="expense.create", connection_id=1)


def test_simulated_messages_say_so() -> None:
    sample = simulate.Sample.of("invoice.create", amount=None, party=None, currency=None)
    (invoice,) = simulate.sample_objects(sample, ids(), account_id="A", now=NOW)
    obj = parse_invoice(invoice.raw)
    marked = render("invoice.create", obj, RenderContext(account_id="A", delivery_key="k", simulated=True))
    plain = render("invoice.create", obj, RenderContext(account_id="A", delivery_key="k"))
    assert marked.text == f"{plain.text} ({SIMULATED_NOTE})"
    extra = [b for b in marked.blocks if b not in plain.blocks]
    assert extra == [
        {"type": "context", "elements": [{"type": "mrkdwn", "text": SIMULATED_NOTE, "verbatim": True}]}
    ]


# -- the live app ------------------------------------------------------------------------------


def _rules(live: Live) -> None:
    live.slack.add_channel(Channel(EXEC, name="exec-alerts"))
    live.slack.add_channel(Channel(ACCOUNTING, name="accounting"))
    for text in (
        f"route invoice.create <#{EXEC}|exec-alerts> min 5,000",
        f"route all <#{ACCOUNTING}|accounting>",
    ):
        assert live.slash(text).json()["text"].startswith("Rule saved")


def _object_fetches(fake: FakeFreshBooks) -> list[str]:
    return [c.path for c in fake.calls if c.path.startswith("/accounting/")]


def test_cli_simulates_an_invoice_over_the_threshold(
    live: Live, database_url: str, encryption_key: str, tmp_path: Path
) -> None:
    new = live.connect_and_register("invoice.create")
    _rules(live)
    before = len(live.fake.calls)

    big = run_cli(
        ["invoice.create", "--amount", "7,500", "--client", "Northwind Traders", "--url", live.url],
        database_url=database_url, key=encryption_key, tmp_path=tmp_path,
    )  # fmt: skip
    assert big.returncode == 0, big.stderr
    assert big.stdout.startswith("Sent invoice.create for simulated invoice 9")
    assert "7,500.00 USD" in big.stdout and "HTTP 200" in big.stdout
    assert new.webhook_token not in big.stdout + big.stderr  # the URL token is a secret
    small = run_cli(
        ["invoice.create", "--amount", "1200", "--client", "Small Co", "--url", live.url],
        database_url=database_url, key=encryption_key, tmp_path=tmp_path,
    )  # fmt: skip
    assert small.returncode == 0, small.stderr
    drain(live)

    (posted,) = live.slack.channels[EXEC].messages  # only the invoice over the threshold
    assert posted["text"].startswith("Invoice SIM-")
    assert "Client: Northwind Traders; Total: 7,500.00 USD" in posted["text"]
    assert posted["text"].endswith(f"({SIMULATED_NOTE})")
    assert [
        m["text"].split("Client: ")[1].split(";")[0] for m in live.slack.channels[ACCOUNTING].messages
    ] == [
        "Northwind Traders",
        "Small Co",
    ]
    assert _object_fetches(live.fake) == []
    assert live.fake.calls[before:] == []  # nothing at all went to FreshBooks
    with live.services.db.read() as session:
        assert set(session.scalars(select(Event.source))) == {"simulated"}


@pytest.mark.parametrize("event", ["payment.create", "bill.create", "expense.create", "invoice.delete"])
def test_each_kind_is_answered_from_the_sample(live: Live, event: str) -> None:
    live.connect_and_register(event)
    _rules(live)
    sample = simulate.Sample.of(event, amount=Decimal("321.00"), party="Initech", currency="EUR")
    result = simulate.simulate(
        sample,
        db=live.services.db,
        cipher=live.services.cipher,
        base_url=live.url,
        connection_id=None,
        now=NOW,
    )
    assert (result.status, result.answer) == (200, "ok")
    drain(live)
    posted = live.slack.channels[ACCOUNTING].messages
    assert posted, event
    assert all(m["text"].endswith(f"({SIMULATED_NOTE})") for m in posted)
    assert "321.00 EUR" in posted[0]["text"] and "Initech" in posted[0]["text"]
    if event == "payment.create":  # the sample pays its invoice: the derived event follows, marked too
        titles = sorted(m["text"].split(".")[0] for m in posted)
        assert titles[0].startswith("Invoice SIM-") and titles[0].endswith(" paid")
        assert titles[1] == "Payment received"
    assert _object_fetches(live.fake) == []


# -- refusals, each with its reason, on both databases --------------------------------------------


def test_unknown_event(db: Database, database_url: str, encryption_key: str, tmp_path: Path) -> None:
    done = run_cli(["invoice.paid"], database_url=database_url, key=encryption_key, tmp_path=tmp_path)
    assert done.returncode == 2
    assert "cannot simulate 'invoice.paid'; events: invoice.create," in done.stderr
    assert "expense.delete" in done.stderr and "Traceback" not in done.stderr


def test_no_connection(db: Database, database_url: str, encryption_key: str, tmp_path: Path) -> None:
    done = run_cli(["invoice.create"], database_url=database_url, key=encryption_key, tmp_path=tmp_path)
    assert done.returncode == 2
    assert "no active FreshBooks connection: run `/freshbooks connect` in Slack first" in done.stderr
    assert samples_stored(db) == 0


def test_several_connections_need_one_named(
    db: Database, cipher: Cipher, database_url: str, encryption_key: str, tmp_path: Path
) -> None:
    first = seed(db, cipher)
    second = seed(db, cipher, account_id="zz9Q", team_id="T0002", name="Beta LLC", verified=False)
    done = run_cli(["invoice.create"], database_url=database_url, key=encryption_key, tmp_path=tmp_path)
    assert done.returncode == 2
    assert f"--connection ID: {first} (Acme Bookkeeping, account p7rQW5); {second} (Beta LLC" in done.stderr
    chosen = run_cli(
        ["invoice.create", "--connection", str(second)],
        database_url=database_url, key=encryption_key, tmp_path=tmp_path,
    )  # fmt: skip
    assert chosen.returncode == 2
    assert f"connection {second}'s FreshBooks webhook for invoice.create is registered but not verified" in (
        chosen.stderr
    )
    missing = run_cli(
        ["invoice.create", "--connection", "999"],
        database_url=database_url,
        key=encryption_key,
        tmp_path=tmp_path,
    )
    assert missing.returncode == 2 and "there is no FreshBooks connection 999" in missing.stderr


def test_unverified_callbacks(
    db: Database, cipher: Cipher, database_url: str, encryption_key: str, tmp_path: Path
) -> None:
    seed(db, cipher, verified=False)
    done = run_cli(["invoice.create"], database_url=database_url, key=encryption_key, tmp_path=tmp_path)
    assert done.returncode == 2
    assert "is registered but not verified, so there is no verifier to sign the sample with" in done.stderr
    assert "`/freshbooks status`" in done.stderr
    other = run_cli(["bill.create"], database_url=database_url, key=encryption_key, tmp_path=tmp_path)
    assert other.returncode == 2 and "webhook for bill.create is not registered" in other.stderr
    assert samples_stored(db) == 0


def test_instance_down(
    db: Database, cipher: Cipher, database_url: str, encryption_key: str, tmp_path: Path
) -> None:
    seed(db, cipher)
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    done = run_cli(
        ["invoice.create", "--url", url], database_url=database_url, key=encryption_key, tmp_path=tmp_path
    )
    assert done.returncode == 1
    assert f"could not connect to {url}: is `fbslack serve` running at {url}?" in done.stderr
    assert samples_stored(db) == 0  # the sample of a webhook nobody received is removed


@pytest.mark.parametrize(
    ("status", "message", "hint"),
    [
        (404, "unknown webhook URL", "Check PUBLIC_URL, --url and DATABASE_URL"),
        (401, "invalid signature", "does the instance use this database and ENCRYPTION_KEYS?"),
        (503, "", "(no message)"),
    ],
)
def test_an_instance_that_refuses_the_webhook(
    db: Database, cipher: Cipher, database_url: str, encryption_key: str, tmp_path: Path,
    status: int, message: str, hint: str,
) -> None:  # fmt: skip
    seed(db, cipher)
    received: list[str] = []

    def other_instance(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        received.append(environ["PATH_INFO"])
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        body = message.encode()
        start_response(
            f"{status} Refused", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]

    server = make_server("127.0.0.1", 0, other_instance)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        done = run_cli(
            ["invoice.create", "--url", url], database_url=database_url, key=encryption_key, tmp_path=tmp_path
        )
    finally:
        server.shutdown()
        server.server_close()
    assert [p.rsplit("/", 1)[0] for p in received] == ["/freshbooks/webhooks"]
    assert done.returncode == 1
    assert f"the instance at {url} answered HTTP {status}: {message}" in done.stderr
    assert hint in done.stderr
    assert "INFO" not in done.stderr  # no log noise in an operator's terminal
    assert samples_stored(db) == 0  # refused: its sample is removed


def test_wrong_encryption_key(db: Database, cipher: Cipher, database_url: str, tmp_path: Path) -> None:
    seed(db, cipher)
    from storage.crypto import generate_key

    done = run_cli(["invoice.create"], database_url=database_url, key=generate_key(), tmp_path=tmp_path)
    assert done.returncode == 2
    assert (
        "cannot decrypt the connection's secrets: run this with the server's ENCRYPTION_KEYS" in done.stderr
    )


def test_missing_sqlite_database(tmp_path: Path, encryption_key: str) -> None:
    url = f"sqlite:///{tmp_path / 'nowhere' / 'fbslack.db'}"
    done = run_cli(["invoice.create"], database_url=url, key=encryption_key, tmp_path=tmp_path)
    assert done.returncode == 2
    assert "no database at" in done.stderr
    assert not (tmp_path / "nowhere" / "fbslack.db").exists()  # and none was created
