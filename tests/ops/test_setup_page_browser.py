"""The setup page in a real browser: it loads under its own Content-Security-Policy, reads well on
a phone, each copy button puts the exact value on the clipboard, and the create-app link carries
the manifest with this server's host."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import yaml

from connector.ops.setup_page import DEMO_COMMAND, filled_manifest, load_manifest_template
from tests.support.browser import console_errors, grant_clipboard, read_clipboard, wait_for
from tests.support.pages import serve_app

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

HOST = "https://fb.example.test"


def _copy(browser: WebDriver, element_id: str) -> str:
    """Click the copy button of `element_id` and return what reached the clipboard."""
    from selenium.webdriver.common.by import By

    button = browser.find_element(By.CSS_SELECTOR, f"button[data-copy='{element_id}']")
    button.click()
    wait_for(lambda: button.text == "Copied", what=f"the {element_id} button to say Copied")
    return read_clipboard(browser)


def test_copy_buttons_and_the_create_app_link_in_a_browser(browser: WebDriver, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    template = load_manifest_template()
    assert template is not None
    with serve_app(tmp_path, PUBLIC_URL=HOST) as served:
        grant_clipboard(browser, served.url)
        browser.get(f"{served.url}/")
        assert browser.title == "FreshBooks for Slack: setup"
        # The inline style applied (the page's CSP allows it by hash) and nothing was refused.
        main = browser.find_element(By.TAG_NAME, "main")
        assert main.value_of_css_property("max-width") == "736px"
        assert console_errors(browser) == []

        expected = {
            "slack-request-url": f"{HOST}/slack/events",
            "slack-redirect-url": f"{HOST}/slack/oauth_redirect",
            "manifest": filled_manifest(template, HOST),
            "demo-command": DEMO_COMMAND,
        }
        buttons = browser.find_elements(By.CSS_SELECTOR, "button[data-copy]")
        assert sorted(b.get_attribute("data-copy") or "" for b in buttons) == sorted(expected)
        for element_id, value in expected.items():
            assert _copy(browser, element_id) == value, element_id

        link = browser.find_element(By.ID, "create-app")
        href = link.get_attribute("href") or ""
        assert href.startswith("https://api.slack.com/apps?new_app=1&manifest_json=")
        manifest = json.loads(parse_qs(urlsplit(href).query)["manifest_json"][0])
        assert manifest == yaml.safe_load(expected["manifest"])
        assert manifest["settings"]["event_subscriptions"]["request_url"] == f"{HOST}/slack/events"
        assert manifest["oauth_config"]["redirect_urls"] == [f"{HOST}/slack/oauth_redirect"]
        assert console_errors(browser) == []


def test_the_page_fits_a_phone(browser: WebDriver, tmp_path: Path) -> None:
    with serve_app(tmp_path, PUBLIC_URL=HOST) as served:
        browser.set_window_size(390, 844)
        browser.get(f"{served.url}/")
        width = browser.execute_script("return window.innerWidth")
        scroll = browser.execute_script("return document.documentElement.scrollWidth")
        assert isinstance(width, int) and width <= 390
        assert scroll <= width  # nothing makes the page scroll sideways (the manifest scrolls in its box)


def test_add_to_slack_in_multi_workspace_mode(browser: WebDriver, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    env = {
        "PUBLIC_URL": HOST,
        "SLACK_SIGNING_SECRET": "s",
        "SLACK_CLIENT_ID": "1.2",
        "SLACK_CLIENT_SECRET": "c",
    }
    with serve_app(tmp_path, **env) as served:
        grant_clipboard(browser, served.url)
        browser.get(f"{served.url}/")
        button = browser.find_element(By.ID, "add-to-slack")
        assert button.text == "Add to Slack"
        assert button.get_attribute("href") == f"{HOST}/slack/install"
        assert _copy(browser, "install-url") == f"{HOST}/slack/install"
        assert browser.find_elements(By.ID, "try-it") == []  # Slack is configured: no demo offer


def test_copy_works_without_the_clipboard_api(browser: WebDriver, tmp_path: Path) -> None:
    """A plain-http address on the local network is no secure context: no navigator.clipboard there,
    and the button copies through a hidden textarea instead."""
    with serve_app(tmp_path, PUBLIC_URL=HOST) as served:
        grant_clipboard(browser, served.url)
        browser.get(f"{served.url}/")
        browser.execute_script("Object.defineProperty(navigator, 'clipboard', {value: undefined})")
        assert browser.execute_script("return navigator.clipboard") is None
        assert _copy_from_fallback(browser, "slack-redirect-url") == f"{HOST}/slack/oauth_redirect"


def _copy_from_fallback(browser: WebDriver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    button = browser.find_element(By.CSS_SELECTOR, f"button[data-copy='{element_id}']")
    button.click()
    wait_for(lambda: button.text == "Copied", what=f"the {element_id} button to say Copied")
    browser.refresh()  # the page's own navigator.clipboard again, to read what was copied
    return read_clipboard(browser)
