"""Routing rules as values: a saved rule, a route spec (a rule before it is saved), a target channel."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


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


@dataclass(frozen=True, slots=True)
class Target:
    channel_id: str
    rule_ids: tuple[int, ...]  # every rule that sent the event to this channel


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
