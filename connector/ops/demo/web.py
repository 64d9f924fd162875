"""The demo page's routes, under /demo on the app's own port: everything else goes to the real app.

Each route parses, calls one method of the running Demo, answers. The POST routes take JSON only,
which a page on another site cannot send without the browser asking this server first (CORS).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, jsonify, request

from connector.ops.demo import page
from connector.ops.demo.business import ACTIONS
from connector.ops.simulate import SimulateError

if TYPE_CHECKING:
    from connector.ops.demo.runtime import Demo

log = logging.getLogger(__name__)

PREFIX = "/demo"
LONG_POLL_SECONDS = 0.5  # a state request waits this long for a change before answering "no change"
MAX_COMMAND = 2000
# What the page adds after an event whose messages take a while, so nobody thinks it is stuck.
NOTES = {
    "invoice_overdue": "FreshBooks has no overdue event: the app's overdue scan notices it within "
    "about 10 s here (once a day by default), then posts to #exec-alerts.",
    "burst": "Slack takes about one post a second per channel: the first invoice posts at once, the "
    "others arrive together as one summary (what does not fit is listed in its thread).",
}


def create_demo_app(demo: Demo) -> Flask:
    demo_app = Flask("fbslack-demo")

    @demo_app.get("/demo")
    @demo_app.get("/demo/")
    def index() -> Response:
        return Response(page.page_html(), mimetype="text/html")

    @demo_app.get("/demo/api/about")
    def about() -> Response:
        """What `fbslack simulate --url` looks for to know it talks to a demo."""
        return jsonify(demo=True, actions=list(ACTIONS))

    @demo_app.get("/demo/api/state")
    def state() -> Response:
        since = request.args.get("since", "-1")
        known = int(since) if since.lstrip("-").isdigit() else -1
        demo.slack.wait_changed(known, LONG_POLL_SECONDS)
        snapshot = demo.slack.snapshot()
        if snapshot["version"] == known:
            return jsonify(version=known, unchanged=True)
        return jsonify(page.render_state(snapshot))

    @demo_app.get("/demo/api/slack")
    def slack_state() -> Response:
        """The stand-in's raw state (channels with threads, the App Home, answers), for tests and tools."""
        snapshot = demo.slack.snapshot()
        snapshot["ephemerals"] = [
            {"command_id": e.command_id, "via": e.via, "message": e.message} for e in snapshot["ephemerals"]
        ]
        return jsonify(snapshot)

    def json_body() -> dict[str, Any] | None:
        body = request.get_json(silent=True) if request.is_json else None
        return body if isinstance(body, dict) else None

    @demo_app.post("/demo/api/fire/<action>")
    def fire(action: str) -> Response | tuple[Response, int]:
        if json_body() is None:
            return jsonify(error="send a JSON body ({})"), 415
        if action not in ACTIONS:
            return jsonify(error=f"no such event; one of: {', '.join(ACTIONS)}"), 404
        changes = demo.fire(action)
        return jsonify(
            webhooks=[{"event": c.event, "object_id": c.object_id} for c in changes],
            note=NOTES.get(action, ""),
        )

    @demo_app.post("/demo/api/command")
    def command() -> Response | tuple[Response, int]:
        body = json_body()
        text = str((body or {}).get("text", "")).strip()
        text = text.removeprefix("/freshbooks").strip()
        if body is None or len(text) > MAX_COMMAND:
            return jsonify(error=f'send JSON {{"text": "..."}} of at most {MAX_COMMAND} characters'), 400
        return jsonify(command_id=demo.command(text))

    @demo_app.post("/demo/api/home")
    def home() -> Response | tuple[Response, int]:
        if json_body() is None:
            return jsonify(error="send a JSON body ({})"), 415
        demo.open_home()
        return jsonify(ok=True)

    @demo_app.post("/demo/api/simulate")
    def simulate() -> Response | tuple[Response, int]:
        body = json_body()
        if body is None or not isinstance(body.get("event"), str):
            return jsonify(error='send JSON {"event": "invoice.create", ...}'), 400

        def text(key: str) -> str | None:
            value = body.get(key)
            return str(value) if value is not None else None

        try:
            report = demo.simulate(body["event"], text("amount"), text("client"), text("currency"))
        except SimulateError as exc:
            return jsonify(error=str(exc), exit_code=exc.exit_code), 400
        return jsonify(report=report)

    return demo_app


def demo_wsgi(demo: Demo, app: Flask) -> Any:
    """One WSGI app: /demo… to the demo page, anything else to the real app."""
    demo_app = create_demo_app(demo)

    def dispatch(environ: dict[str, Any], start_response: Any) -> Any:
        path = str(environ.get("PATH_INFO", ""))
        if path == PREFIX or path.startswith(PREFIX + "/"):
            return demo_app(environ, start_response)
        return app(environ, start_response)

    return dispatch
