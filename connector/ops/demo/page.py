"""The demo page: channels and their messages as Slack shows them, the App Home, event buttons and
a `/freshbooks` box. One HTML document with inline CSS and JS (no external assets); it polls
/demo/api/state, which long-polls the stand-in, and swaps in the HTML fragments rendered here.

Pure: the stand-in's snapshot in, HTML out (the Block Kit rendering is connector.ops.demo.blockkit_html).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from connector.ops.demo import blockkit_html as bk
from connector.ops.demo.business import ACTIONS, BUSINESS_NAME
from connector.ops.demo.slack_standin import Ephemeral

COMMAND_EXAMPLES = (
    "help",
    "rules",
    "route expense #sales billable",
    "unroute 5",
    "audit Northwind",
    "replay failed",
)


def _names(channels: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    return {c["id"]: str(c["name"]).lstrip("#@") for c in channels}


def _messages_html(messages: Sequence[Mapping[str, Any]], names: Mapping[str, str]) -> str:
    if not messages:
        return '<p class="empty">No messages yet. Fire an event on the right.</p>'
    return "".join(bk.render_message(m, names=names) for m in messages)


def _answer_html(answer: Ephemeral, names: Mapping[str, str]) -> str:
    message = answer.message
    if answer.via == "modal" and isinstance(message.get("view"), Mapping):
        view = bk.render_view(message["view"], names=names)
        return f'<div class="answer"><div class="via">a modal opened</div>{view}</div>'
    command = str(message.get("command", ""))
    shown = {k: v for k, v in message.items() if k in ("text", "blocks")}
    if not shown:
        body = '<p class="empty">(acknowledged with no message)</p>'
    else:
        body = bk.render_message({**shown, "ephemeral": True, "ts": ""}, names=names)
    via = (
        "answer"
        if answer.via == "command"
        else "later, by response_url"
        if answer.via == "response_url"
        else answer.via
    )
    head = f'<div class="cmd">{html.escape(command)}</div>' if command else ""
    command_id = html.escape(answer.command_id)
    return f'<div class="answer" data-command="{command_id}">{head}<div class="via">{via}</div>{body}</div>'


def render_state(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """What /demo/api/state answers: the version and each part of the page as HTML."""
    channels: Sequence[Mapping[str, Any]] = snapshot["channels"]
    names = _names(channels)
    home = snapshot.get("home")
    return {
        "version": snapshot["version"],
        "channels": [
            {
                "id": c["id"],
                "name": c["name"],
                "is_dm": c["is_dm"],
                "count": len(c["messages"]),
                "html": _messages_html(c["messages"], names),
            }
            for c in channels
        ],
        "home_html": bk.render_view(home, names=names)
        if isinstance(home, Mapping)
        else '<p class="empty">The App Home has not been published yet.</p>',
        "answers_html": "".join(_answer_html(a, names) for a in reversed(snapshot["ephemerals"])),
    }


_CSS = """
* { box-sizing: border-box; }
body { margin: 0; color: #1d1c1d; background: #fff;
  font: 15px/1.4 -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, Arial, sans-serif; }
header { background: #3f0e40; color: #fff; padding: 10px 16px; display: flex; gap: 12px;
  align-items: baseline; flex-wrap: wrap; }
header h1 { font-size: 17px; margin: 0; }
header span { opacity: .8; font-size: 13px; }
main { display: grid; grid-template-columns: 200px minmax(0, 1fr) 340px; min-height: calc(100vh - 44px); }
nav { background: #4a154b; color: #e8dfe8; padding: 10px 0; }
nav button { display: flex; justify-content: space-between; width: 100%; background: none; border: 0;
  color: inherit; text-align: left; padding: 5px 16px; font: inherit; cursor: pointer; }
nav button.on { background: #1164a3; color: #fff; }
nav .count { opacity: .7; font-size: 12px; }
nav h2 { font-size: 12px; text-transform: uppercase; letter-spacing: .05em; margin: 12px 16px 4px;
  opacity: .7; }
#panes { overflow: auto; border-right: 1px solid #ddd; }
.pane { display: none; }
.pane.on { display: block; }
.pane h2 { margin: 0; padding: 12px 16px; border-bottom: 1px solid #ddd; font-size: 17px; position: sticky;
  top: 0; background: #fff; z-index: 1; }
aside { padding: 12px 16px; overflow: auto; background: #f8f8f8; }
aside h2 { font-size: 14px; margin: 8px 0; }
.events { display: flex; flex-wrap: wrap; gap: 6px; }
.events button, form button { border: 1px solid #bbb; background: #fff; border-radius: 4px; padding: 5px 9px;
  font: inherit; font-size: 13px; cursor: pointer; }
.events button:hover, form button:hover { background: #eef; }
.events button:disabled { opacity: .5; }
form { display: flex; gap: 6px; }
form input { flex: 1; min-width: 0; font: inherit; padding: 5px 8px; border: 1px solid #bbb;
  border-radius: 4px; }
.examples { font-size: 12px; color: #555; margin: 4px 0 8px; }
.examples code { cursor: pointer; background: #eee; padding: 0 3px; border-radius: 3px; }
.answer { background: #fff; border: 1px solid #ddd; border-radius: 6px; margin: 8px 0; padding: 4px 0; }
.answer .cmd { font-family: monospace; padding: 2px 12px; color: #1264a3; }
.answer .via { font-size: 11px; color: #777; padding: 0 12px; }
.empty { color: #777; padding: 16px; margin: 0; }
#status { font-size: 12px; color: #555; min-height: 1.4em; }
@media (max-width: 900px) { main { grid-template-columns: 1fr; } nav { display: flex; flex-wrap: wrap; }
  nav button { width: auto; } nav h2 { display: none; } }
"""

_JS = """
const state = {version: -1, selected: null};
const $ = (id) => document.getElementById(id);
function select(id) {
  state.selected = id;
  document.querySelectorAll('.pane').forEach((p) => p.classList.toggle('on', p.id === 'pane-' + id));
  document.querySelectorAll('nav button').forEach((b) => b.classList.toggle('on', b.dataset.pane === id));
}
function apply(s) {
  state.version = s.version;
  const nav = $('channels'), panes = $('channel-panes');
  for (const c of s.channels) {
    let button = nav.querySelector('[data-pane="' + c.id + '"]');
    if (!button) {
      button = document.createElement('button');
      button.dataset.pane = c.id;
      button.innerHTML = '<span class="name"></span><span class="count"></span>';
      button.querySelector('.name').textContent = (c.is_dm ? '' : '# ') + c.name;
      button.onclick = () => select(c.id);
      nav.appendChild(button);
      const pane = document.createElement('section');
      pane.className = 'pane';
      pane.id = 'pane-' + c.id;
      pane.innerHTML = '<h2></h2><div class="messages" id="channel-' + c.id + '"></div>';
      pane.querySelector('h2').textContent = (c.is_dm ? '' : '# ') + c.name;
      panes.appendChild(pane);
    }
    button.querySelector('.count').textContent = c.count || '';
    const box = $('channel-' + c.id);
    if (box.dataset.html !== c.html) {
      const pane = box.parentElement, atEnd = pane.scrollHeight - pane.scrollTop - pane.clientHeight < 40;
      box.innerHTML = c.html;
      box.dataset.html = c.html;
      if (atEnd) pane.scrollTop = pane.scrollHeight;
    }
  }
  if (state.selected === null && s.channels.length) select(s.channels[0].id);
  else select(state.selected);
  $('home').innerHTML = s.home_html;
  $('answers').innerHTML = s.answers_html;
}
async function poll() {
  try {
    const response = await fetch('/demo/api/state?since=' + state.version, {cache: 'no-store'});
    const s = await response.json();
    if (!s.unchanged) apply(s);
    $('status').textContent = '';
    setTimeout(poll, 50);
  } catch (e) {
    $('status').textContent = 'The demo server is not answering (stopped?); retrying…';
    setTimeout(poll, 1000);
  }
}
async function post(path, body) {
  const response = await fetch(path, {method: 'POST', headers: {'Content-Type': 'application/json'},
                                      body: JSON.stringify(body)});
  return response.json();
}
document.querySelectorAll('.events button').forEach((button) => {
  button.onclick = async () => {
    button.disabled = true;
    $('status').textContent = 'Sending ' + button.textContent + '…';
    try {
      const answer = await post('/demo/api/fire/' + button.dataset.action, {});
      $('status').textContent = answer.error ||
        'FreshBooks sent ' + answer.webhooks.map((w) => w.event).join(', ') + '. ' + answer.note;
    } finally { button.disabled = false; }
  };
});
$('command-form').onsubmit = async (event) => {
  event.preventDefault();
  const text = $('command').value.trim();
  if (!text) return;
  $('status').textContent = 'Sending /freshbooks ' + text + '…';
  const answer = await post('/demo/api/command', {text});
  $('status').textContent = answer.error || '';
};
document.querySelectorAll('.examples code').forEach((code) => {
  code.onclick = () => { $('command').value = code.textContent; $('command').focus(); };
});
$('nav-home').onclick = () => { select('home'); post('/demo/api/home', {}); };
poll();
"""


def page_html() -> str:
    """The whole page; its content arrives by polling."""
    buttons = "".join(
        f'<button type="button" id="fire-{key}" data-action="{key}">{html.escape(label)}</button>'
        for key, (label, _) in ACTIONS.items()
    )
    examples = " ".join(f"<code>{html.escape(example)}</code>" for example in COMMAND_EXAMPLES)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>FreshBooks for Slack: demo</title>
<style>{_CSS}{bk.STYLESHEET}</style></head>
<body>
<header><h1>FreshBooks for Slack: demo</h1>
<span>The real app with sample data: the FreshBooks business "{html.escape(BUSINESS_NAME)}" and a
Slack stand-in, both on this machine. Nothing reaches FreshBooks or Slack.</span></header>
<main>
<nav><h2>Channels</h2><div id="channels"></div><h2>App</h2>
<button type="button" id="nav-home" data-pane="home"><span>App Home</span></button></nav>
<div id="panes"><div id="channel-panes"></div>
<section class="pane" id="pane-home"><h2>App Home</h2><div id="home"></div></section></div>
<aside>
<h2>Something happens in FreshBooks</h2>
<div class="events">{buttons}</div>
<div id="status" role="status"></div>
<h2>Type a command</h2>
<form id="command-form"><input id="command" name="command" autocomplete="off"
 placeholder="/freshbooks rules" aria-label="/freshbooks command"><button type="submit">Send</button></form>
<div class="examples">Try: {examples}</div>
<h2>Only visible to you</h2>
<div id="answers"></div>
</aside>
</main>
<script>{_JS}</script>
</body></html>
"""
