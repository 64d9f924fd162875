"""Connecting a FreshBooks business to a workspace: OAuth, the business choice, setup, disconnect."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from connector.domain.clock import Clock
from connector.freshbooks.callbacks import CallbackRegistrar, webhook_url
from connector.freshbooks.client import Business, FreshBooksClient, FreshBooksError, Identity, TokenGrant
from connector.freshbooks.tokens import NoToken, TokenSource
from connector.slack.notify import Notifier
from storage import audit, connections, oauth
from storage.crypto import Cipher, DecryptionError
from storage.db import Database
from storage.oauth import StateProblem

log = logging.getLogger(__name__)

# Everything the connector reads; FreshBooks cannot add scopes to an existing grant (reference §7).
SCOPES = (
    "user:profile:read",
    "user:invoices:read",
    "user:payments:read",
    "user:bills:read",
    "user:bill_payments:read",
    "user:bill_vendors:read",
    "user:expenses:read",
    "user:clients:read",
)
STATE_TTL = dt.timedelta(minutes=10)
CHOICE_TTL = dt.timedelta(minutes=10)

_STATE_MESSAGES = {
    StateProblem.UNKNOWN: "This link is not valid. Run /freshbooks connect in Slack to get a new one.",
    StateProblem.USED: "This link was already used. Run /freshbooks connect in Slack to connect again.",
    StateProblem.EXPIRED: "This link has expired (links last 10 minutes). Run /freshbooks connect in Slack "
    "to get a new one.",
}


class ConnectError(Exception):
    """Shown to the person in the browser; nothing was stored."""


@dataclass(frozen=True, slots=True)
class Connected:
    connection_id: int
    business_name: str
    reconnected: bool


@dataclass(frozen=True, slots=True)
class ChooseBusiness:
    choice_token: str
    businesses: tuple[Business, ...]


@dataclass(frozen=True, slots=True)
class PendingConnect:
    """The return page's question: connect FreshBooks to this Slack workspace? Nothing is stored
    until the person confirms with a POST carrying `form_token`, from the browser holding
    `browser_nonce` in a cookie."""

    team_id: str
    workspace_name: str | None
    form_token: str
    browser_nonce: str


NOT_FROM_THIS_PAGE = (
    "This confirmation did not come from the page this browser was shown, so nothing was connected. "
    "Run /freshbooks connect in Slack to start again."
)


@dataclass(frozen=True, slots=True)
class OAuthConfig:
    client_id: str
    client_secret: str
    auth_url: str
    redirect_uri: str


def authorize_url(config: OAuthConfig, state: str) -> str:
    query = urlencode(
        {
            "client_id": config.client_id,
            "response_type": "code",
            "redirect_uri": config.redirect_uri,
            "scope": " ".join(SCOPES),
            "state": state,
        }
    )
    return f"{config.auth_url}/oauth/authorize?{query}"


def _grant_to_json(grant: TokenGrant, identity: Identity) -> dict[str, object]:
    return {
        "access_token": grant.access_token,
        "refresh_token": grant.refresh_token,
        "expires_at": grant.expires_at.isoformat(),
        "identity_id": identity.identity_id,
        "businesses": [
            {"business_id": b.business_id, "account_id": b.account_id, "name": b.name, "role": b.role}
            for b in identity.businesses
        ],
    }


class ConnectService:
    def __init__(
        self,
        *,
        db: Database,
        cipher: Cipher,
        client: FreshBooksClient,
        config: OAuthConfig | None,
        clock: Clock,
        on_connected: Callable[[int, str], None],
        workspace_name: Callable[[str], str | None] = lambda _team_id: None,
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._client = client
        self._config = config
        self._clock = clock
        self._on_connected = on_connected
        self._workspace_name = workspace_name  # team id -> the name Slack shows, when it says

    def _require_config(self) -> OAuthConfig:
        if self._config is None:
            raise ConnectError(
                "FreshBooks is not configured on this server yet: set PUBLIC_URL, FRESHBOOKS_CLIENT_ID and "
                "FRESHBOOKS_CLIENT_SECRET."
            )
        return self._config

    def start(self, *, team_id: str, user_id: str) -> str:
        """The FreshBooks authorize URL for this user, with a fresh single-use state."""
        config = self._require_config()
        now = self._clock()
        with self._db.session() as session:
            workspace = connections.ensure_workspace(session, team_id=team_id, now=now)
            state = oauth.create_state(
                session, workspace_id=workspace.id, slack_user_id=user_id, now=now, ttl=STATE_TTL
            )
        return authorize_url(config, state)

    def review(self, *, state: str) -> PendingConnect:
        """The OAuth redirect came back: which workspace this link was made for, and the tokens
        of the confirmation form. Reads only: the state stays unused and the code unexchanged, so
        a link someone else made (an attacker's workspace) connects nothing unless confirmed."""
        self._require_config()
        with self._db.read() as session:
            found = oauth.peek_state(session, state, now=self._clock())
            team_id = (
                connections.team_of_workspace(session, found.workspace_id)
                if not isinstance(found, StateProblem)
                else None
            )
        if isinstance(found, StateProblem):
            raise ConnectError(_STATE_MESSAGES[found])
        nonce = secrets.token_urlsafe(24)
        # Encrypted (Fernet authenticates it): only this server can make one, for this state.
        form_token = self._cipher.encrypt_json({"state": _digest(state), "nonce": _digest(nonce)})
        return PendingConnect(
            team_id=team_id or "",
            workspace_name=self._workspace_name(team_id) if team_id else None,
            form_token=form_token,
            browser_nonce=nonce,
        )

    def confirm(
        self, *, state: str, code: str | None, form_token: str, browser_nonce: str, cancel: bool = False
    ) -> Connected | ChooseBusiness | None:
        """The person confirmed (or cancelled) on the return page: only now is anything used or
        stored. None when cancelled (the link is spent)."""
        if not self._form_matches(state, form_token, browser_nonce):
            raise ConnectError(NOT_FROM_THIS_PAGE)
        if cancel:
            with self._db.session() as session:
                oauth.claim_state(session, state, now=self._clock())
            return None
        return self.complete(state=state, code=code, error=None)

    def _form_matches(self, state: str, form_token: str, browser_nonce: str) -> bool:
        try:
            signed = self._cipher.decrypt_json(form_token)
        except (DecryptionError, ValueError, UnicodeError):
            return False
        if not isinstance(signed, dict) or not browser_nonce:
            return False
        same_state = hmac.compare_digest(str(signed.get("state", "")), _digest(state))
        same_browser = hmac.compare_digest(str(signed.get("nonce", "")), _digest(browser_nonce))
        return same_state and same_browser

    def complete(self, *, state: str, code: str | None, error: str | None) -> Connected | ChooseBusiness:
        """The OAuth redirect: claim the state, exchange the code, read the identity."""
        config = self._require_config()
        now = self._clock()
        with self._db.session() as session:
            claimed = oauth.claim_state(session, state, now=now)
        if isinstance(claimed, StateProblem):
            raise ConnectError(_STATE_MESSAGES[claimed])
        if error or not code:
            raise ConnectError("FreshBooks did not authorize the connection, so nothing was connected.")
        try:
            grant = self._client.exchange_code(
                code=code,
                redirect_uri=config.redirect_uri,
                client_id=config.client_id,
                client_secret=config.client_secret,
                now=now,
            )
            identity = self._client.identity(token=grant.access_token)
        except FreshBooksError as exc:
            log.warning("FreshBooks code exchange failed: %s", exc.kind)
            raise ConnectError(
                "FreshBooks did not accept this authorization (codes are valid for a few minutes and "
                "only once). Run /freshbooks connect in Slack to try again."
            ) from None
        if not identity.businesses:
            raise ConnectError("This FreshBooks login has no business with accounting to connect.")
        if len(identity.businesses) == 1:
            return self._finish(
                claimed.workspace_id, claimed.slack_user_id, grant, identity, identity.businesses[0]
            )
        with self._db.session() as session:
            choice = oauth.park_grant(
                session,
                self._cipher,
                state_id=claimed.id,
                grant=_grant_to_json(grant, identity),
                now=now,
                ttl=CHOICE_TTL,
            )
        return ChooseBusiness(choice_token=choice, businesses=identity.businesses)

    def choose(self, *, choice_token: str, business_id: int) -> Connected:
        """The user picked one of several businesses (never guessed for them)."""
        with self._db.session() as session:
            parked = oauth.claim_grant(session, self._cipher, choice_token, now=self._clock())
        if isinstance(parked, StateProblem):
            raise ConnectError(_STATE_MESSAGES[parked])
        raw = parked.grant
        businesses = tuple(Business(**b) for b in raw["businesses"])
        business = next((b for b in businesses if b.business_id == business_id), None)
        if business is None:
            raise ConnectError("That business is not one this FreshBooks login can connect.")
        grant = TokenGrant(
            access_token=raw["access_token"],
            refresh_token=raw["refresh_token"],
            expires_at=dt.datetime.fromisoformat(raw["expires_at"]),
            scope="",
        )
        identity = Identity(identity_id=int(raw["identity_id"]), email=None, businesses=businesses)
        return self._finish(parked.workspace_id, parked.slack_user_id, grant, identity, business)

    def _finish(
        self, workspace_id: int, user_id: str, grant: TokenGrant, identity: Identity, business: Business
    ) -> Connected:
        now = self._clock()
        with self._db.session() as session:
            connection, created = connections.upsert_connection(
                session,
                self._cipher,
                workspace_id=workspace_id,
                account_id=business.account_id,
                business_id=business.business_id,
                business_name=business.name,
                identity_id=identity.identity_id,
                access_token=grant.access_token,
                refresh_token=grant.refresh_token,
                token_expires_at=grant.expires_at,
                connected_by_user_id=user_id,
                now=now,
            )
            audit.record(
                session,
                self._cipher,
                kind="connection",
                outcome="connected" if created else "reconnected",
                now=now,
                workspace_id=workspace_id,
                connection_id=connection.id,
                actor=user_id,
            )
            connection_id = connection.id
        log.info(
            "freshbooks connected",
            extra={"context": {"connection_id": connection_id, "reconnected": not created}},
        )
        self._on_connected(connection_id, user_id)
        return Connected(connection_id=connection_id, business_name=business.name, reconnected=not created)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


class ConnectionSetup:
    """After a connect: register and verify the callbacks, then tell the user how it went."""

    def __init__(self, *, db: Database, registrar: CallbackRegistrar | None, notifier: Notifier) -> None:
        self._db = db
        self._registrar = registrar
        self._notifier = notifier

    def run(self, connection_id: int, user_id: str) -> None:
        with self._db.session() as session:
            team_id, _ = connections.team_of(session, connection_id)
        if self._registrar is None:
            text = "FreshBooks is connected, but PUBLIC_URL is not set, so no webhooks could be registered."
        else:
            try:
                health = self._registrar.ensure_all(connection_id)
            except (FreshBooksError, NoToken) as exc:
                log.warning(
                    "connection setup failed: %s", exc, extra={"context": {"connection_id": connection_id}}
                )
                text = (
                    "FreshBooks is connected, but registering its webhooks failed. The connector retries "
                    "every 15 minutes; `/freshbooks status` shows progress."
                )
            else:
                if health.healthy:
                    text = (
                        f":white_check_mark: FreshBooks is connected and live: {health.verified} of "
                        f"{health.expected} webhooks verified. Events will now reach Slack."
                    )
                else:
                    text = (
                        f":warning: FreshBooks is connected, but only {health.verified} of {health.expected} "
                        "webhooks are verified yet. The connector retries every 15 minutes; "
                        "`/freshbooks status` shows progress."
                    )
        self._notifier.tell_user(team_id=team_id, user_id=user_id, text=text)


@dataclass(frozen=True, slots=True)
class DisconnectResult:
    business_names: tuple[str, ...]
    problems: tuple[str, ...]


class DisconnectService:
    def __init__(
        self,
        *,
        db: Database,
        cipher: Cipher,
        client: FreshBooksClient,
        tokens: TokenSource,
        public_url: str | None,
        clock: Clock,
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._client = client
        self._tokens = tokens
        self._public_url = public_url
        self._clock = clock

    def disconnect(self, *, team_id: str, user_id: str) -> DisconnectResult:
        """Delete our callbacks at FreshBooks, wipe the tokens; keep the inbox, events and audit trail."""
        with self._db.session() as session:
            targets = [
                (c.id, c.workspace_id, c.account_id, self._name(c.business_name_enc, c.account_id),
                 self._cipher.decrypt(c.webhook_token_enc))
                for c in connections.connections_of_team(session, team_id)
            ]  # fmt: skip
        names: list[str] = []
        problems: list[str] = []
        for connection_id, workspace_id, account_id, name, token in targets:
            names.append(name)
            try:
                self._delete_callbacks(connection_id, account_id, token)
            except (FreshBooksError, NoToken) as exc:
                # The webhook URL stops answering (404) once disconnected, so leftovers are harmless.
                problems.append(f"{name}: could not remove its webhooks at FreshBooks ({exc})")
            self._tokens.forget(connection_id)
            with self._db.session() as session:
                connections.mark_disconnected(session, connection_id=connection_id, now=self._clock())
                audit.record(
                    session,
                    self._cipher,
                    kind="connection",
                    outcome="disconnected",
                    now=self._clock(),
                    workspace_id=workspace_id,
                    connection_id=connection_id,
                    actor=user_id,
                )
        return DisconnectResult(business_names=tuple(names), problems=tuple(problems))

    def _name(self, business_name_enc: str | None, account_id: str) -> str:
        return self._cipher.decrypt(business_name_enc) if business_name_enc else account_id

    def _delete_callbacks(self, connection_id: int, account_id: str, token: str) -> None:
        if not self._public_url:
            return  # nothing can have been registered without a public URL
        uri = webhook_url(self._public_url, token)
        existing = self._tokens.call(
            connection_id, lambda access: self._client.list_callbacks(token=access, account_id=account_id)
        )

        def delete(callback_id: int) -> None:
            self._tokens.call(
                connection_id,
                lambda access: self._client.delete_callback(
                    token=access, account_id=account_id, callback_id=callback_id
                ),
            )

        # Only ours: the account may hold other integrations' callbacks too.
        for callback in existing:
            if callback.uri == uri:
                delete(callback.callback_id)
