"""Whatever text or JSON arrives, the HTML holds only our tags and attributes, and only safe links."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.ops.demo.blockkit_html import (
    mrkdwn_to_html,
    render_blocks,
    render_message,
    render_view,
    safe_url,
)

TAGS = {
    "a", "article", "b", "blockquote", "br", "button", "code", "div", "figcaption", "figure", "hr", "i",
    "img", "li", "ol", "pre", "s", "section", "span", "time", "ul",
}  # fmt: skip
ATTRIBUTES = {
    "alt", "aria-hidden", "aria-label", "class", "data-action-id", "data-block-id", "data-ts", "data-value",
    "datetime", "href", "loading", "rel", "role", "src", "target", "title", "type",
}  # fmt: skip
VOID = {"br", "hr", "img"}


class Checker(HTMLParser):
    """Records every tag; fails on anything a hostile input could have slipped in."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in TAGS, tag
        for name, value in attrs:
            assert name in ATTRIBUTES, (tag, name)
            assert value is not None
            if name == "href":
                assert safe_url(value) == value, value
            if name == "src":
                assert value.startswith(("https://", "http://")) and safe_url(value) == value, value
            if name == "class":
                assert all(word.startswith("bk-") for word in value.split()), value
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open.pop() == tag, (tag, self.open)


def assert_safe(fragment: str) -> None:
    checker = Checker()
    checker.feed(fragment)
    checker.close()
    assert checker.open == [], checker.open  # every tag we open is closed, in order
    assert "<script" not in fragment.lower()


TOKENS = [
    "<", ">", "&", "&amp;", "&lt;", "&gt;", "*", "_", "~", "`", "```", ":", ":x:", ":tada:", "|", "!", "#",
    "@", '"', "'", "=", " ", "\n", "> ", ">>>", "&gt; ", "a", "Z", "1", "javascript:", "https://", "http://e.com",
    "mailto:a@b.c", "<script>", "</", "onmouseover=", "data:", "\t", "\x00", "é", "/", "<!here>", "<#C1|x>",
    "<@U1>", "<https://e.com|", "\u2028",
]  # fmt: skip
hostile_text = st.one_of(st.lists(st.sampled_from(TOKENS), max_size=40).map("".join), st.text(max_size=80))


@settings(max_examples=250, deadline=None)
@given(hostile_text, st.booleans())
def test_any_mrkdwn_is_safe_html(text: str, verbatim: bool) -> None:
    assert_safe(mrkdwn_to_html(text, names={"C1": '"><img src=x>', "U1": "<b>"}, verbatim=verbatim))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="<>&*_~`:", blacklist_categories=("Cs",))))
def test_text_without_markup_reads_exactly_as_typed(text: str) -> None:
    shown = _strip_tags(mrkdwn_to_html(text).replace("<br>", "\n"))
    assert shown == text


def _strip_tags(fragment: str) -> str:
    out: list[str] = []

    class Text(HTMLParser):
        def handle_data(self, data: str) -> None:
            out.append(data)

    parser = Text(convert_charrefs=True)
    parser.feed(fragment)
    parser.close()
    return "".join(out)


KEYS = [
    "type", "text", "elements", "fields", "accessory", "url", "image_url", "alt_text", "style", "action_id",
    "value", "block_id", "options", "initial_options", "initial_option", "placeholder", "label", "element",
    "title", "verbatim", "emoji", "hint", "optional", "multiline", "initial_value", "user_id", "channel_id",
    "name", "range",
]  # fmt: skip
TYPES = [
    "section", "context", "actions", "header", "image", "input", "rich_text", "divider", "button", "mrkdwn",
    "plain_text", "checkboxes", "radio_buttons", "static_select", "multi_users_select", "plain_text_input",
    "rich_text_section", "rich_text_list", "rich_text_quote", "rich_text_preformatted", "text", "link",
    "emoji", "user", "channel", "broadcast", "usergroup", "video", "<script>",
]  # fmt: skip
leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    hostile_text,
    st.sampled_from(TYPES),
    st.sampled_from(["primary", "danger"]),
)
json_values = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=5)), inner, max_size=6),
    ),
    max_leaves=30,
)
blocks = st.lists(
    st.fixed_dictionaries({"type": st.sampled_from(TYPES)}).flatmap(
        lambda base: st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6).map(
            lambda d: {**d, **base}
        )
    ),
    max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(blocks)
def test_any_blocks_render_to_safe_html(given_blocks: list[dict[str, Any]]) -> None:
    assert_safe(render_blocks(given_blocks))
    assert_safe(
        render_view({"type": "modal", "title": {"type": "plain_text", "text": "<x>"}, "blocks": given_blocks})
    )


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["ts", "text", "blocks", "replies", "username", "bot_name", "edited",
                                        "ephemeral", "mrkdwn"]), json_values, max_size=6))  # fmt: skip
def test_any_message_renders_to_safe_html(message: dict[str, Any]) -> None:
    assert_safe(render_message(message))
