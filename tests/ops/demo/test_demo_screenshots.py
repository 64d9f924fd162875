"""The README's pictures: the demo's #finance with each kind of message, #exec-alerts, the App Home.

One documented command regenerates them (README, "Try it"):

    FBSLACK_SCREENSHOTS_DIR=docs/images .venv/bin/pytest tests/ops/demo/test_demo_screenshots.py

Without the variable the PNGs go to a temporary folder. Either way the test asserts what the pictures
must show: every kind of message rendered as Slack shows it (no block the page could not draw), and a
picture of real size.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.browser import browser_unavailable, headless_chrome, wait_for
from tests.support.demo import DemoProcess, demo_environment, running_demo
from tests.support.polling import wait_until

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

FINANCE, EXEC_ALERTS = "CDEMOFIN01", "CDEMOEXE01"
# Each button, and the start of the fallback text of the message it leads to (replies included).
KINDS = {
    "invoice_created": re.compile(r"^Invoice \S+ created\. Client", re.M),
    "invoice_sent": re.compile(r"^Invoice \S+ sent to the client", re.M),
    "invoice_paid": re.compile(r"^Invoice \S+ paid\.", re.M),
    "invoice_partly_paid": re.compile(r"^Invoice \S+ partially paid\.", re.M),
    "payment": re.compile(r"^Payment received\.", re.M),
    "bill": re.compile(r"^Bill \S+ from [^.]*(?: created)?\. Total", re.M),
    "bill_paid": re.compile(r"^Bill \S+ from .* paid\.", re.M),
    "expense": re.compile(r"^Expense at ", re.M),
    "invoice_overdue": re.compile(r"^Invoice \S+ is overdue\.", re.M),
}
WIDTH = 1280
MAX_HEIGHT = 6000


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProcess]:
    reason = browser_unavailable()
    if reason:
        pytest.skip(reason)
    root: Path = tmp_path_factory.mktemp("demo-shots")
    with running_demo(demo_environment(root / "data"), cwd=root) as process:
        yield process


def _texts(message: dict[str, Any]) -> Iterator[str]:
    yield str(message.get("text", ""))
    for reply in message.get("replies", []):
        yield from _texts(reply)


def _all_texts(demo: DemoProcess) -> str:
    return "\n".join(
        text
        for channel in demo.slack()["channels"]
        for message in channel["messages"]
        for text in _texts(message)
    )


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return int(width), int(height)


def _shoot(browser: WebDriver, pane_id: str, path: Path) -> None:
    """The page with `pane_id` shown, the window as tall as that pane's content (so nothing is cut)."""
    from selenium.webdriver.common.by import By

    browser.find_element(By.CSS_SELECTOR, f'nav button[data-pane="{pane_id}"]').click()
    wait_for(
        lambda: browser.execute_script(
            "return document.getElementById(arguments[0]).classList.contains('on');", f"pane-{pane_id}"
        ),
        timeout=5,
        what=f"the {pane_id} pane",
    )
    height = browser.execute_script(
        "const pane = document.getElementById(arguments[0]);"
        "return pane.scrollHeight + pane.getBoundingClientRect().top + 24;",
        f"pane-{pane_id}",
    )
    browser.set_window_size(WIDTH, min(MAX_HEIGHT, max(900, int(height))))
    browser.execute_script("document.getElementById(arguments[0]).scrollTop = 0;", f"pane-{pane_id}")
    assert browser.save_screenshot(str(path)), f"no screenshot written to {path}"


def test_pictures_of_every_kind_of_message_and_the_app_home(demo: DemoProcess, tmp_path: Path) -> None:
    out = Path(os.environ.get("FBSLACK_SCREENSHOTS_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    # One at a time, each waited for: a burst of five or more would go out as one summary (as it
    # should), and the pictures are of each kind of message on its own. The overdue one comes from
    # the demo's overdue scan, every 10 s.
    for action, pattern in KINDS.items():
        demo.fire(action)
        wait_until(
            lambda pattern=pattern: pattern.search(_all_texts(demo)),  # type: ignore[misc]
            timeout=45,
            what=f"the message of {action} in the stand-in",
        )
    shots = {"demo-finance.png": FINANCE, "demo-exec-alerts.png": EXEC_ALERTS, "demo-app-home.png": "home"}
    with headless_chrome(width=WIDTH, height=900) as browser:
        browser.get(demo.page_url)
        wait_for(
            lambda: all(words in browser.find_element("id", f"channel-{FINANCE}").get_attribute("textContent")
                        for words in ("Payment received", "Expense at", "Bill B-")),
            timeout=10,
            what="#finance drawn on the page",
        )  # fmt: skip
        page = browser.find_element("tag name", "body").get_attribute("innerHTML") or ""
        assert "Not shown here" not in page  # every block of every message was drawn
        browser.find_element("id", "nav-home").click()
        wait_for(
            lambda: (
                "Routing rules" in (browser.find_element("id", "home").get_attribute("textContent") or "")
            ),
            timeout=10,
            what="the App Home",
        )
        for name, pane in shots.items():
            _shoot(browser, pane, out / name)
    for name in shots:
        width, height = _png_size(out / name)
        assert width >= 1000 and height >= 600, (name, width, height)
