"""The demo page in a real headless browser, against `fbslack demo` running as a real process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.browser import browser_unavailable, wait_for
from tests.support.demo import DemoProcess, demo_environment, running_demo

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

FINANCE = "CDEMOFIN01"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProcess]:
    reason = browser_unavailable()
    if reason:  # no browser: do not start a demo for nothing
        pytest.skip(reason)
    root: Path = tmp_path_factory.mktemp("demo-browser")
    with running_demo(demo_environment(root / "data"), cwd=root) as process:
        yield process


def _cards(browser: WebDriver, channel_id: str) -> int:
    """Top-level messages shown in a channel (thread replies are inside them)."""
    count: int = browser.execute_script(
        "return document.querySelectorAll('#channel-' + arguments[0] + ' > article.bk-message').length;",
        channel_id,
    )
    return count


def _open(browser: WebDriver, demo: DemoProcess) -> None:
    browser.get(demo.page_url)
    # The first poll has answered once the channels are in the sidebar.
    wait_for(
        lambda: browser.execute_script(
            "return !!document.getElementById('channel-' + arguments[0]);", FINANCE
        ),
        timeout=10,
        what="the channels",
    )


def test_a_button_shows_its_message_within_two_seconds(browser: WebDriver, demo: DemoProcess) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, demo)
    before = _cards(browser, FINANCE)
    browser.find_element(By.ID, "fire-invoice_created").click()
    clicked = time.monotonic()
    wait_for(lambda: _cards(browser, FINANCE) > before, timeout=2.0, what="the new invoice in #finance")
    assert time.monotonic() - clicked <= 2.0
    pane = browser.find_element(By.ID, f"channel-{FINANCE}")
    assert "created" in pane.text and "Total" in pane.text  # shown as Slack shows it, fields and all


def test_a_typed_command_shows_its_answer(browser: WebDriver, demo: DemoProcess) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _open(browser, demo)
    box = browser.find_element(By.ID, "command")
    box.send_keys("rules", Keys.ENTER)
    answers = browser.find_element(By.ID, "answers")
    wait_for(lambda: "Routing rules" in answers.text, timeout=10, what="the answer to /freshbooks rules")
    assert "/freshbooks rules" in answers.text and "#finance" in answers.text  # channels named, as in Slack


def test_the_app_home_is_shown(browser: WebDriver, demo: DemoProcess) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, demo)
    browser.find_element(By.ID, "nav-home").click()
    home = browser.find_element(By.ID, "home")
    wait_for(
        lambda: "Routing rules" in (home.get_attribute("textContent") or ""),
        timeout=10,
        what="the App Home's rules",
    )
    assert home.is_displayed()
