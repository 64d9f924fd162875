"""Routing rules: the one place that queries routing_rules."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from connector.domain.rules import RouteSpec, Rule
from storage.crypto import Cipher
from storage.models import RoutingRule


def _to_rule(row: RoutingRule, cipher: Cipher) -> Rule:
    return Rule(
        id=row.id,
        patterns=tuple(row.patterns),
        channel_id=row.channel_id,
        min_amount=Decimal(row.min_amount) if row.min_amount is not None else None,
        max_amount=Decimal(row.max_amount) if row.max_amount is not None else None,
        currency=row.currency,
        billable_only=row.billable_only,
        counterparty=cipher.decrypt(row.counterparty_enc) if row.counterparty_enc else None,
        paused=row.paused,
        collapse_at=row.collapse_at,
        urgent=row.urgent,
    )


def create_rule(
    session: Session,
    cipher: Cipher,
    *,
    workspace_id: int,
    connection_id: int,
    spec: RouteSpec,
    created_by: str,
    now: dt.datetime,
) -> Rule:
    row = RoutingRule(
        workspace_id=workspace_id,
        connection_id=connection_id,
        patterns=list(spec.patterns),
        min_amount=str(spec.min_amount) if spec.min_amount is not None else None,
        max_amount=str(spec.max_amount) if spec.max_amount is not None else None,
        currency=spec.currency,
        billable_only=spec.billable_only,
        counterparty_enc=cipher.encrypt(spec.counterparty) if spec.counterparty else None,
        channel_id=spec.channel_id,
        paused=False,
        collapse_at=spec.collapse_at,
        urgent=spec.urgent,
        created_by_user_id=created_by,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return _to_rule(row, cipher)


def get_rule(session: Session, cipher: Cipher, *, workspace_id: int, rule_id: int) -> Rule | None:
    """One rule of this workspace; another workspace's id reads as absent."""
    row = session.scalar(
        select(RoutingRule).where(RoutingRule.workspace_id == workspace_id, RoutingRule.id == rule_id)
    )
    return _to_rule(row, cipher) if row is not None else None


def update_rule(
    session: Session, cipher: Cipher, *, workspace_id: int, rule_id: int, spec: RouteSpec
) -> Rule | None:
    """Replace what a rule matches and where it posts (its paused state stays); None if this
    workspace has no such rule."""
    row = session.scalar(
        select(RoutingRule)
        .where(RoutingRule.workspace_id == workspace_id, RoutingRule.id == rule_id)
        .with_for_update()
    )
    if row is None:
        return None
    row.patterns = list(spec.patterns)
    row.min_amount = str(spec.min_amount) if spec.min_amount is not None else None
    row.max_amount = str(spec.max_amount) if spec.max_amount is not None else None
    row.currency = spec.currency
    row.billable_only = spec.billable_only
    row.counterparty_enc = cipher.encrypt(spec.counterparty) if spec.counterparty else None
    row.channel_id = spec.channel_id
    row.collapse_at = spec.collapse_at
    row.urgent = spec.urgent
    session.flush()
    return _to_rule(row, cipher)


def rules_of_workspace(session: Session, cipher: Cipher, workspace_id: int) -> list[Rule]:
    rows = session.scalars(
        select(RoutingRule).where(RoutingRule.workspace_id == workspace_id).order_by(RoutingRule.id)
    )
    return [_to_rule(row, cipher) for row in rows]


def channels_of_rules(session: Session, *, workspace_id: int) -> set[str]:
    return set(
        session.scalars(select(RoutingRule.channel_id).where(RoutingRule.workspace_id == workspace_id))
    )


def rules_of_connection(session: Session, cipher: Cipher, connection_id: int) -> list[Rule]:
    rows = session.scalars(
        select(RoutingRule).where(RoutingRule.connection_id == connection_id).order_by(RoutingRule.id)
    )
    return [_to_rule(row, cipher) for row in rows]


def delete_rule(session: Session, *, workspace_id: int, rule_id: int) -> bool:
    result = session.execute(
        delete(RoutingRule).where(RoutingRule.workspace_id == workspace_id, RoutingRule.id == rule_id)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def set_paused(session: Session, *, workspace_id: int, rule_id: int, paused: bool) -> bool:
    result = session.execute(
        update(RoutingRule)
        .where(RoutingRule.workspace_id == workspace_id, RoutingRule.id == rule_id)
        .values(paused=paused)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
