"""Block Kit and mrkdwn as HTML, the way Slack shows them: for the demo page. Pure, no I/O.

Input is what the app posts (a stored `chat.postMessage` payload, an App Home view), so it is
treated as hostile: every text is HTML-escaped, links are kept only for http, https and mailto,
attribute values are quoted and escaped, and a block or element this module does not know is
shown as an honest placeholder rather than dropped.

mrkdwn follows Slack (docs.slack.dev "Formatting text for app surfaces"): text arrives with
Slack's own three escapes (`&amp;` `&lt;` `&gt;`), and a raw `<...>` is a control sequence (link,
mention, broadcast), never markup. `*bold*`, `_italic_`, `~strike~` need a word boundary outside
and no space inside, and stay on one line; `` `code` `` and ```` ```pre``` ```` are not formatted
inside; lines starting with `>` are quoted, `>>>` quotes the rest.

Every function takes an optional `names` mapping (Slack channel or user ID -> display name) so
`<#C0123>` can read "#accounting" as in Slack; without it the ID is shown.
"""

from __future__ import annotations

import bisect
import datetime as dt
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

__all__ = [
    "EMOJI",
    "STYLESHEET",
    "mrkdwn_to_html",
    "plain_to_html",
    "render_blocks",
    "render_message",
    "render_view",
    "safe_url",
]

Names = Mapping[str, str]
_NO_NAMES: Final[Names] = {}
DEFAULT_AUTHOR: Final = "FreshBooks"

# Shortcode -> character. Every shortcode this app writes (connector/pipeline/render/messages.py,
# slack_ui/views.py, slack_ui/home.py), then common ones; an unknown shortcode stays as text.
EMOJI: Final[Mapping[str, str]] = {
    # the app's own
    "page_facing_up": "\U0001f4c4",
    "moneybag": "\U0001f4b0",
    "receipt": "\U0001f9fe",
    "credit_card": "\U0001f4b3",
    "pencil2": "\u270f\ufe0f",
    "wastebasket": "\U0001f5d1\ufe0f",
    "white_check_mark": "\u2705",
    "hourglass_flowing_sand": "\u23f3",
    "hourglass": "\u231b",
    "warning": "\u26a0\ufe0f",
    "email": "\U0001f4e7",
    "x": "\u274c",
    "mag": "\U0001f50d",
    "double_vertical_bar": "\u23f8\ufe0f",
    # common
    "+1": "\U0001f44d",
    "thumbsup": "\U0001f44d",
    "-1": "\U0001f44e",
    "thumbsdown": "\U0001f44e",
    "tada": "\U0001f389",
    "rocket": "\U0001f680",
    "eyes": "\U0001f440",
    "heart": "\u2764\ufe0f",
    "smile": "\U0001f604",
    "slightly_smiling_face": "\U0001f642",
    "wave": "\U0001f44b",
    "fire": "\U0001f525",
    "star": "\u2b50",
    "sparkles": "\u2728",
    "bell": "\U0001f514",
    "memo": "\U0001f4dd",
    "calendar": "\U0001f4c6",
    "date": "\U0001f4c5",
    "chart_with_upwards_trend": "\U0001f4c8",
    "chart_with_downwards_trend": "\U0001f4c9",
    "bar_chart": "\U0001f4ca",
    "dollar": "\U0001f4b5",
    "euro": "\U0001f4b6",
    "pound": "\U0001f4b7",
    "yen": "\U0001f4b4",
    "money_with_wings": "\U0001f4b8",
    "bank": "\U0001f3e6",
    "lock": "\U0001f512",
    "key": "\U0001f511",
    "link": "\U0001f517",
    "information_source": "\u2139\ufe0f",
    "heavy_check_mark": "\u2714\ufe0f",
    "heavy_multiplication_x": "\u2716\ufe0f",
    "no_entry": "\u26d4",
    "no_entry_sign": "\U0001f6ab",
    "red_circle": "\U0001f534",
    "large_green_circle": "\U0001f7e2",
    "large_yellow_circle": "\U0001f7e1",
    "question": "\u2753",
    "exclamation": "\u2757",
    "bulb": "\U0001f4a1",
    "gear": "\u2699\ufe0f",
    "clipboard": "\U0001f4cb",
    "inbox_tray": "\U0001f4e5",
    "outbox_tray": "\U0001f4e4",
    "envelope": "\u2709\ufe0f",
    "stopwatch": "\u23f1\ufe0f",
    "alarm_clock": "\u23f0",
    "ok_hand": "\U0001f44c",
    "clap": "\U0001f44f",
    "pray": "\U0001f64f",
    "raised_hands": "\U0001f64c",
    "thinking_face": "\U0001f914",
    "joy": "\U0001f602",
    "boom": "\U0001f4a5",
    "zap": "\u26a1",
    "100": "\U0001f4af",
    "arrow_right": "\u27a1\ufe0f",
    "arrows_counterclockwise": "\U0001f504",
    "repeat": "\U0001f501",
    "package": "\U0001f4e6",
    "pushpin": "\U0001f4cc",
    "paperclip": "\U0001f4ce",
    "rotating_light": "\U0001f6a8",
    "checkered_flag": "\U0001f3c1",
    "handshake": "\U0001f91d",
    "briefcase": "\U0001f4bc",
    "office": "\U0001f3e2",
    "coffee": "\u2615",
    "speech_balloon": "\U0001f4ac",
    "robot_face": "\U0001f916",
    "hammer_and_wrench": "\U0001f6e0\ufe0f",
    "wrench": "\U0001f527",
    "shield": "\U0001f6e1\ufe0f",
}

# -- mrkdwn -----------------------------------------------------------------------------------

_SLACK_ENTITY: Final = re.compile(r"&(amp|lt|gt);")
_SLACK_CHARS: Final = {"amp": "&", "lt": "<", "gt": ">"}
_PRE: Final = re.compile(r"```(.+?)```", re.DOTALL)
# One inline atom: a code span, a control sequence, an emoji shortcode; and, where Slack links bare
# URLs (text objects that are not `verbatim`, message text), a URL. Text is still Slack-escaped
# here, so a URL ends before an escaped < or >.
_ATOM: Final = re.compile(r"`([^`\n]+)`|<([^<>\n]+)>|:([a-z0-9_+'-]+):")
_ATOM_OR_URL: Final = re.compile(_ATOM.pattern + r"|(https?://(?:(?!&[lg]t;)[^\s<>])+)")
_URL_TAIL: Final = ".,;:!?)]}'\"*_~"
_MARKS: Final = {"*": "b", "_": "i", "~": "s"}
_QUOTE: Final = re.compile(r"(?:>|&gt;) ?")
_QUOTE_REST: Final = re.compile(r"(?:>>>|&gt;&gt;&gt;) ?")
_LINK_SCHEMES: Final = frozenset({"http", "https", "mailto"})
_BROADCASTS: Final = frozenset({"here", "channel", "everyone"})


def _esc(text: str) -> str:
    """HTML-escaped, quotes included, so the result is safe in text and in attribute values."""
    return html.escape(text, quote=True)


def _unslack(text: str) -> str:
    """Slack's three escapes undone, in one pass (so `&amp;lt;` reads `&lt;`, as in Slack)."""
    return _SLACK_ENTITY.sub(lambda m: _SLACK_CHARS[m[1]], text)


def safe_url(url: str) -> str | None:
    """`url` if it is an http(s) URL with a host or a mailto: URL, else None (never a javascript:,
    data: or relative link; whitespace and control characters refuse it: browsers drop them)."""
    if not url or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _LINK_SCHEMES or (scheme != "mailto" and not parts.netloc):
        return None
    return url


def _emoji(name: str) -> str | None:
    char = EMOJI.get(name)
    if char is None:
        return None
    return f'<span class="bk-emoji" title=":{_esc(name)}:">{char}</span>'


def _mention(kind: str, text: str) -> str:
    return f'<span class="bk-mention bk-{kind}">{_esc(text)}</span>'


def _control(body: str, names: Names) -> str:
    """One `<...>` control sequence (its text still Slack-escaped) as HTML."""
    target, _, label = body.partition("|")
    label = _unslack(label)
    if target.startswith("#"):
        ident = target[1:]
        return _mention("channel", "#" + (label or names.get(ident) or ident))
    if target.startswith("@"):
        ident = target[1:]
        return _mention("user", "@" + (label or names.get(ident) or ident))
    if target.startswith("!"):
        special = target[1:]
        if special in _BROADCASTS:
            return _mention("broadcast", "@" + special)
        if special.startswith("subteam^"):
            return _mention("user", label or "@" + special.split("^", 1)[1])
        if special.startswith("date^"):  # <!date^epoch^format|fallback>: Slack shows it localised
            return _esc(label or special)
        return _mention("broadcast", label or "@" + special)
    url = _unslack(target)
    href = safe_url(url)
    if href is None:  # shown as text: its label, else the whole sequence as typed
        return _esc(label or f"<{url}>")
    return _link(href, label or (url.partition(":")[2] if url.lower().startswith("mailto:") else url))


def _link(href: str, shown: str) -> str:
    """A link to a URL safe_url accepted, its text escaped."""
    return (
        f'<a class="bk-link" href="{_esc(href)}" target="_blank" rel="noopener noreferrer">{_esc(shown)}</a>'
    )


@dataclass(frozen=True, slots=True)
class _Atom:
    """Rendered HTML that formatting marks treat as one non-space, non-word character."""

    html: str


_Piece = str | _Atom  # a str piece is exactly one (unescaped) character


def _pieces(line: str, names: Names, linkify: bool) -> list[_Piece]:
    pieces: list[_Piece] = []
    pos = 0
    pattern = _ATOM_OR_URL if linkify else _ATOM
    while (found := pattern.search(line, pos)) is not None:
        pieces += _unslack(line[pos : found.start()])
        code, control, emoji = found.group(1, 2, 3)
        if code is not None:
            pieces.append(_Atom(f'<code class="bk-code">{_esc(_unslack(code))}</code>'))
        elif control is not None:
            pieces.append(_Atom(_control(control, names)))
        elif emoji is not None and (shown := _emoji(emoji)) is not None:
            pieces.append(_Atom(shown))
        elif emoji is not None:  # unknown shortcode: its first colon is text, the next may open a known one
            pieces.append(":")
            pos = found.start() + 1
            continue
        else:  # a bare URL, less the punctuation and closing marks after it
            text = found[4].rstrip(_URL_TAIL)
            url = _unslack(text)
            href = safe_url(url)
            if href is None:
                pieces += url
            else:
                pieces.append(_Atom(_link(href, url)))
            pos = found.start() + len(text)
            continue
        pos = found.end()
    pieces += _unslack(line[pos:])
    return pieces


def _is_space(piece: _Piece | None) -> bool:
    return isinstance(piece, str) and piece.isspace()


def _is_word(piece: _Piece | None) -> bool:
    return isinstance(piece, str) and piece.isalnum()


class _Marks:
    """Where each formatting mark may open and close, decided by its neighbours only (so computed
    once: matching is then a binary search, linear overall, whatever the input)."""

    def __init__(self, pieces: list[_Piece]) -> None:
        self.pieces = pieces
        self.closers: dict[str, list[int]] = {mark: [] for mark in _MARKS}
        for j, piece in enumerate(pieces):
            if isinstance(piece, str) and piece in _MARKS:
                after = pieces[j + 1] if j + 1 < len(pieces) else None
                if j > 0 and not _is_space(pieces[j - 1]) and pieces[j - 1] != piece and not _is_word(after):
                    self.closers[piece].append(j)

    def opens(self, i: int) -> bool:
        piece = self.pieces[i]
        before = self.pieces[i - 1] if i > 0 else None
        after = self.pieces[i + 1] if i + 1 < len(self.pieces) else None
        return not _is_word(before) and after is not None and not _is_space(after) and after != piece

    def closer(self, mark: str, i: int, end: int) -> int | None:
        closers = self.closers[mark]
        k = bisect.bisect_right(closers, i + 1)
        return closers[k] if k < len(closers) and closers[k] < end else None

    def render(self, start: int, end: int) -> str:
        out: list[str] = []
        i = start
        while i < end:
            piece = self.pieces[i]
            if isinstance(piece, _Atom):
                out.append(piece.html)
            elif piece in _MARKS and self.opens(i) and (j := self.closer(piece, i, end)) is not None:
                tag = _MARKS[piece]
                out.append(f"<{tag}>{self.render(i + 1, j)}</{tag}>")
                i = j
            else:
                out.append(_esc(piece))
            i += 1
        return "".join(out)


def _inline(line: str, names: Names, linkify: bool) -> str:
    pieces = _pieces(line, names, linkify)
    return _Marks(pieces).render(0, len(pieces))


def _quote(lines: list[str], names: Names, linkify: bool) -> str:
    inner = "<br>".join(_inline(line, names, linkify) for line in lines)
    return f'<blockquote class="bk-quote">{inner}</blockquote>'


def _lines(text: str, names: Names, linkify: bool) -> str:
    """Text without pre blocks: lines joined by <br>, runs of quoted lines as blockquotes."""
    out: list[str] = []
    plain: list[str] = []
    quoted: list[str] = []
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if rest := _QUOTE_REST.match(line):
            quoted += [line[rest.end() :], *lines[index + 1 :]]
            break
        if mark := _QUOTE.match(line):
            if plain:
                out.append("<br>".join(plain))
                plain = []
            quoted.append(line[mark.end() :])
            continue
        if quoted:
            out.append(_quote(quoted, names, linkify))
            quoted = []
        plain.append(_inline(line, names, linkify))
    if plain:
        out.append("<br>".join(plain))
    if quoted:
        out.append(_quote(quoted, names, linkify))
    return "".join(out)


def mrkdwn_to_html(text: str, *, names: Names = _NO_NAMES, verbatim: bool = False) -> str:
    """Slack mrkdwn (Slack-escaped, as the app sends it) as an HTML fragment. As in Slack, bare
    http(s) URLs become links unless `verbatim` (the text object flag the app's messages set)."""
    out: list[str] = []
    pos = 0
    for found in _PRE.finditer(text):
        before = text[pos : found.start()]
        out.append(_lines(before.removesuffix("\n"), names, not verbatim) if before else "")
        body = found[1].removeprefix("\n").removesuffix("\n")
        out.append(f'<pre class="bk-pre">{_esc(_unslack(body))}</pre>')
        pos = found.end()
        if text.startswith("\n", pos):
            pos += 1
    rest = text[pos:]
    if rest or not out:
        out.append(_lines(rest, names, not verbatim))
    return "".join(out)


def plain_to_html(text: str, *, emoji: bool = True) -> str:
    """A plain_text object: shown as written, shortcodes as emoji unless `emoji` is false."""
    if not emoji:
        return _esc(text).replace("\n", "<br>")
    out: list[str] = []
    pos = 0
    for found in re.finditer(r":([a-z0-9_+'-]+):", text):
        shown = _emoji(found[1])
        if shown is not None and found.start() >= pos:
            out.append(_esc(text[pos : found.start()]))
            out.append(shown)
            pos = found.end()
    out.append(_esc(text[pos:]))
    return "".join(out).replace("\n", "<br>")


# -- text objects, elements, blocks ---------------------------------------------------------------


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _list(value: object) -> Sequence[Any]:
    """A JSON array, else empty (a string is not a list of blocks)."""
    return value if isinstance(value, list | tuple) else ()


def _text(obj: object, names: Names) -> str:
    """A text object (mrkdwn or plain_text); anything else is empty."""
    if not isinstance(obj, Mapping):
        return ""
    text = _str(obj.get("text"))
    if obj.get("type") == "mrkdwn":
        return mrkdwn_to_html(text, names=names, verbatim=obj.get("verbatim") is True)
    return plain_to_html(text, emoji=obj.get("emoji", True) is not False)


def _unknown(what: str, kind: object) -> str:
    shown = kind if isinstance(kind, str) and kind else "(no type)"
    return f'<div class="bk-unknown">Not shown here: {what} <code>{_esc(shown[:40])}</code></div>'


def _data(name: str, value: object) -> str:
    return f' data-{name}="{_esc(value)}"' if isinstance(value, str) and value else ""


def _button(element: Mapping[str, Any], names: Names) -> str:
    style = element.get("style")
    classes = "bk-button" + (f" bk-{style}" if style in ("primary", "danger") else "")
    label = _text(element.get("text"), names)
    href = safe_url(_str(element.get("url")))
    if href is not None:
        return (
            f'<a class="{classes}" href="{_esc(href)}" target="_blank" rel="noopener noreferrer"'
            f"{_data('action-id', element.get('action_id'))}>{label}</a>"
        )
    return (
        f'<button type="button" class="{classes}"'
        f"{_data('action-id', element.get('action_id'))}{_data('value', element.get('value'))}>"
        f"{label}</button>"
    )


def _image(element: Mapping[str, Any], css: str) -> str:
    src = safe_url(_str(element.get("image_url")))
    alt = _esc(_str(element.get("alt_text")))
    if src is None or src.lower().startswith("mailto:"):
        return f'<span class="{css} bk-missing" role="img" aria-label="{alt}">{alt or "image"}</span>'
    return f'<img class="{css}" src="{_esc(src)}" alt="{alt}" loading="lazy">'


def _options(element: Mapping[str, Any], names: Names, mark: tuple[str, str]) -> str:
    chosen = {
        _str(option.get("value"))
        for option in _list(element.get("initial_options"))
        if isinstance(option, Mapping)
    }
    items = []
    for option in _list(element.get("options")):
        if isinstance(option, Mapping):
            box = mark[1] if _str(option.get("value")) in chosen else mark[0]
            label = _text(option.get("text"), names)
            items.append(f'<li><span class="bk-box" aria-hidden="true">{box}</span> {label}</li>')
    return f'<ul class="bk-options">{"".join(items)}</ul>'


def _select(element: Mapping[str, Any], names: Names) -> str:
    initial = element.get("initial_option")
    shown = (
        _text(initial.get("text"), names)
        if isinstance(initial, Mapping)
        else _text(element.get("placeholder"), names) or "Select…"
    )
    return f'<span class="bk-select">{shown}<span class="bk-caret" aria-hidden="true">▾</span></span>'


_SELECTS: Final = frozenset(
    f"{multi}{kind}_select"
    for multi in ("", "multi_")
    for kind in ("static", "external", "users", "conversations", "channels")
)


def _element(element: object, names: Names) -> str:
    if not isinstance(element, Mapping):
        return _unknown("element", None)
    kind = element.get("type")
    if kind == "button":
        return _button(element, names)
    if kind in ("mrkdwn", "plain_text"):
        return f'<span class="bk-context-text">{_text(element, names)}</span>'
    if kind == "image":
        return _image(element, "bk-element-image")
    if kind in _SELECTS or kind in ("datepicker", "timepicker", "overflow"):
        return _select(element, names)
    if kind == "checkboxes":
        return _options(element, names, ("☐", "☑"))
    if kind == "radio_buttons":
        return _options(element, names, ("○", "◉"))
    if kind in ("plain_text_input", "email_text_input", "url_text_input", "number_input"):
        initial = _str(element.get("initial_value"))
        shown = _esc(initial) if initial else _text(element.get("placeholder"), names)
        css = "bk-textbox bk-multiline" if element.get("multiline") else "bk-textbox"
        return f'<span class="{css}">{shown}</span>'
    return _unknown("element", kind)


def _section(block: Mapping[str, Any], names: Names) -> str:
    body = []
    if "text" in block:
        body.append(f'<div class="bk-text">{_text(block.get("text"), names)}</div>')
    fields = _list(block.get("fields"))
    if fields:
        cells = "".join(f'<div class="bk-field">{_text(field, names)}</div>' for field in fields)
        body.append(f'<div class="bk-fields">{cells}</div>')
    accessory = block.get("accessory")
    side = ""
    if isinstance(accessory, Mapping):
        inner = (
            _image(accessory, "bk-accessory-image")
            if accessory.get("type") == "image"
            else _element(accessory, names)
        )
        side = f'<div class="bk-accessory">{inner}</div>'
    return f'<div class="bk-block bk-section"><div class="bk-section-body">{"".join(body)}</div>{side}</div>'


def _context(block: Mapping[str, Any], names: Names) -> str:
    items = []
    for element in _list(block.get("elements")):
        if isinstance(element, Mapping) and element.get("type") == "image":
            items.append(_image(element, "bk-context-image"))
        else:
            items.append(_element(element, names))
    return f'<div class="bk-block bk-context">{"".join(items)}</div>'


def _actions(block: Mapping[str, Any], names: Names) -> str:
    items = "".join(_element(element, names) for element in _list(block.get("elements")))
    return f'<div class="bk-block bk-actions"{_data("block-id", block.get("block_id"))}>{items}</div>'


def _header(block: Mapping[str, Any], names: Names) -> str:
    return f'<div class="bk-block bk-header">{_text(block.get("text"), names)}</div>'


def _image_block(block: Mapping[str, Any], names: Names) -> str:
    title = block.get("title")
    caption = f'<figcaption class="bk-image-title">{_text(title, names)}</figcaption>' if title else ""
    return f'<figure class="bk-block bk-image">{caption}{_image(block, "bk-image-img")}</figure>'


def _input(block: Mapping[str, Any], names: Names) -> str:
    hint = block.get("hint")
    optional = '<span class="bk-optional"> (optional)</span>' if block.get("optional") else ""
    return (
        f'<div class="bk-block bk-input"><div class="bk-label">{_text(block.get("label"), names)}'
        f"{optional}</div>{_element(block.get('element'), names)}"
        + (f'<div class="bk-hint">{_text(hint, names)}</div>' if hint else "")
        + "</div>"
    )


# -- rich_text (what Slack's own composer produces) ------------------------------------------------

_RICH_STYLE_TAGS: Final = (("code", "code"), ("strike", "s"), ("italic", "i"), ("bold", "b"))


def _rich_leaf(element: object, names: Names) -> str:
    if not isinstance(element, Mapping):
        return ""
    kind = element.get("type")
    if kind == "text":
        shown = _esc(_str(element.get("text"))).replace("\n", "<br>")
    elif kind == "link":
        url = _str(element.get("url"))
        href = safe_url(url)
        text = _str(element.get("text")) or url
        shown = _link(href, text) if href else _esc(text)
    elif kind == "emoji":
        name = _str(element.get("name"))
        shown = _emoji(name) or _esc(f":{name}:")
    elif kind == "user":
        ident = _str(element.get("user_id"))
        shown = _mention("user", "@" + (names.get(ident) or ident))
    elif kind == "channel":
        ident = _str(element.get("channel_id"))
        shown = _mention("channel", "#" + (names.get(ident) or ident))
    elif kind == "usergroup":
        shown = _mention("user", "@" + _str(element.get("usergroup_id")))
    elif kind == "broadcast":
        shown = _mention("broadcast", "@" + _str(element.get("range")))
    else:
        return _unknown("rich text element", kind)
    style = element.get("style")
    if isinstance(style, Mapping):
        for key, tag in _RICH_STYLE_TAGS:
            if style.get(key):
                css = ' class="bk-code"' if tag == "code" else ""
                shown = f"<{tag}{css}>{shown}</{tag}>"
    return shown


def _rich_part(part: object, names: Names) -> str:
    if not isinstance(part, Mapping):
        return _unknown("rich text part", None)
    kind = part.get("type")
    elements = _list(part.get("elements"))
    if kind == "rich_text_section":
        return "".join(_rich_leaf(e, names) for e in elements)
    if kind == "rich_text_preformatted":
        return f'<pre class="bk-pre">{"".join(_rich_leaf(e, names) for e in elements)}</pre>'
    if kind == "rich_text_quote":
        return f'<blockquote class="bk-quote">{"".join(_rich_leaf(e, names) for e in elements)}</blockquote>'
    if kind == "rich_text_list":
        tag = "ol" if part.get("style") == "ordered" else "ul"
        items = "".join(f"<li>{_rich_part(e, names)}</li>" for e in elements)
        return f'<{tag} class="bk-list">{items}</{tag}>'
    return _unknown("rich text part", kind)


def _rich_text(block: Mapping[str, Any], names: Names) -> str:
    parts = "".join(_rich_part(part, names) for part in _list(block.get("elements")))
    return f'<div class="bk-block bk-rich-text">{parts}</div>'


_BLOCKS: Final = {
    "section": _section,
    "context": _context,
    "actions": _actions,
    "header": _header,
    "image": _image_block,
    "input": _input,
    "rich_text": _rich_text,
}


def render_blocks(blocks: Sequence[Mapping[str, Any]], *, names: Names = _NO_NAMES) -> str:
    """Block Kit blocks as HTML, one element per block; unknown blocks as a visible placeholder."""
    out = []
    for block in blocks:
        kind = block.get("type") if isinstance(block, Mapping) else None
        if kind == "divider":
            out.append('<hr class="bk-block bk-divider">')
        elif isinstance(kind, str) and kind in _BLOCKS:
            out.append(_BLOCKS[kind](block, names))
        else:
            out.append(_unknown("block", kind))
    return "\n".join(out)  # one block a line: readable goldens, and no space between blocks in HTML


# -- messages and views ---------------------------------------------------------------------------


def _time(ts: object) -> str:
    """Slack's `ts` (epoch seconds) as HH:MM UTC; nothing when it is not a number."""
    try:
        when = dt.datetime.fromtimestamp(float(_str(ts)), dt.UTC)
    except (ValueError, OverflowError, OSError):
        return ""
    return f'<time class="bk-time" datetime="{when.isoformat()}">{when:%H:%M}</time>'


def _body(message: Mapping[str, Any], names: Names) -> str:
    blocks = _list(message.get("blocks"))
    if blocks:
        body = render_blocks(blocks, names=names)
    else:
        text = _str(message.get("text"))
        plain = message.get("mrkdwn", True) is False
        shown = plain_to_html(text) if plain else mrkdwn_to_html(text, names=names)
        body = f'<div class="bk-block bk-fallback">{shown}</div>'
    if _list(message.get("attachments")):  # legacy attachments, which this app never sends
        body += "\n" + _unknown("message part", "attachments")
    return body


def _is_broadcast(message: Mapping[str, Any]) -> bool:
    """A thread reply also sent to the channel (chat.postMessage reply_broadcast; Slack stores it
    with subtype thread_broadcast)."""
    return message.get("reply_broadcast") is True or message.get("subtype") == "thread_broadcast"


def _one_message(
    message: Mapping[str, Any], names: Names, css: str, thread: str = "", reply: bool = False
) -> str:
    author = _str(message.get("username")) or _str(message.get("bot_name")) or DEFAULT_AUTHOR
    edited = '<span class="bk-edited">(edited)</span>' if message.get("edited") else ""
    ephemeral = '<div class="bk-ephemeral">Only visible to you</div>' if message.get("ephemeral") else ""
    broadcast = ""
    if _is_broadcast(message):
        note = "Also sent to the channel" if reply else "replied to a thread"
        broadcast = f'<div class="bk-broadcast-note">{note}</div>'
    return (
        f'<article class="{css}"{_data("ts", message.get("ts"))}>'
        f'<div class="bk-avatar" aria-hidden="true">{_esc(author[:1].upper())}</div>'
        f'<div class="bk-message-main">{ephemeral}{broadcast}<div class="bk-message-head">'
        f'<span class="bk-author">{_esc(author)}</span><span class="bk-badge">APP</span>'
        f"{_time(message.get('ts'))}{edited}</div>"
        f'<div class="bk-message-body">{_body(message, names)}</div>{thread}</div></article>'
    )


def render_message(message: Mapping[str, Any], *, names: Names = _NO_NAMES) -> str:
    """One posted message as Slack shows it, with its thread (`replies`) under it and their count.

    Keys read: `ts`, `text` (mrkdwn fallback, shown when there are no blocks; `mrkdwn: false` makes
    it plain), `blocks`, `replies` (messages of the same shape; theirs are not read), `username` or
    `bot_name` (default "FreshBooks"), `edited` and `ephemeral` (truthy: marked so),
    `reply_broadcast: true` or `subtype: "thread_broadcast"` (a reply also sent to the channel).
    `attachments` (which this app never sends) are shown as a placeholder. Nothing else.
    """
    replies = [r for r in _list(message.get("replies")) if isinstance(r, Mapping)]
    thread = ""
    if replies:
        count = f"{len(replies)} repl{'y' if len(replies) == 1 else 'ies'}"
        inner = "\n".join(_one_message(r, names, "bk-message bk-reply", reply=True) for r in replies)
        thread = f'\n<div class="bk-thread"><div class="bk-thread-count">{count}</div>\n{inner}</div>'
    return _one_message(message, names, "bk-message", thread)


def render_view(view: Mapping[str, Any], *, names: Names = _NO_NAMES) -> str:
    """An App Home (or modal) view: its blocks in a page-wide surface; a modal with its title and
    submit and close buttons."""
    blocks = [b for b in _list(view.get("blocks")) if isinstance(b, Mapping)]
    kind = _str(view.get("type")) or "home"
    body = render_blocks(blocks, names=names)
    if kind != "modal":
        return f'<section class="bk-view bk-home">{body}</section>'
    title = _text(view.get("title"), names)
    buttons = "".join(
        f'<button type="button" class="bk-button{css}">{_text(view.get(key), names)}</button>'
        for key, css in (("close", ""), ("submit", " bk-primary"))
        if view.get(key)
    )
    return (
        f'<section class="bk-view bk-modal"><div class="bk-modal-title">{title}</div>{body}'
        f'<div class="bk-modal-buttons">{buttons}</div></section>'
    )


STYLESHEET: Final = """
.bk-message, .bk-view { font: 15px/1.46 -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, Lato,
  "Helvetica Neue", Arial, sans-serif; color: #1d1c1d; overflow-wrap: anywhere; }
.bk-message { display: flex; gap: 8px; padding: 8px 12px; }
.bk-message:hover { background: #f8f8f8; }
.bk-avatar { flex: 0 0 36px; height: 36px; border-radius: 6px; background: #0075dd; color: #fff;
  font-weight: 900; display: flex; align-items: center; justify-content: center; }
.bk-message-main { flex: 1 1 auto; min-width: 0; }
.bk-message-head { display: flex; align-items: baseline; gap: 6px; flex-wrap: wrap; }
.bk-author { font-weight: 900; }
.bk-badge { font-size: 10px; font-weight: 700; color: #616061; background: #e8e8e8; border-radius: 2px;
  padding: 0 3px; }
.bk-time, .bk-edited { font-size: 12px; color: #616061; }
.bk-ephemeral, .bk-broadcast-note { font-size: 12px; color: #616061; }
.bk-block { margin: 4px 0; }
.bk-header { font-size: 18px; font-weight: 900; margin-top: 12px; }
.bk-section { display: flex; gap: 12px; align-items: flex-start; }
.bk-section-body { flex: 1 1 auto; min-width: 0; }
.bk-fields { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 8px 16px;
  margin-top: 8px; }
.bk-accessory { flex: 0 0 auto; }
.bk-accessory-image { width: 88px; height: 88px; object-fit: cover; border-radius: 6px; }
.bk-context { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 8px; font-size: 13px;
  color: #616061; }
.bk-context-image { width: 20px; height: 20px; border-radius: 4px; }
.bk-divider { border: 0; border-top: 1px solid #dddddd; margin: 12px 0; }
.bk-actions { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 8px; }
.bk-button { display: inline-block; font: inherit; font-size: 14px; font-weight: 700; line-height: 20px;
  padding: 5px 12px; min-height: 32px; box-sizing: border-box; border: 1px solid #c4c4c4; border-radius: 4px;
  background: #fff; color: #1d1c1d; text-decoration: none; cursor: pointer; }
.bk-button:hover { background: #f8f8f8; }
.bk-button.bk-primary { background: #007a5a; border-color: #007a5a; color: #fff; }
.bk-button.bk-danger { background: #fff; border-color: #e01e5a; color: #e01e5a; }
.bk-link { color: #1264a3; text-decoration: none; }
.bk-link:hover { text-decoration: underline; }
.bk-code { font: 12px/1.5 Monaco, Menlo, Consolas, "Courier New", monospace; color: #e01e5a;
  background: #f7f7f9; border: 1px solid #e1e1e8; border-radius: 3px; padding: 1px 3px; }
.bk-pre { font: 12px/1.5 Monaco, Menlo, Consolas, "Courier New", monospace; background: #f8f8f8;
  border: 1px solid #e1e1e8; border-radius: 4px; padding: 8px; margin: 4px 0; white-space: pre-wrap; }
.bk-quote { margin: 4px 0; padding-left: 12px; border-left: 4px solid #dddddd; }
.bk-mention { color: #1264a3; background: #e8f5fa; border-radius: 3px; padding: 0 2px; }
.bk-mention.bk-broadcast { color: #1d1c1d; background: #fef6d6; }
.bk-emoji { font-size: 1.1em; }
.bk-image-img { max-width: 100%; border-radius: 6px; }
.bk-missing { color: #616061; font-style: italic; }
.bk-select, .bk-textbox { display: inline-flex; justify-content: space-between; gap: 8px; min-width: 12em;
  border: 1px solid #c4c4c4; border-radius: 4px; padding: 5px 8px; color: #616061; background: #fff; }
.bk-multiline { min-height: 4em; }
.bk-options { list-style: none; margin: 4px 0; padding: 0; }
.bk-label { font-weight: 700; margin-bottom: 4px; }
.bk-optional, .bk-hint { color: #616061; font-weight: 400; font-size: 13px; }
.bk-unknown { font-size: 13px; color: #616061; border: 1px dashed #c4c4c4; border-radius: 4px;
  padding: 4px 8px; }
.bk-thread { margin: 4px 0 0 0; border-left: 2px solid #e8e8e8; padding-left: 8px; }
.bk-thread-count { font-size: 13px; font-weight: 700; color: #1264a3; }
.bk-reply { padding: 4px 0; }
.bk-view { padding: 12px 16px; }
.bk-modal { max-width: 520px; border: 1px solid #dddddd; border-radius: 8px; }
.bk-modal-title { font-size: 22px; font-weight: 900; margin-bottom: 8px; }
.bk-modal-buttons { display: flex; justify-content: flex-end; gap: 8px; margin-top: 12px; }
@media (max-width: 480px) {
  .bk-message { padding: 8px; }
  .bk-fields { gap: 6px 12px; }  /* Slack keeps two columns on a phone too */
  .bk-thread { padding-left: 4px; }
  .bk-section { flex-direction: column; }
  .bk-button { min-height: 40px; }
}
"""
