"""A real headless browser for page tests: Debian's chromium driven through selenium.

`headless_chrome()` starts one session on /usr/bin/chromium with /usr/bin/chromedriver (both from
Debian's `chromium` and `chromium-driver`, which `.ci/run` installs when missing) and skips the test,
saying why, when either is absent. The paths are given explicitly so that selenium never tries to
download a driver or a browser of its own (Selenium Manager), which this machine cannot do.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

from tests.support.polling import wait_until

if TYPE_CHECKING:  # selenium is a dev extra, imported lazily so that its absence can skip
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = Path(os.environ.get("FBSLACK_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("FBSLACK_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))

# Debian's packages; `.ci/run` installs them when it runs as root with apt-get.
BROWSER_PACKAGES = "chromium chromium-driver"

T = TypeVar("T")


def browser_unavailable() -> str | None:
    """Why no browser test can run here, or None when chromium and chromedriver are both installed."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        return (
            f"browser tests skipped: {' and '.join(missing)} not found "
            f"(install Debian's {BROWSER_PACKAGES}: apt-get install {BROWSER_PACKAGES})"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "browser tests skipped: selenium is not installed (pip install -e '.[dev]')"
    return None


@contextlib.contextmanager
def headless_chrome(*, width: int = 1200, height: int = 900) -> Iterator[WebDriver]:
    """One headless chromium session, closed on exit; skips the calling test when none can start."""
    reason = browser_unavailable()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where chromium's sandbox refuses to start
        "--disable-dev-shm-usage",  # small /dev/shm in containers
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # for console_errors()
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()


def grant_clipboard(driver: WebDriver, origin: str) -> None:
    """Let pages from `origin` read and write the clipboard without a prompt (headless has no one to ask)."""
    driver.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"origin": origin, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )


def read_clipboard(driver: WebDriver) -> str:
    """The clipboard's text, read by the page itself (needs `grant_clipboard` for the page's origin)."""
    text = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "navigator.clipboard.readText().then(done, (error) => done('clipboard error: ' + error));"
    )
    assert isinstance(text, str)
    return text


def console_errors(driver: WebDriver) -> list[str]:
    """The page's console errors since the last call (a refused inline script or style shows here)."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        # A page without an icon gets a 404 for the one the browser asks for on its own.
        if entry["level"] == "SEVERE" and "favicon.ico" not in entry["message"]
    ]


def wait_for(condition: Callable[[], T | None], *, timeout: float = 5.0, what: str = "condition") -> T:
    """Poll `condition` until it returns something truthy, or fail after `timeout` seconds."""
    return wait_until(condition, timeout=timeout, what=what, interval=0.05)
