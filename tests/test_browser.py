"""The browser harness itself: chromium starts headless, loads a page over HTTP and shares its clipboard."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from werkzeug.serving import make_server

from tests.support.browser import grant_clipboard, read_clipboard, wait_for

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

PAGE = b"""<!doctype html><title>harness</title>
<button id="copy" onclick="navigator.clipboard.writeText('copied from the page')">Copy</button>"""


def _page(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    return [PAGE]


@pytest.fixture
def page_url() -> Iterator[str]:
    server = make_server("127.0.0.1", 0, _page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


def test_a_page_loads_and_a_button_writes_the_clipboard(browser: WebDriver, page_url: str) -> None:
    from selenium.webdriver.common.by import By

    grant_clipboard(browser, page_url)
    browser.get(page_url + "/")
    assert browser.title == "harness"
    browser.find_element(By.ID, "copy").click()
    assert wait_for(lambda: read_clipboard(browser) == "copied from the page", what="the clipboard")
