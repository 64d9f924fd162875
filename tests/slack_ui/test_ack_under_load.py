"""Slack gives a slash command 3 seconds, including the trip across the internet: under load, with
a slow Slack and both cores kept busy by another process, every command is acknowledged within 1 s
of arriving on the server (the work runs on a pool; past the budget the answer goes to the
response_url)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import REGISTRY

from slack_ui.answer import ACK_BUDGET_SECONDS
from tests.support.fakes.slack import STORE_THEN_DROP, Channel
from tests.support.live import ADMIN, MEMBER, Live

SLACK_ACK_SECONDS = 3.0
SERVER_ACK_SECONDS = 1.0
# Spins until killed, and stops by itself after two minutes whatever happens to this test.
_BURN = "import time\nend = time.monotonic() + 120\nwhile time.monotonic() < end:\n    pass\n"


@contextlib.contextmanager
def cpu_burners() -> Iterator[None]:
    """One busy process per core, at the same priority as the server."""
    burners = [subprocess.Popen([sys.executable, "-c", _BURN]) for _ in range(os.cpu_count() or 2)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def acks_within(seconds: float) -> tuple[float, float]:
    """(acknowledgements so far, those within `seconds` of arrival), from the server's histogram."""
    name = "fbslack_slash_command_ack_seconds"
    total = REGISTRY.get_sample_value(f"{name}_count") or 0.0
    within = REGISTRY.get_sample_value(f"{name}_bucket", {"le": f"{seconds:.1f}"}) or 0.0
    return total, within


def test_the_budget_leaves_margin_within_the_server_s_second() -> None:
    assert ACK_BUDGET_SECONDS <= 0.75 * SERVER_ACK_SECONDS


def test_twenty_concurrent_commands_on_a_busy_machine_are_acknowledged_within_a_second(live: Live) -> None:
    live.slack.add_channel(Channel("C0ACC", name="accounting"))
    live.connect()
    assert live.slash("help").status_code == 200  # Bolt's one-time auth.test, at full speed
    # Every Web API call (users.info for the admin check, conversations.info, chat.postMessage...)
    # takes half a second, as on a bad day; most commands make one to three before answering.
    live.slack.latency = 0.5
    commands = [
        ("status", MEMBER),
        ("rules", MEMBER),
        ("help", MEMBER),
        ("test <#C0ACC|accounting>", MEMBER),
        ("route invoice <#C0ACC|accounting> min 100", ADMIN),
        ("audit acme", ADMIN),
        ("replay failed", ADMIN),
        ("unroute 999", ADMIN),
        ("nonsense", MEMBER),
        ("route invoice", MEMBER),  # refused: not an admin
    ] * 2
    start = threading.Barrier(len(commands))

    def run(command: tuple[str, str]) -> tuple[str, int, float, str]:
        text, user = command
        start.wait()
        began = time.monotonic()
        answer = live.slash(text, user_id=user, follow=False)
        return text, answer.status_code, time.monotonic() - began, answer.text

    total_before, within_before = acks_within(SERVER_ACK_SECONDS)
    with cpu_burners(), ThreadPoolExecutor(max_workers=len(commands)) as pool:
        results = list(pool.map(run, commands))
    total_after, within_after = acks_within(SERVER_ACK_SECONDS)
    # Measured on the server, from arrival to acknowledgement: what this app controls.
    assert total_after - total_before == len(commands)
    assert within_after - within_before == len(commands)
    # And as the client saw it, round trip included.
    slow = [
        (text, round(seconds, 2)) for text, _status, seconds, _body in results if seconds >= SLACK_ACK_SECONDS
    ]
    assert slow == []
    assert all(status == 200 for _text, status, _seconds, _body in results)
    assert all(body for _text, _status, _seconds, body in results)  # each got its own answer
    # Every command that had to hand over finished at its response_url.
    handed_over = [
        body for _text, _status, _seconds, body in results if json.loads(body)["text"].endswith("…")
    ]
    live.slack.latency = 0.0
    assert len(live.slack.wait_for_responses(len(handed_over), timeout=30)) >= len(handed_over)


def test_a_route_slack_is_too_slow_to_check_in_time_is_answered_by_response_url(live: Live) -> None:
    live.slack.add_channel(Channel("C0ACC", name="accounting"))
    live.connect()
    assert live.slash("help").status_code == 200  # Bolt's one-time auth.test, at full speed
    # users.info (the admin check) alone takes 1.2 s: past the budget, so the command acknowledges
    # first and the rule is checked and saved after that.
    live.slack.latency = 1.2
    began = time.monotonic()
    ack = live.slash("route invoice <#C0ACC|accounting> min 100", user_id=ADMIN, follow=False)
    assert time.monotonic() - began < SLACK_ACK_SECONDS
    assert ack.status_code == 200
    assert ack.json()["text"] == "Working on `/freshbooks route`…"
    (follow_up,) = live.slack.wait_for_responses(1, timeout=20)
    assert follow_up["text"] == "Rule saved: `#1` `invoice` → <#C0ACC> min 100."
    live.slack.latency = 0.0
    assert "C0ACC" in live.slash("rules", user_id=MEMBER).json()["text"]


def test_work_that_fails_after_the_acknowledgement_is_reported_by_response_url(live: Live) -> None:
    live.slack.add_channel(Channel("C0ACC", name="accounting"))
    live.connect()
    assert live.slash("help").status_code == 200  # Bolt's one-time auth.test, at full speed
    live.slack.latency = 1.2  # conversations.info and the post take 2.4 s: past the budget
    # The sample post takes effect and then the connection drops, twice (once more than the
    # client's own retry on a connection error): the command's work ends with an exception.
    live.slack.script("chat.postMessage", STORE_THEN_DROP, STORE_THEN_DROP)
    ack = live.slash("test <#C0ACC|accounting>", user_id=MEMBER, follow=False)
    assert ack.json()["text"] == "Posting a sample message to <#C0ACC>…"
    (follow_up,) = live.slack.wait_for_responses(1, timeout=20)
    assert follow_up["text"] == "Something went wrong before this finished. Try again in a moment."
