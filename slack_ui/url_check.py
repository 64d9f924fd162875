"""Slack's first check of the request URL, answered while Bolt is not running yet.

Slack sends a `url_verification` request the moment an app is created from the manifest, before
its signing secret can have been copied into SLACK_SIGNING_SECRET; without an answer the app's
Request URL stays unverified until someone finds the Retry button. So until Bolt runs, the route
echoes the challenge of a well-formed `url_verification` body, and nothing else:

- with no signing secret configured the request cannot be checked, and answering it reveals
  nothing (the challenge is the caller's own string) and changes nothing;
- with a signing secret (Slack's credentials still incomplete), the request must be signed with it.

Once Bolt runs, its own middleware answers the check after verifying the signature.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from slack_sdk.signature import Clock, SignatureVerifier

# Slack's challenges are short random tokens; anything else is not Slack's check and is not echoed.
_CHALLENGE = re.compile(r"^[A-Za-z0-9+/=_.-]{1,256}$")
# A url_verification body is three short fields.
MAX_CHECK_BYTES = 2048
_FIELDS = frozenset({"token", "challenge", "type"})


class _FixedClock(Clock):
    """The request's arrival time for slack_sdk's timestamp window (its own clock reads the wall clock)."""

    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def url_check_challenge(
    body: bytes, headers: Mapping[str, str], *, signing_secret: str | None, now: float
) -> str | None:
    """The challenge to echo, or None when `body` is not a well-formed (and, given a signing secret,
    correctly signed) `url_verification` request. Pure; `now` is the arrival time in Unix seconds."""
    if len(body) > MAX_CHECK_BYTES:
        return None
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict) or payload.get("type") != "url_verification" or set(payload) - _FIELDS:
        return None
    challenge = payload.get("challenge")
    if not isinstance(challenge, str) or not _CHALLENGE.match(challenge):
        return None
    if signing_secret is not None:
        verifier = SignatureVerifier(signing_secret, clock=_FixedClock(now))
        try:
            signed = verifier.is_valid_request(body, dict(headers))
        except ValueError:  # a timestamp header that is not a number
            return None
        if not signed:
            return None
    return challenge
