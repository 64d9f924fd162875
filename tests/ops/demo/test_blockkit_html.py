"""Block Kit and mrkdwn as HTML for the demo page: payload in, exact HTML out, hostile input included."""

from __future__ import annotations

import re
from typing import Any

import pytest

from connector.ops.demo.blockkit_html import (
    EMOJI,
    STYLESHEET,
    mrkdwn_to_html,
    render_blocks,
    render_message,
    render_view,
    safe_url,
)
from tests.support.paths import REPO

LINK = 'class="bk-link" target="_blank" rel="noopener noreferrer"'


def _a(href: str, label: str) -> str:
    return f'<a class="bk-link" href="{href}" target="_blank" rel="noopener noreferrer">{label}</a>'


# -- mrkdwn -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("plain words", "plain words"),
        ("*bold*", "<b>bold</b>"),
        ("_italic_", "<i>italic</i>"),
        ("~struck~", "<s>struck</s>"),
        ("`code`", '<code class="bk-code">code</code>'),
        ("_*both*_", "<i><b>both</b></i>"),
        ("*bold with _italic_ inside*", "<b>bold with <i>italic</i> inside</b>"),
        ("a *b* c", "a <b>b</b> c"),
        ("(*in brackets*)", "(<b>in brackets</b>)"),
        ("*Client*\nNorthwind", "<b>Client</b><br>Northwind"),
        # Marks need a boundary outside and no space inside, and stay on one line.
        ("snake_case_name", "snake_case_name"),
        ("2*3*4", "2*3*4"),
        ("* not bold *", "* not bold *"),
        ("*not\nbold*", "*not<br>bold*"),
        ("**", "**"),
        ("*unclosed", "*unclosed"),
        ("*bold*s", "*bold*s"),
        # Code is not formatted inside.
        ("`*not bold*`", '<code class="bk-code">*not bold*</code>'),
        (
            "`#3` `invoice.create`",
            '<code class="bk-code">#3</code> <code class="bk-code">invoice.create</code>',
        ),
        ("line one\nline two", "line one<br>line two"),
        ("", ""),
    ],
)
def test_inline_formatting(text: str, html: str) -> None:
    assert mrkdwn_to_html(text) == html


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("```pre *x*```", '<pre class="bk-pre">pre *x*</pre>'),
        (
            "before\n```\nline 1\n  line 2\n```\nafter",
            'before<pre class="bk-pre">line 1\n  line 2</pre>after',
        ),
        ("```a &lt;b&gt; &amp; c```", '<pre class="bk-pre">a &lt;b&gt; &amp; c</pre>'),
        ("``````", "``````"),
        ("> quoted", '<blockquote class="bk-quote">quoted</blockquote>'),
        ("&gt; quoted as sent escaped", '<blockquote class="bk-quote">quoted as sent escaped</blockquote>'),
        (
            "intro\n> one\n> *two*\nafter",
            'intro<blockquote class="bk-quote">one<br><b>two</b></blockquote>after',
        ),
        (">>> all\nof the rest", '<blockquote class="bk-quote">all<br>of the rest</blockquote>'),
        ("a > b", "a &gt; b"),
    ],
)
def test_block_formatting(text: str, html: str) -> None:
    assert mrkdwn_to_html(text) == html


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("<https://example.com/x?a=1&amp;b=2|Open it>", _a("https://example.com/x?a=1&amp;b=2", "Open it")),
        ("<https://example.com>", _a("https://example.com", "https://example.com")),
        ("<http://example.com/p|p>", _a("http://example.com/p", "p")),
        ("<mailto:ap@example.com>", _a("mailto:ap@example.com", "ap@example.com")),
        ("<mailto:ap@example.com|Write to us>", _a("mailto:ap@example.com", "Write to us")),
        ("<https://e.com|Tom &amp; Jerry &lt;3>", _a("https://e.com", "Tom &amp; Jerry &lt;3")),
        ("*<https://e.com|bold link>*", "<b>" + _a("https://e.com", "bold link") + "</b>"),
        ("<#C0123|accounting>", '<span class="bk-mention bk-channel">#accounting</span>'),
        ("<#C0123>", '<span class="bk-mention bk-channel">#C0123</span>'),
        ("<@U0123>", '<span class="bk-mention bk-user">@U0123</span>'),
        ("<@U0123|ana>", '<span class="bk-mention bk-user">@ana</span>'),
        ("<!here>", '<span class="bk-mention bk-broadcast">@here</span>'),
        (
            "<!channel> <!everyone>",
            '<span class="bk-mention bk-broadcast">@channel</span> '
            '<span class="bk-mention bk-broadcast">@everyone</span>',
        ),
        ("<!subteam^S012|@finance>", '<span class="bk-mention bk-user">@finance</span>'),
        ("<!date^1392734382^{date}|Feb 18, 2014>", "Feb 18, 2014"),
    ],
)
def test_links_and_mentions(text: str, html: str) -> None:
    assert mrkdwn_to_html(text) == html


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("see https://e.com/a_b_c now", "see " + _a("https://e.com/a_b_c", "https://e.com/a_b_c") + " now"),
        ("https://e.com/?a=1&amp;b=2.", _a("https://e.com/?a=1&amp;b=2", "https://e.com/?a=1&amp;b=2") + "."),
        ("(http://e.com)", "(" + _a("http://e.com", "http://e.com") + ")"),
        ("*https://e.com*", "<b>" + _a("https://e.com", "https://e.com") + "</b>"),
        ("https://e.com&gt;x", _a("https://e.com", "https://e.com") + "&gt;x"),
        ('https://e.com/"onclick=x', _a("https://e.com/&quot;onclick=x", "https://e.com/&quot;onclick=x")),
        ("https:// nothing", "https:// nothing"),
        ("javascript://e.com/%0aalert(1)", "javascript://e.com/%0aalert(1)"),
        ("ftp://e.com", "ftp://e.com"),
    ],
)
def test_bare_urls_are_linked_as_slack_does_unless_verbatim(text: str, html: str) -> None:
    assert mrkdwn_to_html(text) == html
    assert "<a " not in mrkdwn_to_html(text, verbatim=True)


def test_text_objects_link_bare_urls_only_when_not_verbatim() -> None:
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "https://e.com", "verbatim": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "https://e.com"}},
    ]
    assert render_blocks(blocks).split("\n") == [
        '<div class="bk-block bk-section"><div class="bk-section-body"><div class="bk-text">https://e.com'
        "</div></div></div>",
        '<div class="bk-block bk-section"><div class="bk-section-body"><div class="bk-text">'
        + _a("https://e.com", "https://e.com")
        + "</div></div></div>",
    ]


def test_channel_and_user_names_come_from_the_names_given() -> None:
    names = {"C0123": "accounting", "U0456": "ana"}
    assert mrkdwn_to_html("<#C0123> <@U0456> <#C9>", names=names) == (
        '<span class="bk-mention bk-channel">#accounting</span> '
        '<span class="bk-mention bk-user">@ana</span> '
        '<span class="bk-mention bk-channel">#C9</span>'
    )


@pytest.mark.parametrize(
    ("text", "html"),
    [
        (":white_check_mark: paid", '<span class="bk-emoji" title=":white_check_mark:">\u2705</span> paid'),
        (":page_facing_up:", '<span class="bk-emoji" title=":page_facing_up:">\U0001f4c4</span>'),
        (":+1:", '<span class="bk-emoji" title=":+1:">\U0001f44d</span>'),
        (":not_an_emoji: stays", ":not_an_emoji: stays"),
        ("10:30:45", "10:30:45"),
        (":nope:x:", ':nope<span class="bk-emoji" title=":x:">\u274c</span>'),
        ("`:x:`", '<code class="bk-code">:x:</code>'),
    ],
)
def test_emoji(text: str, html: str) -> None:
    assert mrkdwn_to_html(text) == html


def test_every_emoji_the_app_writes_is_known() -> None:
    sources = [
        REPO / "connector/pipeline/render/messages.py",
        REPO / "slack_ui/views.py",
        REPO / "slack_ui/home.py",
        REPO / "connector/features/rules/modal.py",
        REPO / "connector/features/audit/views.py",
    ]
    used = {name for path in sources for name in re.findall(r":([a-z0-9_+]+):", path.read_text())}
    assert used, "the scan found the app's emoji"
    assert used - set(EMOJI) == set()


# -- escaping: Slack's own, then HTML's ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("a &amp; b", "a &amp; b"),
        ("&lt;b&gt;not bold&lt;/b&gt;", "&lt;b&gt;not bold&lt;/b&gt;"),
        ("&amp;lt; stays an entity", "&amp;lt; stays an entity"),
        ("a & b", "a &amp; b"),
        ("&quot;x&quot;", "&amp;quot;x&amp;quot;"),
        ('say "hi" it\'s', "say &quot;hi&quot; it&#x27;s"),
    ],
)
def test_slack_escapes_are_read_once_and_html_escapes_written(text: str, html: str) -> None:
    assert mrkdwn_to_html(text) == html


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("<javascript:alert(1)|click me>", "click me"),
        ("<javascript:alert(1)>", "&lt;javascript:alert(1)&gt;"),
        ("<JavaScript:alert(1)|x>", "x"),
        ("<data:text/html;base64,PHNjcmlwdD4=|x>", "x"),
        ("<vbscript:msgbox(1)|x>", "x"),
        ("<//evil.example/path|x>", "x"),
        ("<https:evil|x>", "x"),
        ('<https://a.com/"onmouseover=alert(1)|y>', _a("https://a.com/&quot;onmouseover=alert(1)", "y")),
        ('<"onmouseover=alert(1) x=">', "&lt;&quot;onmouseover=alert(1) x=&quot;&gt;"),
        # A control sequence cannot hold a `<`: the inner one is the sequence, the rest is text.
        (
            "<https://a.com|<img src=x onerror=alert(1)>>",
            "&lt;" + _a("https://a.com|", "https://a.com|") + "&lt;img src=x onerror=alert(1)&gt;&gt;",
        ),
        ("*<img src=x onerror=alert(1)>*", "<b>&lt;img src=x onerror=alert(1)&gt;</b>"),
        ("`</code><script>`", '<code class="bk-code">&lt;/code&gt;&lt;script&gt;</code>'),
        ("```</pre><script>```", '<pre class="bk-pre">&lt;/pre&gt;&lt;script&gt;</pre>'),
        ('<#C1|"><script>>', '<span class="bk-mention bk-channel">#&quot;</span>&lt;script&gt;&gt;'),
    ],
)
def test_hostile_text_stays_text(text: str, html: str) -> None:
    assert mrkdwn_to_html(text) == html


@pytest.mark.parametrize(
    "url",
    ["https://a.com", "http://a.com/x?y=1#z", "mailto:a@b.com", "HTTPS://A.COM"],
)
def test_safe_urls(url: str) -> None:
    assert safe_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "java\nscript:alert(1)",
        "https://a.com/\x00",
        "data:text/html,x",
        "file:///etc/passwd",
        "/relative",
        "//host/path",
        "https:///nohost",
        "https://a.com/with space",
        "",
        "http://[::1",
    ],
)
def test_unsafe_urls(url: str) -> None:
    assert safe_url(url) is None


def test_a_long_run_of_unmatched_marks_renders_in_linear_time() -> None:
    text = "*a _b ~c " * 5000
    assert mrkdwn_to_html(text) == text.replace("*a _b ~c ", "*a _b ~c ")


# -- blocks ---------------------------------------------------------------------------------------


def _md(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _pt(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def test_header_block() -> None:
    assert render_blocks([{"type": "header", "text": _pt("Routing rules :x:")}]) == (
        '<div class="bk-block bk-header">Routing rules <span class="bk-emoji" title=":x:">\u274c</span></div>'
    )


def test_plain_text_is_not_mrkdwn_and_can_turn_emoji_off() -> None:
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": "*a* &amp; <b> :x:", "emoji": False}}]
    assert render_blocks(blocks) == '<div class="bk-block bk-header">*a* &amp;amp; &lt;b&gt; :x:</div>'


def test_section_with_text_and_fields() -> None:
    block = {
        "type": "section",
        "text": _md(":page_facing_up: *Invoice ACM0042 created*"),
        "fields": [_md("*Client*\nTom &amp; Co"), _md("*Total*\n7,500.00 USD")],
    }
    assert render_blocks([block]) == (
        '<div class="bk-block bk-section"><div class="bk-section-body">'
        '<div class="bk-text"><span class="bk-emoji" title=":page_facing_up:">\U0001f4c4</span> '
        "<b>Invoice ACM0042 created</b></div>"
        '<div class="bk-fields"><div class="bk-field"><b>Client</b><br>Tom &amp; Co</div>'
        '<div class="bk-field"><b>Total</b><br>7,500.00 USD</div></div>'
        "</div></div>"
    )


def test_section_with_a_button_accessory() -> None:
    block = {
        "type": "section",
        "text": _md("parked"),
        "accessory": {
            "type": "button",
            "text": _pt("Replay"),
            "action_id": "home_replay",
            "value": "12",
            "style": "primary",
        },
    }
    assert render_blocks([block]) == (
        '<div class="bk-block bk-section"><div class="bk-section-body">'
        '<div class="bk-text">parked</div></div>'
        '<div class="bk-accessory"><button type="button" class="bk-button bk-primary"'
        ' data-action-id="home_replay" data-value="12">Replay</button></div></div>'
    )


def test_section_with_an_image_accessory() -> None:
    block = {
        "type": "section",
        "text": _md("logo"),
        "accessory": {"type": "image", "image_url": "https://e.com/a.png", "alt_text": 'A "logo"'},
    }
    assert render_blocks([block]) == (
        '<div class="bk-block bk-section"><div class="bk-section-body"><div class="bk-text">logo</div></div>'
        '<div class="bk-accessory"><img class="bk-accessory-image" src="https://e.com/a.png"'
        ' alt="A &quot;logo&quot;" loading="lazy"></div></div>'
    )


def test_context_block() -> None:
    block = {
        "type": "context",
        "elements": [
            _md("Simulated with _fbslack simulate_"),
            _pt("and plain"),
            {"type": "image", "image_url": "https://e.com/i.png", "alt_text": "icon"},
        ],
    }
    assert render_blocks([block]) == (
        '<div class="bk-block bk-context">'
        '<span class="bk-context-text">Simulated with <i>fbslack simulate</i></span>'
        '<span class="bk-context-text">and plain</span>'
        '<img class="bk-context-image" src="https://e.com/i.png" alt="icon" loading="lazy">'
        "</div>"
    )


def test_divider() -> None:
    assert render_blocks([{"type": "divider"}]) == '<hr class="bk-block bk-divider">'


def test_actions_with_link_and_styled_buttons() -> None:
    block = {
        "type": "actions",
        "block_id": "rule_3",
        "elements": [
            {
                "type": "button",
                "text": _pt("Open in FreshBooks"),
                "url": "https://my.freshbooks.com/#/invoice/ACM-1",
                "action_id": "fbslack_open_in_freshbooks",
            },
            {"type": "button", "text": _pt("Edit"), "action_id": "home_rule_edit", "value": "3"},
            {"type": "button", "text": _pt("Delete"), "action_id": "d", "value": "3", "style": "danger"},
            {"type": "button", "text": _pt("Weird"), "action_id": "w", "style": '" onclick="x'},
        ],
    }
    assert render_blocks([block]) == (
        '<div class="bk-block bk-actions" data-block-id="rule_3">'
        '<a class="bk-button" href="https://my.freshbooks.com/#/invoice/ACM-1" target="_blank"'
        ' rel="noopener noreferrer" data-action-id="fbslack_open_in_freshbooks">Open in FreshBooks</a>'
        '<button type="button" class="bk-button" data-action-id="home_rule_edit" data-value="3">Edit</button>'
        '<button type="button" class="bk-button bk-danger" data-action-id="d" data-value="3">Delete</button>'
        '<button type="button" class="bk-button" data-action-id="w">Weird</button>'
        "</div>"
    )


def test_a_button_with_an_unsafe_url_is_not_a_link() -> None:
    button = {
        "type": "button",
        "text": _pt("Go"),
        "url": "javascript:alert(1)",
        "action_id": "a",
        "value": "v",
    }
    html = render_blocks([{"type": "actions", "elements": [button]}])
    assert "javascript" not in html
    assert html == (
        '<div class="bk-block bk-actions"><button type="button" class="bk-button" data-action-id="a"'
        ' data-value="v">Go</button></div>'
    )


def test_attribute_values_are_escaped() -> None:
    button = {"type": "button", "text": _pt("x"), "action_id": '"><script>', "value": 'a" onmouseover="b'}
    html = render_blocks([{"type": "actions", "block_id": "<b>", "elements": [button]}])
    assert html == (
        '<div class="bk-block bk-actions" data-block-id="&lt;b&gt;"><button type="button" class="bk-button"'
        ' data-action-id="&quot;&gt;&lt;script&gt;" data-value="a&quot; onmouseover=&quot;b">x</button></div>'
    )


def test_image_block() -> None:
    block = {"type": "image", "image_url": "https://e.com/c.png", "alt_text": "chart", "title": _pt("Q4")}
    assert render_blocks([block]) == (
        '<figure class="bk-block bk-image"><figcaption class="bk-image-title">Q4</figcaption>'
        '<img class="bk-image-img" src="https://e.com/c.png" alt="chart" loading="lazy"></figure>'
    )


@pytest.mark.parametrize("url", ["javascript:alert(1)", "data:image/png;base64,AAAA", "mailto:a@b.c"])
def test_image_with_an_unsafe_url_shows_its_alt_text(url: str) -> None:
    block = {"type": "image", "image_url": url, "alt_text": "<chart>"}
    assert render_blocks([block]) == (
        '<figure class="bk-block bk-image"><span class="bk-image-img bk-missing" role="img"'
        ' aria-label="&lt;chart&gt;">&lt;chart&gt;</span></figure>'
    )


def test_multi_users_select_shows_its_placeholder() -> None:
    block = {
        "type": "actions",
        "elements": [
            {"type": "multi_users_select", "action_id": "a", "placeholder": _pt("Allow more people…")}
        ],
    }
    assert render_blocks([block]) == (
        '<div class="bk-block bk-actions"><span class="bk-select">Allow more people…'
        '<span class="bk-caret" aria-hidden="true">▾</span></span></div>'
    )


def test_input_blocks_of_the_rule_modal() -> None:
    blocks = [
        {
            "type": "input",
            "label": _pt("Minimum amount"),
            "optional": True,
            "element": {"type": "plain_text_input", "action_id": "a", "initial_value": "5,000"},
            "hint": _pt("In the event's currency"),
        },
        {
            "type": "input",
            "label": _pt("Events"),
            "element": {
                "type": "checkboxes",
                "action_id": "e",
                "options": [
                    {"text": _pt("invoice"), "value": "invoice"},
                    {"text": _pt("bill"), "value": "bill"},
                ],
                "initial_options": [{"text": _pt("bill"), "value": "bill"}],
            },
        },
        {
            "type": "input",
            "label": _pt("Channel"),
            "element": {"type": "conversations_select", "action_id": "c", "placeholder": _pt("Pick one")},
        },
    ]
    assert render_blocks(blocks) == (
        '<div class="bk-block bk-input"><div class="bk-label">Minimum amount'
        '<span class="bk-optional"> (optional)</span></div><span class="bk-textbox">5,000</span>'
        '<div class="bk-hint">In the event&#x27;s currency</div></div>\n'
        '<div class="bk-block bk-input"><div class="bk-label">Events</div><ul class="bk-options">'
        '<li><span class="bk-box" aria-hidden="true">☐</span> invoice</li>'
        '<li><span class="bk-box" aria-hidden="true">☑</span> bill</li></ul></div>\n'
        '<div class="bk-block bk-input"><div class="bk-label">Channel</div><span class="bk-select">Pick one'
        '<span class="bk-caret" aria-hidden="true">▾</span></span></div>'
    )


def test_rich_text_block() -> None:
    block = {
        "type": "rich_text",
        "elements": [
            {
                "type": "rich_text_section",
                "elements": [
                    {"type": "text", "text": "Hi <b> ", "style": {"bold": True}},
                    {"type": "link", "url": "https://e.com", "text": "site"},
                    {"type": "link", "url": "javascript:x", "text": "bad"},
                    {"type": "emoji", "name": "tada"},
                    {"type": "user", "user_id": "U1"},
                    {"type": "channel", "channel_id": "C1"},
                    {"type": "broadcast", "range": "here"},
                ],
            },
            {
                "type": "rich_text_list",
                "style": "ordered",
                "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": "one"}]}],
            },
            {"type": "rich_text_preformatted", "elements": [{"type": "text", "text": "a\nb"}]},
            {"type": "rich_text_quote", "elements": [{"type": "text", "text": "q", "style": {"code": True}}]},
        ],
    }
    assert render_blocks([block], names={"C1": "general"}) == (
        '<div class="bk-block bk-rich-text"><b>Hi &lt;b&gt; </b>' + _a("https://e.com", "site") + "bad"
        '<span class="bk-emoji" title=":tada:">\U0001f389</span>'
        '<span class="bk-mention bk-user">@U1</span><span class="bk-mention bk-channel">#general</span>'
        '<span class="bk-mention bk-broadcast">@here</span>'
        '<ol class="bk-list"><li>one</li></ol><pre class="bk-pre">a<br>b</pre>'
        '<blockquote class="bk-quote"><code class="bk-code">q</code></blockquote></div>'
    )


@pytest.mark.parametrize(
    ("block", "html"),
    [
        (
            {"type": "video", "title": _pt("x")},
            '<div class="bk-unknown">Not shown here: block <code>video</code></div>',
        ),
        (
            {"type": "<script>"},
            '<div class="bk-unknown">Not shown here: block <code>&lt;script&gt;</code></div>',
        ),
        ({"text": "no type"}, '<div class="bk-unknown">Not shown here: block <code>(no type)</code></div>'),
        (
            {"type": "actions", "elements": [{"type": "workflow_button"}]},
            '<div class="bk-block bk-actions"><div class="bk-unknown">Not shown here: element'
            " <code>workflow_button</code></div></div>",
        ),
    ],
)
def test_unknown_blocks_and_elements_are_shown_as_placeholders(block: dict[str, Any], html: str) -> None:
    assert render_blocks([block]) == html


def test_malformed_values_do_not_crash() -> None:
    blocks: list[Any] = [
        {"type": "section", "text": None, "fields": "nope", "accessory": 3},
        {"type": "section", "text": {"type": "mrkdwn", "text": 42}},
        {"type": "context", "elements": [None, 5]},
        {"type": "actions", "elements": None},
        {"type": "header"},
    ]
    empty_section = '<div class="bk-block bk-section"><div class="bk-section-body"><div class="bk-text">'
    no_type = '<div class="bk-unknown">Not shown here: element <code>(no type)</code></div>'
    assert render_blocks(blocks) == (
        f"{empty_section}</div></div></div>\n{empty_section}</div></div></div>\n"
        f'<div class="bk-block bk-context">{no_type}{no_type}</div>\n'
        '<div class="bk-block bk-actions"></div>\n'
        '<div class="bk-block bk-header"></div>'
    )


# -- messages and views ------------------------------------------------------------------------------


def _head(author: str = "FreshBooks", time: str = "") -> str:
    return (
        f'<div class="bk-avatar" aria-hidden="true">{author[:1]}</div><div class="bk-message-main">'
        f'<div class="bk-message-head"><span class="bk-author">{author}</span>'
        f'<span class="bk-badge">APP</span>{time}</div>'
    )


def test_a_message_without_blocks_shows_its_fallback_text_as_mrkdwn() -> None:
    message = {"ts": "1764892800.000100", "text": "(Sample) *Invoice* &lt;1&gt;"}
    time = '<time class="bk-time" datetime="2025-12-05T00:00:00.000100+00:00">00:00</time>'
    assert render_message(message) == (
        '<article class="bk-message" data-ts="1764892800.000100">'
        + _head(time=time)
        + '<div class="bk-message-body"><div class="bk-block bk-fallback">(Sample) <b>Invoice</b> &lt;1&gt;'
        "</div></div></div></article>"
    )


def test_a_message_with_blocks_shows_the_blocks_not_the_text() -> None:
    message = {"ts": "x", "text": "FALLBACK", "blocks": [{"type": "divider"}]}
    html = render_message(message)
    assert "FALLBACK" not in html
    assert html == (
        '<article class="bk-message" data-ts="x">'
        + _head()
        + '<div class="bk-message-body"><hr class="bk-block bk-divider"></div></div></article>'
    )


def test_a_thread_shows_its_replies_under_the_parent_with_a_count() -> None:
    message = {
        "ts": "1.0",
        "text": "card",
        "replies": [{"ts": "2.0", "text": "one"}, {"ts": "3.0", "text": "two", "username": "Ana"}],
    }

    def reply(ts: str, text: str, author: str, clock: str) -> str:
        time = f'<time class="bk-time" datetime="1970-01-01T00:00:{clock}+00:00">00:00</time>'
        return (
            f'<article class="bk-message bk-reply" data-ts="{ts}">'
            + _head(author, time)
            + f'<div class="bk-message-body"><div class="bk-block bk-fallback">{text}</div></div>'
            + "</div></article>"
        )

    parent_time = '<time class="bk-time" datetime="1970-01-01T00:00:01+00:00">00:00</time>'
    assert render_message(message) == (
        '<article class="bk-message" data-ts="1.0">'
        + _head(time=parent_time)
        + '<div class="bk-message-body"><div class="bk-block bk-fallback">card</div></div>'
        '\n<div class="bk-thread"><div class="bk-thread-count">2 replies</div>\n'
        + reply("2.0", "one", "FreshBooks", "02")
        + "\n"
        + reply("3.0", "two", "Ana", "03")
        + "</div></div></article>"
    )


def test_one_reply_is_counted_in_the_singular() -> None:
    assert '<div class="bk-thread-count">1 reply</div>' in render_message(
        {"text": "p", "replies": [{"text": "r"}]}
    )


def test_edited_ephemeral_and_plain_messages() -> None:
    html = render_message(
        {"text": "*x*", "mrkdwn": False, "edited": True, "ephemeral": True, "bot_name": "<b>bot</b>"}
    )
    assert html == (
        '<article class="bk-message"><div class="bk-avatar" aria-hidden="true">&lt;</div>'
        '<div class="bk-message-main"><div class="bk-ephemeral">Only visible to you</div>'
        '<div class="bk-message-head"><span class="bk-author">&lt;b&gt;bot&lt;/b&gt;</span>'
        '<span class="bk-badge">APP</span><span class="bk-edited">(edited)</span></div>'
        '<div class="bk-message-body"><div class="bk-block bk-fallback">*x*</div></div></div></article>'
    )


def test_slacks_own_edited_object_marks_the_message_edited() -> None:
    html = render_message({"text": "t", "edited": {"user": "U1", "ts": "2.0"}})
    assert '<span class="bk-edited">(edited)</span>' in html


@pytest.mark.parametrize("flag", [{"reply_broadcast": True}, {"subtype": "thread_broadcast"}])
def test_a_reply_also_sent_to_the_channel_says_so_in_both_places(flag: dict[str, Any]) -> None:
    reply = {"ts": "2.0", "thread_ts": "1.0", "text": "paid", **flag}
    in_thread = render_message({"ts": "1.0", "text": "card", "replies": [reply]})
    assert in_thread.count('<div class="bk-broadcast-note">Also sent to the channel</div>') == 1
    assert '<div class="bk-broadcast-note">replied to a thread</div>' in render_message(reply)


def test_legacy_attachments_are_a_placeholder_after_the_text() -> None:
    html = render_message({"text": "hi", "attachments": [{"text": "old"}]})
    assert (
        '<div class="bk-block bk-fallback">hi</div>\n'
        '<div class="bk-unknown">Not shown here: message part <code>attachments</code></div>'
    ) in html
    assert "old" not in html


def test_a_hostile_ts_is_escaped_and_shows_no_time() -> None:
    html = render_message({"ts": '"><script>', "text": "t"})
    assert html.startswith('<article class="bk-message" data-ts="&quot;&gt;&lt;script&gt;">')
    assert "<time" not in html


def test_home_view() -> None:
    view = {"type": "home", "private_metadata": "r0", "blocks": [{"type": "header", "text": _pt("Home")}]}
    assert render_view(view) == (
        '<section class="bk-view bk-home"><div class="bk-block bk-header">Home</div></section>'
    )


def test_modal_view() -> None:
    view = {
        "type": "modal",
        "title": _pt("New rule"),
        "submit": _pt("Save"),
        "close": _pt("Cancel"),
        "blocks": [{"type": "divider"}],
    }
    assert render_view(view) == (
        '<section class="bk-view bk-modal"><div class="bk-modal-title">New rule</div>'
        '<hr class="bk-block bk-divider"><div class="bk-modal-buttons">'
        '<button type="button" class="bk-button">Cancel</button>'
        '<button type="button" class="bk-button bk-primary">Save</button></div></section>'
    )


def test_the_stylesheet_styles_every_class_the_renderer_writes() -> None:
    source = REPO.joinpath("connector/ops/demo/blockkit_html.py").read_text().split("STYLESHEET", 1)[0]
    written = set(re.findall(r"\bbk-[a-z-]+\b", source)) - {"bk-"}
    styled = set(re.findall(r"\.(bk-[a-z-]+)", STYLESHEET))
    assert written - styled == set()
    assert "@media (max-width" in STYLESHEET  # readable on a phone
