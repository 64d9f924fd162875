"""`fbslack simulate --url <demo address>`: the demo holds its own database and keys, so the CLI asks
it to send the signed sample (through connector.ops.simulate, in the demo process) instead of
opening a database itself.

The demo address is the one `fbslack demo` prints, its page (…/demo/): recognised by its path, so
that simulating against any other instance sends it nothing but the webhook, as before."""

from __future__ import annotations

import urllib.parse
from decimal import Decimal

import httpx

from connector.ops.simulate import TIMEOUT_SECONDS, SimulateError

PROBE_SECONDS = 3.0


def is_demo_address(url: str) -> bool:
    """Whether `url` is a demo's page, as `fbslack demo` prints it. Pure."""
    return urllib.parse.urlsplit(url.strip()).path.rstrip("/") == "/demo"


def demo_base(url: str) -> str:
    """The demo's base URL, whether given as its base or as its page (…/demo/). Pure."""
    return url.strip().rstrip("/").removesuffix("/demo")


def simulate_on_demo(
    url: str, *, event: str, amount: Decimal | None, client: str | None, currency: str | None
) -> str:
    """The demo's report of the simulation; SimulateError when no demo answers at `url` or the demo
    refused (the message says why)."""
    base = demo_base(url)
    missing = SimulateError(f"no demo answers at {base}/demo/: is `fbslack demo` running there?", exit_code=1)
    try:
        about = httpx.get(f"{base}/demo/api/about", timeout=PROBE_SECONDS)
        is_demo = about.status_code == 200 and about.json().get("demo") is True
    except (httpx.HTTPError, ValueError, AttributeError):
        raise missing from None
    if not is_demo:
        raise missing
    body = {
        "event": event,
        "amount": None if amount is None else str(amount),
        "client": client,
        "currency": currency,
    }
    try:
        answer = httpx.post(f"{base}/demo/api/simulate", json=body, timeout=TIMEOUT_SECONDS * 2)
        result = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise SimulateError(
            f"the demo at {base} did not answer ({type(exc).__name__})", exit_code=1
        ) from None
    if answer.status_code != 200 or not isinstance(result, dict) or "report" not in result:
        error = result.get("error") if isinstance(result, dict) else None
        raise SimulateError(str(error or f"the demo answered HTTP {answer.status_code}"), exit_code=1)
    return str(result["report"])
