"""`fbslack demo` as people run it: a real process on a free port, driven over HTTP like its page.

One demo serves the module (starting it costs a fresh schema and the app's start); each test reads
only what its own action produced.
"""

from __future__ import annotations

import html
import re
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.demo import DemoProcess, demo_environment, run_fbslack, running_demo
from tests.support.polling import wait_until

DEMO_DEADLINE = 30  # seconds for one event's message, on a machine whose cores are busy


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("demo")
    data = root / "data"
    data.mkdir()
    # The user's own database, in the same DATA_DIR: the demo must leave it alone.
    real = data / "fbslack.db"
    with sqlite3.connect(real) as conn:
        conn.execute("CREATE TABLE kept (note TEXT)")
        conn.execute("INSERT INTO kept VALUES ('the real one')")
    conn.close()
    # A demo database left by an earlier run: the demo starts anew instead of reusing it.
    (data / "demo.db").write_bytes(b"not a database: left over from an earlier run")
    return {"root": root, "data": data, "real": real, "elsewhere": root / "elsewhere.db"}


@pytest.fixture(scope="module")
def demo(places: dict[str, Path]) -> Iterator[DemoProcess]:
    env = demo_environment(places["data"], DATABASE_URL=f"sqlite:///{places['elsewhere']}")
    with running_demo(env, cwd=places["root"]) as process:
        yield process


def _texts(messages: list[dict[str, object]]) -> list[str]:
    """Every message's fallback text, thread replies included."""
    found: list[str] = []
    for message in messages:
        found.append(str(message["text"]))
        found += [str(reply["text"]) for reply in message.get("replies", [])]  # type: ignore[attr-defined]
    return found


def test_the_demo_prints_its_page_and_serves_it(demo: DemoProcess) -> None:
    page = httpx.get(demo.page_url, timeout=30)
    assert page.status_code == 200
    assert "FreshBooks for Slack: demo" in page.text
    assert "<script src" not in page.text and "<link" not in page.text  # inline assets only
    home = wait_until(lambda: demo.slack()["home"], timeout=DEMO_DEADLINE, what="the App Home")
    assert home["type"] == "home"


def test_an_event_reaches_its_channel_through_the_real_webhook_path(demo: DemoProcess) -> None:
    fired = demo.fire("invoice_created")
    assert [w["event"] for w in fired["webhooks"]] == ["invoice.create"]
    number = f"MB-{fired['webhooks'][0]['object_id'] - 100000:04d}"
    for channel in ("finance", "sales"):  # two seeded rules route new invoices
        wait_until(
            lambda channel=channel: [
                t for t in _texts(demo.channel(channel)) if number in t and "created" in t
            ],
            timeout=DEMO_DEADLINE,
            what=f"invoice {number} in #{channel}",
        )


def test_a_payment_lands_in_the_invoice_thread(demo: DemoProcess) -> None:
    sent = demo.fire("invoice_sent")["webhooks"][-1]["object_id"]
    number = f"MB-{sent - 100000:04d}"
    wait_until(
        lambda: [t for t in _texts(demo.channel("finance")) if number in t and "sent" in t],
        timeout=DEMO_DEADLINE,
        what="the sent invoice",
    )
    demo.fire("payment")  # pays the newest open invoice in full: the one just sent

    def paid_in_thread() -> bool:
        cards = [m for m in demo.channel("finance") if number in str(m["text"])]
        return any("paid" in str(r["text"]) for card in cards for r in card["replies"])

    wait_until(paid_in_thread, timeout=DEMO_DEADLINE, what=f"invoice {number} paid, in its thread")


def test_a_burst_of_thirty_invoices_is_posted_paced(demo: DemoProcess) -> None:
    fired = demo.fire("burst")["webhooks"]
    assert len(fired) == 30 and {w["event"] for w in fired} == {"invoice.create"}
    numbers = {f"MB-{w['object_id'] - 100000:04d}" for w in fired}

    def missing() -> set[str]:
        texts = _texts(demo.channel("finance"))
        return {n for n in numbers if not any(n in t for t in texts)}

    # Slack takes about one post a second per channel: 30 posts take 30 s at least.
    wait_until(lambda: not missing(), timeout=150, what="the 30 invoices in #finance")


def test_a_command_is_answered(demo: DemoProcess) -> None:
    saved = demo.command("route expense #exec-alerts billable")

    def answer(command_id: str) -> str | None:
        texts = [
            str(e["message"].get("text", ""))
            for e in demo.slack()["ephemerals"]
            if e["command_id"] == command_id and e["message"].get("text")
        ]
        return texts[-1] if texts else None

    text = wait_until(lambda: answer(saved), timeout=DEMO_DEADLINE, what="the route command's answer")
    assert "Rule saved" in text and "<#CDEMOEXE01>" in text  # `#exec-alerts` was sent as Slack links it
    listed = demo.command("rules")
    text = wait_until(lambda: answer(listed), timeout=DEMO_DEADLINE, what="the rules command's answer")
    assert "`expense` → <#CDEMOEXE01> billable only" in text


def test_simulate_works_against_the_demo_address(demo: DemoProcess, places: dict[str, Path]) -> None:
    env = demo_environment(places["root"] / "nowhere")
    command = ("simulate", "invoice.create", "--client", "Simulated Sprockets", "--url", demo.page_url)
    result = run_fbslack(*command, env=env, cwd=places["root"])
    assert result.returncode == 0, result.stderr
    assert "Simulated Sprockets" in result.stdout
    wait_until(
        lambda: [t for t in _texts(demo.channel("finance")) if "Simulated Sprockets" in t],
        timeout=DEMO_DEADLINE,
        what="the simulated invoice",
    )
    assert not (places["root"] / "nowhere").exists()  # simulate opened no database of its own


def test_the_demo_never_touches_another_database(demo: DemoProcess, places: dict[str, Path]) -> None:
    with sqlite3.connect(places["real"]) as conn:
        assert conn.execute("SELECT note FROM kept").fetchall() == [("the real one",)]
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("kept",)]
    conn.close()
    assert not places["elsewhere"].exists()  # DATABASE_URL is not the demo's database
    with sqlite3.connect(places["data"] / "demo.db") as conn:  # made anew, with the schema
        assert ("freshbooks_connections",) in conn.execute("SELECT name FROM sqlite_master").fetchall()
    conn.close()


@pytest.mark.parametrize("variable", ["SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN", "SLACK_CLIENT_ID"])
def test_the_demo_refuses_to_run_with_slack_credentials(tmp_path: Path, variable: str) -> None:
    env = demo_environment(tmp_path / "data", **{variable: "xoxb-123-real-looking"})
    result = run_fbslack("demo", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "fbslack demo: the demo is never reachable once Slack credentials are set "
        "(unset SLACK_SIGNING_SECRET, SLACK_BOT_TOKEN, SLACK_CLIENT_ID)"
    ]
    assert "xoxb-123" not in result.stderr
    assert not (tmp_path / "data" / "demo.db").exists()


def test_connect_runs_the_real_oauth_flow_against_the_sandbox(demo: DemoProcess) -> None:
    command_id = demo.command("connect")
    answer = next(e for e in demo.slack()["ephemerals"] if e["command_id"] == command_id)
    link = answer["message"]["blocks"][0]["accessory"]["url"]
    with httpx.Client(timeout=30) as browser:
        approved = browser.get(link)  # the sandbox's authorize page approves at once
        assert approved.status_code == 302
        page = browser.get(approved.headers["location"])
        assert "Connect FreshBooks to Slack?" in page.text
        fields = {
            name: html.unescape(value)
            for name, value in re.findall(r"name='(\w+)' value='([^']*)'", page.text)
        }
        done = browser.post(f"{demo.base}/freshbooks/oauth/confirm", data={**fields, "action": "connect"})
    assert done.status_code == 200 and "FreshBooks is connected" in done.text

    def told() -> list[str]:
        dms = [c["messages"] for c in demo.slack()["channels"] if c["is_dm"]]
        return [
            str(m["text"]) for messages in dms for m in messages if "connected and live" in str(m["text"])
        ]

    wait_until(told, timeout=DEMO_DEADLINE, what="the admin told that events are flowing")


def test_a_port_in_use_or_an_unwritable_data_dir_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_fbslack(
            "demo", "--port", str(port), env=demo_environment(tmp_path / "data"), cwd=tmp_path
        )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"fbslack demo: cannot listen on 127.0.0.1:{port} (Address already in use): "
        "pick another --port, or leave it out"
    ]
    blocked = tmp_path / "file"
    blocked.write_text("a file where DATA_DIR's folder would be")
    result = run_fbslack("demo", env=demo_environment(blocked / "data"), cwd=tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"fbslack demo: cannot write the demo database {blocked / 'data' / 'demo.db'} (")
    assert line.endswith("): set DATA_DIR to a writable folder")


def test_a_second_demo_on_the_same_data_dir_is_refused(demo: DemoProcess, places: dict[str, Path]) -> None:
    result = run_fbslack("demo", env=demo_environment(places["data"]), cwd=places["root"])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"fbslack demo: another fbslack demo is running with DATA_DIR {places['data']}: "
        "stop it, or set another DATA_DIR"
    ]
    assert demo.fire("expense")["webhooks"]  # the first one still runs, on its own database
    with sqlite3.connect(places["data"] / "demo.db") as conn:
        assert conn.execute("SELECT count(*) FROM freshbooks_connections").fetchone() == (1,)
    conn.close()
