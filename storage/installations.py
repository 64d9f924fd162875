"""Slack installs (multi-workspace mode): slack_sdk's SQLAlchemy stores, with every token encrypted.

The one place that queries slack_installations, slack_bots and slack_oauth_states (tables created
by migration 0005, not by the stores' `create_tables`). slack_sdk's SQLAlchemyInstallationStore
writes its columns as given, so EncryptedInstallationStore encrypts the tokens before handing an
installation over and decrypts what it reads back. The token refresh of connector.slack.slack_tokens
works on single rows (lease, write by row id), which the InstallationStore API does not offer.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import logging
import secrets
from dataclasses import dataclass, field
from logging import Logger
from typing import TypeVar

from slack_sdk.oauth.installation_store import Bot, Installation, InstallationStore
from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore
from sqlalchemy import Engine, delete, or_, select, update
from sqlalchemy.orm import Session

from connector.domain.clock import Clock
from storage.crypto import Cipher
from storage.models import SlackBot, SlackInstallation, SlackOAuthState

log = logging.getLogger(__name__)

# Every secret an Installation can carry; the incoming webhook URL posts without any other secret.
INSTALLATION_SECRETS = (
    "bot_token",
    "bot_refresh_token",
    "user_token",
    "user_refresh_token",
    "incoming_webhook_url",
)
BOT_SECRETS = ("bot_token", "bot_refresh_token")

Sealed = TypeVar("Sealed", Installation, Bot)


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    """slack_sdk's columns are naive UTC (it strips the zone before writing)."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    return None if moment is None else moment.replace(tzinfo=dt.UTC)


class EncryptedInstallationStore(InstallationStore):
    """slack_sdk's SQLAlchemyInstallationStore with the tokens encrypted at rest.

    What Bolt's OAuth flow saves goes through here; reads give back plaintext tokens. Lookups and
    deletes are slack_sdk's own (keyed by client_id, enterprise_id, team_id, user_id).
    """

    def __init__(self, *, client_id: str, engine: Engine, cipher: Cipher) -> None:
        self.client_id = client_id
        self._cipher = cipher
        self._inner = SQLAlchemyInstallationStore(client_id=client_id, engine=engine, logger=log)

    @property
    def logger(self) -> Logger:
        return log

    def _convert(self, value: Sealed, fields: tuple[str, ...], *, encrypt: bool) -> Sealed:
        converted = copy.copy(value)  # never change the caller's object (Bolt keeps using it)
        for name in fields:
            text = getattr(value, name, None)
            if text is not None:
                setattr(
                    converted, name, self._cipher.encrypt(text) if encrypt else self._cipher.decrypt(text)
                )
        return converted

    def save(self, installation: Installation) -> None:
        self._inner.save(self._convert(installation, INSTALLATION_SECRETS, encrypt=True))

    def save_bot(self, bot: Bot) -> None:
        self._inner.save_bot(self._convert(bot, BOT_SECRETS, encrypt=True))

    def find_bot(
        self, *, enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None = False
    ) -> Bot | None:
        bot = self._inner.find_bot(
            enterprise_id=enterprise_id, team_id=team_id, is_enterprise_install=is_enterprise_install
        )
        return None if bot is None else self._convert(bot, BOT_SECRETS, encrypt=False)

    def find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        found = self._inner.find_installation(
            enterprise_id=enterprise_id,
            team_id=team_id,
            user_id=user_id,
            is_enterprise_install=is_enterprise_install,
        )
        return None if found is None else self._convert(found, INSTALLATION_SECRETS, encrypt=False)

    def delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        self._inner.delete_bot(enterprise_id=enterprise_id, team_id=team_id)

    def delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        self._inner.delete_installation(enterprise_id=enterprise_id, team_id=team_id, user_id=user_id)


def _state_hash(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


class HashedOAuthStateStore(SQLAlchemyOAuthStateStore):
    """slack_sdk's SQLAlchemy state store (its table), with three changes: the row holds the state's
    hash, so a database reader cannot finish someone's install; consuming is one DELETE whose row
    count decides, so two requests racing with the same state cannot both win (slack_sdk selects,
    then deletes); and time comes from the injected clock. Expired states are purged on issue."""

    def __init__(self, *, engine: Engine, clock: Clock, expiration_seconds: int = 600) -> None:
        super().__init__(expiration_seconds=expiration_seconds, engine=engine, logger=log)
        self._clock = clock

    def issue(self, *args: object, **kwargs: object) -> str:
        state = secrets.token_urlsafe(32)
        now = _naive_utc(self._clock())
        table = self.oauth_states
        with self.engine.begin() as conn:
            conn.execute(table.delete().where(table.c.expire_at <= now))
            conn.execute(
                table.insert(),
                {
                    "state": _state_hash(state),
                    "expire_at": now + dt.timedelta(seconds=self.expiration_seconds),
                },
            )
        return state

    def consume(self, state: str) -> bool:
        table = self.oauth_states
        now = _naive_utc(self._clock())
        with self.engine.begin() as conn:
            result = conn.execute(
                table.delete().where(table.c.state == _state_hash(state), table.c.expire_at > now)
            )
        return bool(result.rowcount)


# -- the bot token of a workspace, for the refresh under a lease (connector.slack.slack_tokens) ------------


@dataclass(frozen=True, slots=True)
class StoredBot:
    """The bot credentials of a workspace's latest install, decrypted. Never logged (no repr)."""

    row_id: int
    team_id: str
    enterprise_id: str | None
    bot_user_id: str | None
    bot_id: str | None
    scopes: tuple[str, ...]
    installed_at: dt.datetime  # as stored (naive UTC): names the matching slack_bots row
    expires_at: dt.datetime | None  # aware UTC; None for a token that does not expire
    issued_at: dt.datetime | None  # aware UTC: when the token was issued (its lifetime scales the margin)
    token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)


def current_bot(session: Session, cipher: Cipher, *, client_id: str, team_id: str) -> StoredBot | None:
    """The newest install of `team_id` that has a bot token (what slack_sdk's find_installation picks)."""
    row = session.scalar(
        select(SlackInstallation)
        .where(
            SlackInstallation.client_id == client_id,
            SlackInstallation.team_id == team_id,
            SlackInstallation.bot_token.is_not(None),
        )
        .order_by(SlackInstallation.installed_at.desc(), SlackInstallation.id.desc())
        .limit(1)
    )
    if row is None or row.bot_token is None:
        return None
    return StoredBot(
        row_id=row.id,
        team_id=team_id,
        enterprise_id=row.enterprise_id,
        bot_user_id=row.bot_user_id,
        bot_id=row.bot_id,
        scopes=tuple(s for s in (row.bot_scopes or "").split(",") if s),
        installed_at=row.installed_at,
        expires_at=_aware(row.bot_token_expires_at),
        issued_at=row.bot_token_issued_at or _aware(row.installed_at),
        token=cipher.decrypt(row.bot_token),
        refresh_token=cipher.decrypt(row.bot_refresh_token) if row.bot_refresh_token else None,
    )


def take_refresh_lease(
    session: Session, *, row_id: int, owner: str, now: dt.datetime, until: dt.datetime
) -> bool:
    """Compare-and-swap: true for the one caller that may refresh this install's token now."""
    result = session.execute(
        update(SlackInstallation)
        .where(
            SlackInstallation.id == row_id,
            or_(
                SlackInstallation.refresh_lease_until.is_(None), SlackInstallation.refresh_lease_until <= now
            ),
        )
        .values(refresh_lease_owner=owner, refresh_lease_until=until)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release_refresh_lease(session: Session, *, row_id: int, owner: str) -> None:
    session.execute(
        update(SlackInstallation)
        .where(SlackInstallation.id == row_id, SlackInstallation.refresh_lease_owner == owner)
        .values(refresh_lease_owner=None, refresh_lease_until=None)
    )


def store_refreshed(
    session: Session,
    cipher: Cipher,
    *,
    bot: StoredBot,
    client_id: str,
    token: str,
    refresh_token: str,
    expires_at: dt.datetime,
    issued_at: dt.datetime,
) -> bool:
    """Write a refreshed token pair to the install row and its slack_bots twin; false if the install
    was deleted meanwhile (uninstalled).

    Written by row id whatever the row holds now: Slack revokes a refresh token when it is used, so
    of two refreshes with the same token at most one succeeds, and a success must never be dropped
    (even one that outlived its lease); its refresh token is the only one left that works.
    """
    values = {
        "bot_token": cipher.encrypt(token),
        "bot_refresh_token": cipher.encrypt(refresh_token),
        "bot_token_expires_at": _naive_utc(expires_at),
    }
    result = session.execute(
        update(SlackInstallation)
        .where(SlackInstallation.id == bot.row_id)
        .values({**values, "bot_token_issued_at": issued_at})
    )
    session.execute(
        update(SlackBot)
        .where(
            SlackBot.client_id == client_id,
            SlackBot.team_id == bot.team_id,
            SlackBot.installed_at == bot.installed_at,
        )
        .values(values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def forget_team(session: Session, *, client_id: str, team_id: str) -> int:
    """app_uninstalled / tokens_revoked: every stored install and bot of the workspace goes (its
    tokens no longer work); a reinstall stores a new one. Returns how many installs were removed."""
    removed = session.execute(
        delete(SlackInstallation).where(
            SlackInstallation.client_id == client_id, SlackInstallation.team_id == team_id
        )
    )
    session.execute(delete(SlackBot).where(SlackBot.client_id == client_id, SlackBot.team_id == team_id))
    return int(removed.rowcount)  # type: ignore[attr-defined]


def pending_states(session: Session) -> int:
    """How many install links are waiting to be used (tests; operators)."""
    return len(session.scalars(select(SlackOAuthState.id)).all())


def any_installed(session: Session, *, client_id: str) -> bool:
    """Whether the app holds a bot token for at least one workspace (the setup page)."""
    row = session.scalar(
        select(SlackInstallation.id)
        .where(SlackInstallation.client_id == client_id, SlackInstallation.bot_token.is_not(None))
        .limit(1)
    )
    return row is not None
