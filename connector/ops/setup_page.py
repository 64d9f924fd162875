"""The `/` page: where the setup stands, and the exact values to paste for the next step.

`gather_setup_state` reads the settings and the database into a `SetupState`; `render_setup_page`
is pure (state in, HTML out), and so is everything it calls. The page is public: it never shows a
secret or a webhook URL (those carry tokens), never a workspace or business name, never a count of
anything, and once every step is done it says only that the app is running and configured.
"""

from __future__ import annotations

import base64
import enum
import functools
import hashlib
import html
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import yaml
from sqlalchemy.exc import SQLAlchemyError

from connector.domain.events import SUPPORTED_EVENTS
from connector.domain.settings import Settings
from storage import connections, installations
from storage.db import Database
from storage.models import ConnectionStatus

# manifest.yml sits at the root of the source tree; an install without it gets the instructions alone.
MANIFEST_PATH = Path(__file__).resolve().parents[2] / "manifest.yml"
# What manifest.yml says where the operator's PUBLIC_URL goes.
MANIFEST_PLACEHOLDER = "https://example.com"
# Slack's "Create New App" page; `manifest_json` prefills the "From an app manifest" form.
SLACK_CREATE_APP_URL = "https://api.slack.com/apps?new_app=1"
CONNECT_COMMAND = "/freshbooks connect"
DEMO_COMMAND = "fbslack demo"


class StepStatus(enum.StrEnum):
    DONE = "done"
    WARN = "warn"  # works, but not as production should have it; does not hold up the next step
    TODO = "todo"
    WAITING = "waiting"  # nothing to do but wait (FreshBooks verifying the webhooks)
    UNKNOWN = "unknown"  # could not be checked (the database does not answer)


_FINISHED = (StepStatus.DONE, StepStatus.WARN)


class Connections(enum.StrEnum):
    """The FreshBooks side, all connections taken together (the page names none of them)."""

    NONE = "none"
    NEEDS_RECONNECT = "needs_reconnect"
    UNVERIFIED = "unverified"  # connected, FreshBooks has not verified every webhook yet
    VERIFIED = "verified"  # at least one connection receives every event
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class SetupState:
    """What the page reports, gathered once per request. Holds no secret: only whether each is set."""

    database_dialect: str  # "sqlite", "postgresql"
    database_ok: bool
    encryption_keys_set: bool  # False: the development key in DATA_DIR
    public_url: str | None
    signing_secret_set: bool
    bot_token_set: bool  # one workspace
    client_pair_set: bool  # many workspaces (SLACK_CLIENT_ID and SLACK_CLIENT_SECRET)
    workspace_installed: bool | None  # None: not known (the database does not answer)
    freshbooks_credentials_set: bool
    connections: Connections
    manifest_template: str | None  # manifest.yml as shipped; None when this install has none

    @property
    def https(self) -> bool:
        return (self.public_url or "").startswith("https://")

    @property
    def slack_configured(self) -> bool:
        return self.signing_secret_set and (self.bot_token_set or self.client_pair_set)


# Blocks of a step's instructions -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Text:
    """A paragraph; `code` in backticks is shown as code."""

    text: str


@dataclass(frozen=True, slots=True)
class Value:
    """A value to paste somewhere, with a copy button. `element_id` is what the button copies from."""

    element_id: str
    label: str
    value: str
    multiline: bool = False


@dataclass(frozen=True, slots=True)
class LinkButton:
    element_id: str
    label: str
    href: str


Block = Text | Value | LinkButton


@dataclass(frozen=True, slots=True)
class Step:
    key: str
    title: str
    status: StepStatus
    summary: str
    how: tuple[Block, ...] = ()  # shown for the next step only


# Values built from PUBLIC_URL --------------------------------------------------------------------


def slack_request_url(public_url: str) -> str:
    """Events, the slash command and interactivity all go to the one Bolt route (manifest.yml)."""
    return f"{public_url}/slack/events"


def slack_redirect_url(public_url: str) -> str:
    return f"{public_url}/slack/oauth_redirect"


def slack_install_url(public_url: str) -> str:
    # Through PUBLIC_URL, never relative: the install's state cookie must be set on the host Slack
    # sends the installer back to.
    return f"{public_url}/slack/install"


def freshbooks_redirect_uri(public_url: str) -> str:
    return f"{public_url}/freshbooks/oauth/callback"


def filled_manifest(template: str, public_url: str) -> str:
    """manifest.yml with this server's address in every URL, and without the 'replace example.com'
    preamble (nothing is left to replace)."""
    lines = template.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip() and not line.startswith("#")), 0)
    header = f"# Slack app manifest for FreshBooks for Slack at {public_url}\n"
    return header + "\n".join(lines[first:]).replace(MANIFEST_PLACEHOLDER, public_url) + "\n"


def create_app_link(manifest_yaml: str) -> str:
    """Slack's create-app page with the manifest prefilled (as JSON, in the query string)."""
    manifest = yaml.safe_load(manifest_yaml)
    compact = json.dumps(manifest, separators=(",", ":"), ensure_ascii=False)
    return f"{SLACK_CREATE_APP_URL}&manifest_json={quote(compact, safe='')}"


# The steps ----------------------------------------------------------------------------------------


def _database(state: SetupState) -> Step:
    name = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}.get(
        state.database_dialect, state.database_dialect
    )
    if state.database_ok:
        return Step("database", "Database", StepStatus.DONE, f"{name} answers and its schema is up to date.")
    return Step(
        "database",
        "Database",
        StepStatus.TODO,
        f"The {name} database does not answer.",
        (Text("Check that it is running and that `DATABASE_URL` points at it; `fbslack doctor` says why."),),
    )


def _encryption(state: SetupState) -> Step:
    if state.encryption_keys_set:
        return Step(
            "encryption", "Encryption key", StepStatus.DONE, "`ENCRYPTION_KEYS` encrypts tokens and payloads."
        )
    return Step(
        "encryption",
        "Encryption key",
        StepStatus.WARN,
        "The development key kept in `DATA_DIR` encrypts tokens and payloads: fine for a trial. "
        "For production, set `ENCRYPTION_KEYS` (make a key with `fbslack keys generate`).",
    )


def _public_url(state: SetupState) -> Step:
    title = "Public https address"
    if state.public_url is None:
        return Step(
            "public-url",
            title,
            StepStatus.TODO,
            "Set `PUBLIC_URL` to the https address where Slack and FreshBooks reach this server.",
            (
                Text(
                    "Every URL you paste into Slack and FreshBooks is built from it. In production that is "
                    "the address of the TLS proxy in front of the app; for a trial on your own machine, an "
                    "https tunnel to this server's port (the README shows one)."
                ),
                Text("Set it and restart `fbslack serve`; this page then shows the next step."),
            ),
        )
    if not state.https:
        return Step(
            "public-url",
            title,
            StepStatus.TODO,
            f"`PUBLIC_URL` is `{state.public_url}`, but Slack and FreshBooks only call https addresses.",
            (
                Text(
                    "Put TLS in front of the app (a reverse proxy, or an https tunnel for a trial) and set "
                    "`PUBLIC_URL` to its https address, then restart `fbslack serve`."
                ),
            ),
        )
    return Step(
        "public-url",
        title,
        StepStatus.DONE,
        f"Slack and FreshBooks reach this server at `{state.public_url}`.",
    )


def _slack_app_how(state: SetupState) -> tuple[Block, ...]:
    if not (state.public_url and state.https):
        return (Text("This needs an https `PUBLIC_URL` first: the manifest's URLs are built from it."),)
    url = state.public_url
    blocks: list[Block] = []
    if state.manifest_template is not None:
        manifest = filled_manifest(state.manifest_template, url)
        blocks += [
            Text(
                "Open Slack's create-app page with this server's manifest filled in, pick the workspace "
                "to develop in, check the summary and press Create:"
            ),
            LinkButton("create-app", "Create the Slack app", create_app_link(manifest)),
            Text("Or choose Create New App > From an app manifest at api.slack.com/apps and paste this:"),
            Value("manifest", "Manifest (YAML)", manifest, multiline=True),
        ]
    else:
        blocks.append(
            Text(
                "Choose Create New App > From an app manifest at api.slack.com/apps and paste "
                f"`manifest.yml` from the source, with every `{MANIFEST_PLACEHOLDER}` replaced by `{url}`."
            )
        )
    blocks += [
        Text(
            "For one workspace only (`SLACK_BOT_TOKEN`, which cannot be renewed), change "
            "`token_rotation_enabled: true` to `false` before you create the app."
        ),
        Value(
            "slack-request-url", "Request URL (events, slash command, interactivity)", slack_request_url(url)
        ),
        Value("slack-redirect-url", "OAuth redirect URL", slack_redirect_url(url)),
        Text(
            "Slack checks the request URL the moment the app is created, before you can copy its signing "
            "secret. Until `SLACK_SIGNING_SECRET` is set, this server answers that one check (it echoes "
            "Slack's challenge and nothing else), so it passes while the server runs at `PUBLIC_URL`. "
            "If Slack says the URL did not respond, start the server, then in the app's settings open "
            "Event Subscriptions and press Retry next to the Request URL."
        ),
        Text(
            "Then copy the Signing Secret (Basic Information > App Credentials) into "
            "`SLACK_SIGNING_SECRET` and restart."
        ),
    ]
    return tuple(blocks)


def _slack_app(state: SetupState) -> Step:
    title = "Slack app"
    if state.signing_secret_set:
        return Step("slack-app", title, StepStatus.DONE, "`SLACK_SIGNING_SECRET` is set.")
    return Step(
        "slack-app",
        title,
        StepStatus.TODO,
        "Create the Slack app from its manifest, then set `SLACK_SIGNING_SECRET`.",
        _slack_app_how(state),
    )


def _slack_credentials(state: SetupState) -> Step:
    title = "Slack credentials"
    if state.bot_token_set:
        return Step("slack-mode", title, StepStatus.DONE, "One workspace: `SLACK_BOT_TOKEN` is set.")
    if state.client_pair_set:
        return Step(
            "slack-mode",
            title,
            StepStatus.DONE,
            "Many workspaces: `SLACK_CLIENT_ID` and `SLACK_CLIENT_SECRET` are set.",
        )
    return Step(
        "slack-mode",
        title,
        StepStatus.TODO,
        "Set `SLACK_CLIENT_ID` and `SLACK_CLIENT_SECRET` (many workspaces) "
        "or `SLACK_BOT_TOKEN` (one workspace).",
        (
            Text(
                "Many workspaces (the manifest's default): copy the Client ID and Client Secret (Basic "
                "Information > App Credentials) into `SLACK_CLIENT_ID` and `SLACK_CLIENT_SECRET`, "
                "and restart."
            ),
            Text(
                "One workspace (an app created with `token_rotation_enabled: false`): Install App > Install "
                "to Workspace, copy the Bot User OAuth Token into `SLACK_BOT_TOKEN`, and restart."
            ),
        ),
    )


def _workspace(state: SetupState) -> Step:
    title = "Installed in Slack"
    if state.bot_token_set:
        return Step(
            "workspace", title, StepStatus.DONE, "One workspace: the bot token comes from installing the app."
        )
    if not state.client_pair_set:
        return Step("workspace", title, StepStatus.TODO, "Install the app once its credentials are set.")
    if state.workspace_installed is None:
        return Step("workspace", title, StepStatus.UNKNOWN, "Not checked: the database does not answer.")
    if state.workspace_installed:
        return Step("workspace", title, StepStatus.DONE, "The app is installed in a workspace.")
    if not state.public_url:
        how: tuple[Block, ...] = (
            Text("Installing needs `PUBLIC_URL`: Slack sends the installer back to it."),
        )
    else:
        install = slack_install_url(state.public_url)
        how = (
            LinkButton("add-to-slack", "Add to Slack", install),
            Text(
                "Open it in a browser signed in to the workspace to install into: Slack asks for approval "
                "and sends you back here. Each visit gives a link that works once, for 10 minutes. Anyone "
                "who administers a workspace can install from this address:"
            ),
            Value("install-url", "Install address", install),
        )
    return Step("workspace", title, StepStatus.TODO, "Install the app into a Slack workspace.", how)


def _freshbooks_credentials(state: SetupState) -> Step:
    title = "FreshBooks app"
    if state.freshbooks_credentials_set:
        return Step(
            "freshbooks-app",
            title,
            StepStatus.DONE,
            "`FRESHBOOKS_CLIENT_ID` and `FRESHBOOKS_CLIENT_SECRET` are set.",
        )
    if state.public_url is None:
        how: tuple[Block, ...] = (Text("This needs `PUBLIC_URL` first: the redirect URI is built from it."),)
    else:
        how = (
            Text(
                "In the FreshBooks developer portal, create an app with this redirect URI "
                "(https, no query string):"
            ),
            Value(
                "freshbooks-redirect-uri",
                "FreshBooks redirect URI",
                freshbooks_redirect_uri(state.public_url),
            ),
            Text(
                "Copy its Client ID and Client Secret into `FRESHBOOKS_CLIENT_ID` and "
                "`FRESHBOOKS_CLIENT_SECRET`, and restart."
            ),
        )
    return Step(
        "freshbooks-app",
        title,
        StepStatus.TODO,
        "Register a FreshBooks app and set `FRESHBOOKS_CLIENT_ID` and `FRESHBOOKS_CLIENT_SECRET`.",
        how,
    )


_CONNECT_HOW: tuple[Block, ...] = (
    Text("In Slack, a workspace admin runs this command and follows the link it answers with:"),
    Value("connect-command", "Slack command", CONNECT_COMMAND),
    Text(
        "The connector then registers its webhooks at FreshBooks, which verifies each of them; the admin "
        "is told in Slack when events are flowing."
    ),
)


def _freshbooks_connection(state: SetupState) -> Step:
    key, title = "freshbooks-connection", "FreshBooks connected"
    match state.connections:
        case Connections.VERIFIED:
            return Step(key, title, StepStatus.DONE, "FreshBooks sends its events here.")
        case Connections.UNVERIFIED:
            return Step(
                key,
                title,
                StepStatus.WAITING,
                "Connected; FreshBooks has not verified every webhook yet. That usually takes a minute: "
                "`/freshbooks status` in Slack shows which are missing.",
            )
        case Connections.NEEDS_RECONNECT:
            return Step(
                key,
                title,
                StepStatus.TODO,
                "FreshBooks stopped renewing this app's access: connect again from Slack.",
                _CONNECT_HOW,
            )
        case Connections.UNKNOWN:
            return Step(key, title, StepStatus.UNKNOWN, "Not checked: the database does not answer.")
        case Connections.NONE:
            return Step(
                key, title, StepStatus.TODO, "Connect a FreshBooks business from Slack.", _CONNECT_HOW
            )


def setup_steps(state: SetupState) -> tuple[Step, ...]:
    """Every step in the order the README follows. Pure."""
    return (
        _database(state),
        _encryption(state),
        _public_url(state),
        _slack_app(state),
        _slack_credentials(state),
        _workspace(state),
        _freshbooks_credentials(state),
        _freshbooks_connection(state),
    )


def setup_complete(steps: Iterable[Step]) -> bool:
    return all(step.status in _FINISHED for step in steps)


def next_step(steps: Iterable[Step]) -> Step | None:
    return next((step for step in steps if step.status not in _FINISHED), None)


# HTML ---------------------------------------------------------------------------------------------

# Inline only: no external asset, so the page works offline and leaks no visit to a third party.
_STYLE = """
:root{color-scheme:light dark;--fg:#1d1c1d;--muted:#616061;--bg:#fff;--card:#f8f8f8;--line:#ddd;
--done:#007a5a;--todo:#1264a3;--warn:#b35c00;--wait:#6b4fa8}
@media (prefers-color-scheme:dark){:root{--fg:#e8e8e8;--muted:#a8a8a8;--bg:#1a1d21;--card:#222529;
--line:#3a3d42;--done:#3fb68b;--todo:#5aa7e6;--warn:#e8a03c;--wait:#b39ddb}}
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
color:var(--fg);background:var(--bg)}
main{max-width:46rem;margin:0 auto;padding:1rem}
h1{font-size:1.5rem;margin:.5rem 0}
h2{font-size:1.05rem;margin:0}
p{margin:.5rem 0}
code{font:.9em ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-wrap:anywhere}
ol.steps{list-style:none;padding:0;margin:1rem 0}
.step{border:1px solid var(--line);border-left-width:.3rem;border-radius:.4rem;padding:.6rem .8rem;
margin:.6rem 0;background:var(--card)}
.step.done{border-left-color:var(--done)}.step.todo{border-left-color:var(--todo)}
.step.warn{border-left-color:var(--warn)}.step.waiting,.step.unknown{border-left-color:var(--wait)}
.step.next{border-width:2px;border-left-width:.4rem}
.head{display:flex;gap:.5rem;align-items:baseline;flex-wrap:wrap}
.badge{font-size:.75rem;font-weight:600;text-transform:uppercase;letter-spacing:.03em}
.done .badge{color:var(--done)}.todo .badge{color:var(--todo)}.warn .badge{color:var(--warn)}
.waiting .badge,.unknown .badge{color:var(--wait)}
.summary{color:var(--muted)}.next .summary{color:var(--fg)}
.value{margin:.6rem 0}
.value label{display:block;font-size:.85rem;color:var(--muted)}
.row{display:flex;gap:.4rem;align-items:flex-start}
.row pre{flex:1;min-width:0;margin:0;padding:.4rem .5rem;border:1px solid var(--line);border-radius:.3rem;
background:var(--bg);font:.85rem/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
white-space:pre-wrap;overflow-wrap:anywhere}
.row pre.multiline{max-height:16rem;overflow:auto;white-space:pre}
button,a.button{font:inherit;font-size:.9rem;padding:.35rem .7rem;border-radius:.3rem;cursor:pointer;
border:1px solid var(--todo);background:var(--bg);color:var(--todo);text-decoration:none;white-space:nowrap}
a.button{display:inline-block;margin:.3rem 0;background:var(--todo);color:#fff;font-weight:600}
.try{border:1px dashed var(--line);border-radius:.4rem;padding:.6rem .8rem}
footer{color:var(--muted);font-size:.85rem;margin-top:1.5rem}
"""

# Copy buttons: the Clipboard API where the page is a secure context (https, localhost), a hidden
# textarea and execCommand elsewhere (a plain-http address on the local network).
_SCRIPT = """
function copyByTextarea(text) {
  var area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.appendChild(area);
  area.select();
  var copied = false;
  try { copied = document.execCommand("copy"); } catch (error) { copied = false; }
  document.body.removeChild(area);
  return copied;
}
document.querySelectorAll("button[data-copy]").forEach(function (button) {
  button.addEventListener("click", function () {
    var text = document.getElementById(button.getAttribute("data-copy")).textContent;
    var say = function (word) {
      button.textContent = word;
      setTimeout(function () { button.textContent = "Copy"; }, 1500);
    };
    var fallback = function () { say(copyByTextarea(text) ? "Copied" : "Select and copy"); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { say("Copied"); }, fallback);
    } else {
      fallback();
    }
  });
});
"""


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode() + "'"


# The page runs its own inline script and style and nothing else.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; style-src {_csp_hash(_STYLE)}; script-src {_csp_hash(_SCRIPT)}; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_CODE = re.compile(r"`([^`]+)`")
_BADGES = {
    StepStatus.DONE: "Done",
    StepStatus.WARN: "Check",
    StepStatus.TODO: "To do",
    StepStatus.WAITING: "Waiting",
    StepStatus.UNKNOWN: "Unknown",
}


def _inline(text: str) -> str:
    """Escaped text, with `backticked` parts as code."""
    return _CODE.sub(r"<code>\1</code>", html.escape(text))


def _attr(value: str) -> str:
    return html.escape(value, quote=True)


def _block(block: Block) -> str:
    if isinstance(block, Text):
        return f"<p>{_inline(block.text)}</p>"
    if isinstance(block, LinkButton):
        return (
            f"<p><a class='button' id='{_attr(block.element_id)}' href='{_attr(block.href)}' "
            f"target='_blank' rel='noopener noreferrer'>{html.escape(block.label)}</a></p>"
        )
    element = _attr(block.element_id)
    css = " class='multiline'" if block.multiline else ""
    return (
        f"<div class='value'><label for='{element}'>{html.escape(block.label)}</label><div class='row'>"
        f"<pre id='{element}'{css}>{html.escape(block.value)}</pre>"
        f"<button type='button' data-copy='{element}' aria-label='Copy {_attr(block.label)}'>Copy</button>"
        "</div></div>"
    )


def _step(step: Step, *, is_next: bool) -> str:
    css = f"step {step.status.value}" + (" next" if is_next else "")
    how = "".join(_block(block) for block in step.how) if is_next else ""
    return (
        f"<li id='step-{_attr(step.key)}' class='{css}' data-status='{step.status.value}'>"
        f"<div class='head'><span class='badge'>{_BADGES[step.status]}</span>"
        f"<h2>{html.escape(step.title)}</h2></div>"
        f"<p class='summary'>{_inline(step.summary)}</p>{how}</li>"
    )


def _document(title: str, body: str, *, script: bool) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<meta name='robots' content='noindex'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main>" + (f"<script>{_SCRIPT}</script>" if script else "") + "</body></html>"
    )


_TRY_IT = (
    "<section class='try' id='try-it'><h2>Try it with sample data</h2>"
    "<p>No Slack workspace or FreshBooks account yet? This runs the real app (same pipeline, rules and "
    "messages) against a built-in sample FreshBooks business and a local Slack stand-in, on its own "
    "database, and prints the address of a page that shows the channels and their messages:</p>"
    + _block(Value("demo-command", "Command", DEMO_COMMAND))
    + "</section>"
)


def render_setup_page(state: SetupState) -> str:
    """The whole `/` page for `state`. Pure: the same state gives the same bytes."""
    steps = setup_steps(state)
    if setup_complete(steps):
        # Public: a stranger learns that the app runs, and nothing about whom it serves.
        return _document(
            "FreshBooks for Slack",
            "<h1>FreshBooks for Slack</h1><p>Running and configured.</p>",
            script=False,
        )
    upcoming = next_step(steps)
    done = sum(step.status in _FINISHED for step in steps)
    lead = f"Running. {done} of {len(steps)} setup steps done"
    if upcoming is not None:
        lead += f"; next: <a href='#step-{_attr(upcoming.key)}'>{html.escape(upcoming.title)}</a>"
    body = (
        f"<h1>FreshBooks for Slack</h1><p>{lead}.</p>"
        + ("" if state.slack_configured else _TRY_IT)
        + "<ol class='steps'>"
        + "".join(_step(step, is_next=step is upcoming) for step in steps)
        + "</ol><footer><p>This page shows the setup until it is complete, then only that the app "
        "runs. <code>fbslack doctor</code> checks the same from the server's shell.</p></footer>"
    )
    return _document("FreshBooks for Slack: setup", body, script=True)


# Gathering the state ------------------------------------------------------------------------------


@functools.cache
def load_manifest_template(path: Path = MANIFEST_PATH) -> str | None:
    """manifest.yml as shipped, read once; None when this install does not include it."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def summarize_connections(progress: Iterable[tuple[ConnectionStatus, frozenset[str]]]) -> Connections:
    """All connections as one state: verified as soon as one receives every event. Pure."""
    expected = frozenset(SUPPORTED_EVENTS)
    seen = list(progress)
    active = [events for status, events in seen if status is ConnectionStatus.ACTIVE]
    if any(expected <= events for events in active):
        return Connections.VERIFIED
    if active:
        return Connections.UNVERIFIED
    if any(status is ConnectionStatus.NEEDS_RECONNECT for status, _ in seen):
        return Connections.NEEDS_RECONNECT
    return Connections.NONE


def gather_setup_state(settings: Settings, db: Database, *, manifest_template: str | None) -> SetupState:
    """Read the settings and the database (installs, connections, verified webhooks) for the page."""
    database_ok, installed, linked = True, None, Connections.UNKNOWN
    try:
        with db.read() as session:
            if settings.slack_client_id:
                installed = installations.any_installed(session, client_id=settings.slack_client_id)
            linked = summarize_connections(connections.webhook_progress(session))
    except SQLAlchemyError:
        database_ok, installed = False, None
    return SetupState(
        database_dialect=db.dialect,
        database_ok=database_ok,
        encryption_keys_set=bool(settings.encryption_keys),
        public_url=settings.public_url,
        signing_secret_set=settings.slack_signing_secret is not None,
        bot_token_set=settings.slack_bot_token is not None,
        client_pair_set=bool(settings.slack_client_id and settings.slack_client_secret),
        workspace_installed=installed,
        freshbooks_credentials_set=settings.freshbooks_configured,
        connections=linked,
        manifest_template=manifest_template,
    )
