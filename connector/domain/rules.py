"""Routing rules as values: a saved rule, a route spec (a rule before it is saved), a target channel."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

# A burst of at least this many messages waiting for one channel goes out as one summary.
DEFAULT_COLLAPSE_AT: Final = 5
COLLAPSE_MIN: Final = 2
COLLAPSE_MAX: Final = 1000


@dataclass(frozen=True, slots=True)
class Rule:
    id: int
    patterns: tuple[str, ...]  # normalised by parse_patterns
    channel_id: str
    min_amount: Decimal | None = None
    max_amount: Decimal | None = None
    currency: str | None = None  # ISO code, upper-case
    billable_only: bool = False
    counterparty: str | None = None  # matched case-insensitively, whitespace collapsed
    paused: bool = False
    collapse_at: int | None = DEFAULT_COLLAPSE_AT  # None: `collapse off`, every message on its own
    urgent: bool = False  # posts at once, even in the channel's quiet hours


def collapse_of(rules: Iterable[Rule]) -> int | None:
    """The burst size at which a channel's deliveries of these rules collapse: the smallest asked,
    and never (None) when any of them said `collapse off`."""
    sizes = [rule.collapse_at for rule in rules]
    if not sizes or any(size is None for size in sizes):
        return None
    return min(size for size in sizes if size is not None)


@dataclass(frozen=True, slots=True)
class Target:
    channel_id: str
    rule_ids: tuple[int, ...]  # every rule that sent the event to this channel
    collapse_at: int | None = DEFAULT_COLLAPSE_AT  # collapse_of the rules that matched
    urgent: bool = False  # any of them is urgent


@dataclass(frozen=True, slots=True)
class RouteSpec:
    patterns: tuple[str, ...]
    channel_id: str
    channel_name: str | None
    min_amount: Decimal | None
    max_amount: Decimal | None
    currency: str | None
    billable_only: bool
    counterparty: str | None
    collapse_at: int | None = DEFAULT_COLLAPSE_AT
    urgent: bool = False
