"""The `/freshbooks route` syntax: command text in, a `RouteSpec` or a `RouteSyntaxError` out.

Pure: no I/O, no clock. The error's message is ready to show the Slack user (mrkdwn).
"""

from __future__ import annotations

import difflib
import enum
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from connector.domain.events import ALL_EVENT_NAMES, KIND_OF_EVENT
from connector.domain.rules import COLLAPSE_MAX, COLLAPSE_MIN, DEFAULT_COLLAPSE_AT, RouteSpec
from connector.pipeline.route.matching import ALL, KINDS, pattern_matches

# Every accepted spelling (lower-cased) -> its canonical pattern.
_PATTERN_SPELLINGS: dict[str, str] = {
    ALL: ALL,
    **{kind: kind for kind in KINDS},
    **{f"{kind}s": kind for kind in KINDS},
    **{name.lower(): name for name in ALL_EVENT_NAMES},
}
_CANONICAL_PATTERNS: tuple[str, ...] = (ALL, *KINDS, *ALL_EVENT_NAMES)

USAGE = (
    "Usage: `/freshbooks route EVENTS #channel [min AMOUNT] [max AMOUNT] [currency CODE] [billable] "
    '[client "NAME" | vendor "NAME"] [collapse N | collapse off] [urgent]`\n'
    "EVENTS is `all`, a kind (`invoice`, `payment`, `bill`, `expense`) or an event such as "
    "`invoice.create` or `invoice.paid`; separate several with commas.\n"
    "A burst of 5 or more messages waiting for the channel goes out as one summary "
    "(`collapse N` changes the 5, `collapse off` posts each); `urgent` posts even in quiet hours.\n"
    "Example: `/freshbooks route invoice.create #exec-alerts min 5000`"
)


# -- the /freshbooks route command --------------------------------------------------------------


class RouteSyntaxError(ValueError):
    """A route command we cannot read. str() is the problem and the usage, ready for Slack (mrkdwn)."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"{problem}\n{USAGE}")
        self.problem = problem


def _shown(text: str, limit: int = 40) -> str:
    """User input echoed back in `code`: shortened, and unable to close the code span or form a mention.

    Slack already turns the user's own &, < and > into entities in command text; what is left between
    < and > is a Slack control sequence (a channel, user or @here), which must not go live again.
    """
    cut = text if len(text) <= limit else f"{text[: limit - 1]}…"
    return cut.replace("`", "'").replace("<", "&lt;").replace(">", "&gt;")


def _either(choices: Iterable[str]) -> str:
    """`a`, `a or b`, `a, b or c`."""
    items = list(choices)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def _pattern_problem(item: str) -> str:
    shown = _shown(item)
    candidates = [p.lower() for p in _CANONICAL_PATTERNS]
    close = difflib.get_close_matches(item[:60].lower(), candidates, n=3, cutoff=0.6)
    if close:
        names = _either(f"`{_PATTERN_SPELLINGS[c]}`" for c in close)
        return f"`{shown}` is not an event I know. Did you mean {names}?"
    return f"`{shown}` is not an event I know. Events: `{ALL}`, " + ", ".join(
        f"`{p}`" for p in (*KINDS, *ALL_EVENT_NAMES)
    )


def _simplify(patterns: list[str]) -> tuple[str, ...]:
    """Drop duplicates and patterns a broader one already covers (`all`, a bare kind), keeping order."""
    if ALL in patterns:
        return (ALL,)
    kinds = {p for p in patterns if p in KINDS}
    kept: list[str] = []
    for pattern in patterns:
        covered = pattern not in KINDS and pattern.split(".", 1)[0] in kinds
        if not covered and pattern not in kept:
            kept.append(pattern)
    return tuple(kept)


def parse_patterns(text: str) -> tuple[str, ...]:
    """`"invoice.create, Bills"` -> `("invoice.create", "bill")`: validated, canonical case, simplified."""
    items = [item.strip() for item in text.split(",")]
    items = [item for item in items if item]
    if not items:
        raise RouteSyntaxError("Name the events to route first, for example `invoice.create` or `all`.")
    patterns: list[str] = []
    for item in items:
        canonical = _PATTERN_SPELLINGS.get(item.lower())
        if canonical is None:
            raise RouteSyntaxError(_pattern_problem(item))
        patterns.append(canonical)
    return _simplify(patterns)


# -- numbers people type --------------------------------------------------------------------------
# ASCII digits only, and bounded: str.isdigit() and \d accept '²' and '٣' (int() refuses the first,
# reads the second), and int() of a 25-digit id overflows the database's 64-bit integer.

MAX_ID_DIGITS = 18  # every id fits a signed 64-bit integer (PostgreSQL bigint, SQLite INTEGER)
_ID = re.compile(rf"[0-9]{{1,{MAX_ID_DIGITS}}}")


def ascii_spelling(text: str) -> str | None:
    """A number typed in other digits (Arabic-Indic 100, a superscript 2), spelled with 0-9; None if
    `text` is already ASCII or has a character that is no digit. Pure."""
    if text.isascii():
        return None
    spelled: list[str] = []
    for char in text:
        if char.isascii():
            spelled.append(char)
            continue
        value = unicodedata.digit(char, None)
        if value is None:
            return None
        spelled.append(str(value))
    return "".join(spelled)


def parse_id(text: str) -> int | None:
    """A rule or delivery id as typed (or carried in a button): 1 to 18 ASCII digits, else None. Pure."""
    return int(text) if _ID.fullmatch(text) else None


def id_problem(text: str, noun: str) -> str:
    """Why `text` is not `noun` (e.g. "a rule number"), in words for the person who typed it. Pure."""
    shown = _shown(text)
    spelled = ascii_spelling(text)
    if spelled is not None and spelled.isascii() and spelled.isdigit():
        if len(spelled) <= MAX_ID_DIGITS:
            return f"`{shown}` is written with digits other than 0-9. Did you mean `{spelled}`?"
        text = spelled
    if text.isascii() and text.isdigit():
        return f"`{shown}` is too large to be {noun}."
    return f"`{shown}` is not {noun}."


# ASCII digits only: \d would also accept Arabic-Indic and other digits that Decimal reads. At
# most 15 digits before the point (a quadrillion): the stored text stays short, and so does the form.
MAX_AMOUNT_DIGITS = 15
_PLAIN_AMOUNT = re.compile(rf"[0-9]{{1,{MAX_AMOUNT_DIGITS}}}(?:\.[0-9]{{1,2}})?")
_GROUPED_AMOUNT = re.compile(r"[0-9]{1,3}(?:,[0-9]{3}){1,4}(?:\.[0-9]{1,2})?")
_AMOUNT_EXAMPLES = "Write amounts like `5000`, `5,000` or `5000.50`."
TOO_LARGE = "Amounts go up to 999,999,999,999,999.99."


def amount_too_large(text: str) -> bool:
    """More than MAX_AMOUNT_DIGITS digits before the decimal point. Pure."""
    return sum(c.isdigit() for c in text.partition(".")[0]) > MAX_AMOUNT_DIGITS


class AmountProblem(enum.Enum):
    """Why a text is not an amount: one classification, worded by the command and by the modal."""

    MISSING = "missing"
    NEGATIVE = "negative"
    CURRENCY_SYMBOL = "currency symbol"
    OTHER_SCRIPT = "digits of another script"
    TOO_LARGE = "too large"
    DECIMALS = "more than two decimal places"
    COMMAS = "misplaced commas"
    NOT_AN_AMOUNT = "not an amount"


def amount_problem(text: str) -> AmountProblem:
    """What is wrong with `text`, which `parse_amount` refused. Pure."""
    if not text:
        return AmountProblem.MISSING
    if text.startswith("-"):
        return AmountProblem.NEGATIVE
    if text[0] in "$€£¥":
        return AmountProblem.CURRENCY_SYMBOL
    spelled = ascii_spelling(text)
    if spelled is not None and re.fullmatch(r"[0-9,.]+", spelled):
        return AmountProblem.OTHER_SCRIPT
    if re.fullmatch(r"[0-9,]+(?:\.[0-9]*)?", text) and amount_too_large(text):
        return AmountProblem.TOO_LARGE
    if re.fullmatch(r"[0-9,]*\.[0-9]{3,}", text):
        return AmountProblem.DECIMALS
    if re.fullmatch(r"[0-9,]+(?:\.[0-9]{1,2})?", text):
        return AmountProblem.COMMAS
    return AmountProblem.NOT_AN_AMOUNT


def _amount_problem(text: str) -> str:
    shown = _shown(text)
    match amount_problem(text):
        case AmountProblem.MISSING:
            return f"An amount is missing. {_AMOUNT_EXAMPLES}"
        case AmountProblem.NEGATIVE:
            return f"`{shown}` is negative; amounts here are zero or more. {_AMOUNT_EXAMPLES}"
        case AmountProblem.CURRENCY_SYMBOL:
            return (
                f"Leave the currency symbol out of `{shown}`; add `currency USD` (or another code) instead."
            )
        case AmountProblem.OTHER_SCRIPT:
            return f"Write `{shown}` with the digits 0-9, like `{_shown(ascii_spelling(text) or '')}`."
        case AmountProblem.TOO_LARGE:
            return f"`{shown}` is too large. {TOO_LARGE}"
        case AmountProblem.DECIMALS:
            return f"`{shown}` has more than two decimal places. {_AMOUNT_EXAMPLES}"
        case AmountProblem.COMMAS:
            return f"The commas in `{shown}` should separate groups of three digits, like `1,234,567.89`."
        case AmountProblem.NOT_AN_AMOUNT:
            return f"`{shown}` is not an amount. {_AMOUNT_EXAMPLES}"


def parse_amount(text: str) -> Decimal:
    """`5000`, `5,000`, `5000.50` or `1,234,567.89` as a Decimal; anything else is a RouteSyntaxError."""
    text = text.strip()
    if _PLAIN_AMOUNT.fullmatch(text) or _GROUPED_AMOUNT.fullmatch(text):
        return Decimal(text.replace(",", ""))
    raise RouteSyntaxError(_amount_problem(text))


@dataclass(frozen=True, slots=True)
class Token:
    text: str
    quoted: bool


# Slack clients (macOS autocorrect in particular) often turn typed straight quotes into curly ones.
_OPEN_QUOTES = '"“”„'
_CLOSE_QUOTES = '"“”'


def tokenize(args: str) -> list[Token]:
    """Whitespace-separated words; a word starting with a double quote runs to the closing quote.

    Not shlex: a single quote is an apostrophe in names like O'Brien, not a quote.
    """
    tokens: list[Token] = []
    i, n = 0, len(args)
    while i < n:
        if args[i].isspace():
            i += 1
            continue
        if args[i] in _OPEN_QUOTES:
            end = next((j for j in range(i + 1, n) if args[j] in _CLOSE_QUOTES), None)
            if end is None:
                raise RouteSyntaxError(
                    'A quoted name is missing its closing quote ("), like `client "Acme Inc"`.'
                )
            tokens.append(Token(args[i + 1 : end], quoted=True))
            i = end + 1
            continue
        start = i
        while i < n and not args[i].isspace():
            i += 1
        tokens.append(Token(args[start:i], quoted=False))
    return tokens


_VALUE_OPTIONS = ("min", "max", "currency", "client", "vendor", "collapse")
_FLAG_OPTIONS = ("billable", "urgent")
_OPTIONS = (*_VALUE_OPTIONS, *_FLAG_OPTIONS)
_VALUE_HINTS = {
    "min": "an amount, like `min 5000`",
    "max": "an amount, like `max 5000`",
    "currency": "a three-letter code, like `currency USD`",
    "client": 'a client name, like `client "Acme Inc"`',
    "vendor": 'a vendor name, like `vendor "Acme Inc"`',
    "collapse": f"a number from {COLLAPSE_MIN} to {COLLAPSE_MAX}, or `off`, like `collapse 10`",
}

# <#C0123|exec-alerts> when the command escapes channels (manifest should_escape: true), or <#C0123>.
# Private channels may still carry the older G prefix.
_CHANNEL = re.compile(r"<#([CG][A-Z0-9]+)(?:\|([^<>|]*))?>")
_CURRENCY = re.compile(r"[A-Za-z]{3}")


def _option_word(token: Token) -> str | None:
    word = token.text.lower()
    return word if not token.quoted and word in _OPTIONS else None


def _is_channelish(token: Token) -> bool:
    return not token.quoted and token.text.startswith(("<", "#"))


def _channel(token: Token | None) -> tuple[str, str | None]:
    if token is None or _option_word(token) is not None:
        raise RouteSyntaxError(
            "Which channel? Add it after the events, picking it with `#` so Slack links it."
        )
    match = _CHANNEL.fullmatch(token.text)
    if match is not None:
        return match.group(1), match.group(2) or None
    shown = _shown(token.text)
    if token.text.lower() in _PATTERN_SPELLINGS:
        raise RouteSyntaxError(
            f"Separate events with commas, like `invoice.create,{shown}`, then the channel."
        )
    if token.text.startswith("<@"):
        raise RouteSyntaxError(f"`{shown}` is a person, not a channel. Pick a channel with `#`.")
    raise RouteSyntaxError(
        f"`{shown}` is not a linked channel. Pick the channel with `#` so Slack links it "
        "(it turns blue), then send the command."
    )


def _unescape(text: str) -> str:
    # Slack sends the user's &, < and > as entities in command text; names are stored as typed.
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


@dataclass(slots=True)
class _Options:
    min_amount: Decimal | None = None
    max_amount: Decimal | None = None
    currency: str | None = None
    billable_only: bool = False
    counterparty: str | None = None
    counterparty_role: str | None = None
    collapse_at: int | None = DEFAULT_COLLAPSE_AT
    urgent: bool = False


def parse_collapse(text: str) -> int | None:
    """`off` (None: never collapse) or a burst size from COLLAPSE_MIN to COLLAPSE_MAX."""
    word = text.strip().lower()
    if word == "off":
        return None
    size = parse_id(word)
    if size is None or not COLLAPSE_MIN <= size <= COLLAPSE_MAX:
        raise RouteSyntaxError(
            f"`collapse {_shown(text)}`: give a number from {COLLAPSE_MIN} to {COLLAPSE_MAX} "
            "(how many messages waiting at once make a summary), or `collapse off`."
        )
    return size


def _unknown_option(token: Token, previous: str | None) -> str:
    shown = _shown(token.text)
    if previous in ("client", "vendor"):
        return f'`{shown}` is not an option. Put a name with spaces in quotes, like `{previous} "Acme Inc"`.'
    if _CHANNEL.fullmatch(token.text):
        return "A rule posts to one channel. Add a second rule for the other channel."
    close = difflib.get_close_matches(token.text[:60].lower(), _OPTIONS, n=1, cutoff=0.6)
    if close:
        return f"`{shown}` is not an option. Did you mean `{close[0]}`?"
    return f"`{shown}` is not an option. Options: " + ", ".join(f"`{o}`" for o in _OPTIONS) + "."


def _set_value(options: _Options, option: str, token: Token) -> None:
    if option in ("min", "max"):
        try:
            amount = parse_amount(token.text)
        except RouteSyntaxError as exc:
            raise RouteSyntaxError(f"After `{option}`: {exc.problem}") from None
        if option == "min":
            options.min_amount = amount
        else:
            options.max_amount = amount
    elif option == "collapse":
        options.collapse_at = parse_collapse(token.text)
    elif option == "currency":
        if not _CURRENCY.fullmatch(token.text):
            raise RouteSyntaxError(
                f"`{_shown(token.text)}` is not a currency code. Use three letters, like `currency USD`."
            )
        options.currency = token.text.upper()
    else:  # client or vendor
        name = " ".join(_unescape(token.text).split())
        if not name:
            raise RouteSyntaxError(f'The {option} name is empty. Write it like `{option} "Acme Inc"`.')
        if options.counterparty_role is not None:
            raise RouteSyntaxError(
                f"A rule filters on one name: use `client` or `vendor`, not both "
                f"(found `{options.counterparty_role}` and `{option}`)."
            )
        options.counterparty, options.counterparty_role = name, option


def _parse_options(tokens: list[Token]) -> _Options:
    options = _Options()
    seen: set[str] = set()
    previous: str | None = None
    i = 0
    while i < len(tokens):
        token = tokens[i]
        option = _option_word(token)
        if option is None:
            raise RouteSyntaxError(_unknown_option(token, previous))
        if option in seen:
            raise RouteSyntaxError(f"`{option}` appears twice. Give each option once.")
        seen.add(option)
        previous = option
        if option == "urgent":
            options.urgent = True
            i += 1
            continue
        if option in _FLAG_OPTIONS:
            options.billable_only = True
            i += 1
            continue
        value = tokens[i + 1] if i + 1 < len(tokens) else None
        if value is None or _option_word(value) is not None:
            raise RouteSyntaxError(f"`{option}` needs {_VALUE_HINTS[option]}.")
        _set_value(options, option, value)
        i += 2
    return options


def _matches_kind(patterns: tuple[str, ...], kinds: tuple[str, ...]) -> bool:
    return any(
        pattern_matches(p, name) for p in patterns for name in ALL_EVENT_NAMES if KIND_OF_EVENT[name] in kinds
    )


def _check_consistent(patterns: tuple[str, ...], options: _Options) -> None:
    low, high = options.min_amount, options.max_amount
    if low is not None and high is not None and low > high:
        raise RouteSyntaxError(f"`min {low}` is above `max {high}`, so nothing could match.")
    if options.billable_only and not _matches_kind(patterns, ("expense",)):
        raise RouteSyntaxError(
            "`billable` only filters expenses, and this rule matches no expense events. "
            "Drop `billable` or add `expense`."
        )
    # One counterparty field serves both roles, so a role the patterns never produce would be dead.
    role_kinds = {"client": ("invoice", "payment"), "vendor": ("bill", "expense")}
    role = options.counterparty_role
    if role is not None and not _matches_kind(patterns, role_kinds[role]):
        kinds = _either(f"`{k}`" for k in role_kinds[role])
        raise RouteSyntaxError(f"`{role}` filters {kinds} events, and this rule matches none of them.")


def parse_route_command(args: str) -> RouteSpec:
    """The text after `/freshbooks route` as a RouteSpec; any problem is a RouteSyntaxError, never a crash."""
    tokens = tokenize(args)
    if not tokens:
        raise RouteSyntaxError("Tell me which events to route and to which channel.")
    if _is_channelish(tokens[0]):
        raise RouteSyntaxError("Name the events first, then the channel.")
    # The events end at the first word not joined to the previous one by a comma ("invoice, bill").
    end = 1
    while (
        end < len(tokens)
        and not _is_channelish(tokens[end])
        and (tokens[end - 1].text.endswith(",") or tokens[end].text.startswith(","))
    ):
        end += 1
    patterns = parse_patterns(" ".join(t.text for t in tokens[:end]))
    channel_id, channel_name = _channel(tokens[end] if end < len(tokens) else None)
    options = _parse_options(tokens[end + 1 :])
    _check_consistent(patterns, options)
    return RouteSpec(
        patterns=patterns,
        channel_id=channel_id,
        channel_name=channel_name,
        min_amount=options.min_amount,
        max_amount=options.max_amount,
        currency=options.currency,
        billable_only=options.billable_only,
        counterparty=options.counterparty,
        collapse_at=options.collapse_at,
        urgent=options.urgent,
    )
