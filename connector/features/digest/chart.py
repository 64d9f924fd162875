"""The digest's chart as a PNG: per currency, cash in against cash out over time, and what is owed
by age. `chart` chooses what to show and `alt_text` says it in words (pure); `chart_png` draws it.

Drawn with Pillow rather than matplotlib: two kinds of bar chart need rectangles, lines and text,
which Pillow draws in a few hundred microseconds from a ~3 MB import, where matplotlib would add
numpy and ~40 MB to a digest that must stay under 200 MB for a big business. Pillow's own font
(`load_default(size)`, built in since Pillow 10.1) needs no font installed on the server.

Currencies are never added: each has its own row (its cash bars and its aging bars, each on its
own scale). At most MAX_CURRENCIES rows are drawn, the most active currencies (counted in
payments, expenses and invoices owed, never in money), and a note names the others.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Final

from PIL import Image, ImageDraw, ImageFont

from connector.domain.money import Money
from connector.features.digest.figures import AgeBucket, Aging, Digest, DigestInputs
from connector.features.digest.message import period_label
from connector.features.digest.period import Cadence, Period
from connector.features.digest.series import Bucket, CashSeries, CurrencySeries, buckets, cash_series
from connector.pipeline.render.formatting import format_money

MAX_CURRENCIES: Final = 3
ALT_TEXT_MAX: Final = 1000  # files.getUploadURLExternal's alt_txt (alt_txt_too_large beyond)
WIDTH: Final = 1200
HEADER_HEIGHT: Final = 78
ROW_HEIGHT: Final = 330
FOOTER_HEIGHT: Final = 34

_ZERO = Decimal(0)
_BACKGROUND = (255, 255, 255)
_INK = (29, 28, 29)
_MUTED = (97, 96, 97)
_GRID = (221, 221, 221)
_CASH_IN = (46, 125, 50)
_CASH_OUT = (198, 40, 40)
_AGE_COLOURS: dict[AgeBucket, tuple[int, int, int]] = {
    AgeBucket.NOT_DUE: (84, 110, 122),
    AgeBucket.DAYS_1_30: (249, 168, 37),
    AgeBucket.DAYS_31_60: (239, 108, 0),
    AgeBucket.DAYS_61_90: (216, 67, 21),
    AgeBucket.OVER_90: (183, 28, 28),
}
_AGE_LABELS: dict[AgeBucket, str] = {
    AgeBucket.NOT_DUE: "not yet due",
    AgeBucket.DAYS_1_30: "1-30 days",
    AgeBucket.DAYS_31_60: "31-60 days",
    AgeBucket.DAYS_61_90: "61-90 days",
    AgeBucket.OVER_90: "over 90 days",
}


@dataclass(frozen=True, slots=True)
class Panel:
    """One currency's row: its cash series (None: nothing moved) and its aging (None: nothing owed)."""

    currency: str
    cash: CurrencySeries | None
    aging: Aging | None


@dataclass(frozen=True, slots=True)
class Chart:
    period: Period
    buckets: tuple[Bucket, ...]
    panels: tuple[Panel, ...]  # at most MAX_CURRENCIES, the most active first
    hidden: tuple[str, ...]  # the other currencies, by code

    @property
    def empty(self) -> bool:
        """Nothing moved and nothing is owed: there is nothing to draw."""
        return not self.panels

    @property
    def title(self) -> str:
        return f"Cash in and out, receivables by age · {period_label(self.period)}"


def chart(digest: Digest, series: CashSeries) -> Chart:
    """What to draw for `digest`: `series` over its buckets, and its receivables. Pure."""
    cash = {s.currency: s for s in series.currencies}
    aging = {a.currency: a for a in digest.receivables.aging if a.total > 0}
    activity = {code: (cash[code].movements if code in cash else 0) for code in cash.keys() | aging.keys()}
    for code, owed in aging.items():
        activity[code] += owed.count
    ranked = sorted(activity, key=lambda code: (-activity[code], code))
    shown, hidden = ranked[:MAX_CURRENCIES], ranked[MAX_CURRENCIES:]
    return Chart(
        period=digest.period,
        buckets=series.buckets,
        panels=tuple(Panel(code, cash.get(code), aging.get(code)) for code in shown),
        hidden=tuple(sorted(hidden)),
    )


def chart_for(digest: Digest, inputs: DigestInputs) -> Chart:
    """The chart of a digest computed from `inputs` (their movements, its receivables). Pure."""
    return chart(digest, cash_series(inputs.movements, buckets(digest.period)))


def chart_size(drawn: Chart) -> tuple[int, int]:
    """The PNG's width and height in pixels."""
    rows = max(1, len(drawn.panels))
    return WIDTH, HEADER_HEIGHT + rows * ROW_HEIGHT + FOOTER_HEIGHT


# -- words ------------------------------------------------------------------------------------


def _money(amount: Decimal, currency: str) -> str:
    return format_money(Money(amount, currency))


def _cadence_words(drawn: Chart) -> str:
    if drawn.period.cadence is Cadence.WEEKLY:
        return "by day"
    return f"by week over the last {len(drawn.buckets)} weeks"


def _bucket_words(drawn: Chart, amounts: Sequence[Decimal]) -> str:
    return ", ".join(f"{b.label} {a:,}" for b, a in zip(drawn.buckets, amounts, strict=True))


def _peak(drawn: Chart, amounts: Sequence[Decimal]) -> str:
    best = max(range(len(amounts)), key=lambda n: (amounts[n], -n))
    return f"most in {drawn.buckets[best].label}" if amounts[best] > 0 else "none"


def _aging_words(aging: Aging) -> str:
    return "; ".join(
        f"{_AGE_LABELS[bucket]} {_money(amount, aging.currency)}" for bucket, amount in aging.buckets
    )


def _panel_words(drawn: Chart, panel: Panel, *, detailed: bool) -> str:
    code = panel.currency
    parts = [f"{code}:"]
    if panel.cash is None:
        parts.append("no cash in or out.")
    else:
        cash = panel.cash
        if detailed:
            parts.append(
                f"in {_money(cash.total_in, code)} ({_bucket_words(drawn, cash.cash_in)}); "
                f"out {_money(cash.total_out, code)} ({_bucket_words(drawn, cash.cash_out)})."
            )
        else:
            parts.append(
                f"in {_money(cash.total_in, code)} ({_peak(drawn, cash.cash_in)}), "
                f"out {_money(cash.total_out, code)} ({_peak(drawn, cash.cash_out)})."
            )
    if panel.aging is None:
        parts.append("Nothing owed.")
    else:
        parts.append(f"Owed {_money(panel.aging.total, code)}: {_aging_words(panel.aging)}.")
    return " ".join(parts)


def alt_text(drawn: Chart) -> str:
    """The chart's figures in words, for screen readers: at most ALT_TEXT_MAX characters.

    Every bar's value when that fits; otherwise each currency's totals, its busiest bar and its
    aging; the end is cut only if even that does not fit."""
    head = f"Chart. {drawn.title}. Cash in against cash out {_cadence_words(drawn)}, per currency."
    if drawn.empty:
        return f"{head} No cash came in or went out, and nothing is owed."
    tail = f" Not shown: {', '.join(drawn.hidden)}." if drawn.hidden else ""
    for detailed in (True, False):
        text = " ".join([head, *(_panel_words(drawn, p, detailed=detailed) for p in drawn.panels)]) + tail
        if len(text) <= ALT_TEXT_MAX:
            return text
    return text[: ALT_TEXT_MAX - 1] + "…"


# -- drawing ----------------------------------------------------------------------------------


def nice_ticks(top: Decimal) -> tuple[Decimal, ...]:
    """Axis ticks from 0 to at least `top`, 3 to 6 of them, at a step of 1, 2, 2.5 or 5 x 10^n. Pure."""
    if top <= 0:
        return (_ZERO, Decimal(1))
    rough = top / 4
    magnitude = Decimal(10) ** (rough.adjusted())
    step = next(
        m * magnitude
        for m in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10))
        if m * magnitude >= rough
    )
    count = int((top / step).to_integral_value(rounding=ROUND_CEILING))  # Decimal's // truncates
    return tuple(step * n for n in range(count + 1))


def compact(amount: Decimal) -> str:
    """`950`, `1.5k`, `12k`, `2.25M`: an axis label, never a figure to read exactly. Pure."""
    for unit, size in (("B", Decimal(10) ** 9), ("M", Decimal(10) ** 6), ("k", Decimal(1000))):
        if abs(amount) >= size:
            scaled = amount / size
            text = f"{scaled:.2f}".rstrip("0").rstrip(".")
            return f"{text}{unit}"
    return f"{amount:.2f}".rstrip("0").rstrip(".") if amount % 1 else f"{int(amount)}"


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _scale(value: Decimal, top: Decimal, pixels: int) -> int:
    # A net negative bucket (refunds beyond the day's payments) is drawn as no bar; the alt text
    # and the row's totals still say the amount.
    return 0 if top <= 0 or value <= 0 else round(float(value / top) * pixels)


def _draw_cash(draw: ImageDraw.ImageDraw, drawn: Chart, panel: Panel, box: tuple[int, int, int, int]) -> None:
    left, top, right, bottom = box
    small = _font(13)
    axis_width, label_height = 56, 22
    plot_left, plot_bottom = left + axis_width, bottom - label_height
    plot_height = plot_bottom - top
    cash = panel.cash
    values = (*cash.cash_in, *cash.cash_out) if cash is not None else ()
    ticks = nice_ticks(max(values, default=_ZERO))
    for tick in ticks:
        y = plot_bottom - _scale(tick, ticks[-1], plot_height)
        draw.line([(plot_left, y), (right, y)], fill=_GRID, width=1)
        draw.text((plot_left - 6, y), compact(tick), font=small, fill=_MUTED, anchor="rm")
    slot = (right - plot_left) / max(1, len(drawn.buckets))
    bar = max(2, int(slot * 0.32))
    for n, span in enumerate(drawn.buckets):
        middle = plot_left + slot * (n + 0.5)
        draw.text((middle, plot_bottom + 5), span.label, font=small, fill=_MUTED, anchor="mt")
        if cash is None:
            continue
        for offset, amount, colour in ((-bar, cash.cash_in[n], _CASH_IN), (0, cash.cash_out[n], _CASH_OUT)):
            height = _scale(amount, ticks[-1], plot_height)
            if height:
                x = int(middle) + offset
                draw.rectangle([(x, plot_bottom - height), (x + bar - 1, plot_bottom)], fill=colour)
    draw.line([(plot_left, plot_bottom), (right, plot_bottom)], fill=_MUTED, width=1)
    if cash is None:
        draw.text(
            ((plot_left + right) // 2, (top + plot_bottom) // 2),
            "no cash in or out",
            font=_font(15),
            fill=_MUTED,
            anchor="mm",
        )


def _draw_aging(draw: ImageDraw.ImageDraw, panel: Panel, box: tuple[int, int, int, int]) -> None:
    left, top, right, bottom = box
    small, label_width, value_width = _font(13), 92, 64
    draw.text((left, top), "Owed, by age", font=_font(15), fill=_INK)
    if panel.aging is None:
        draw.text(
            ((left + right) // 2, (top + bottom) // 2),
            "nothing owed",
            font=_font(15),
            fill=_MUTED,
            anchor="mm",
        )
        return
    rows_top = top + 30
    row = (bottom - rows_top) // len(AgeBucket)
    most = max((amount for _, amount in panel.aging.buckets), default=_ZERO)
    bar_left, bar_room = left + label_width, right - left - label_width - value_width
    for n, (bucket, amount) in enumerate(panel.aging.buckets):
        middle = rows_top + row * n + row // 2
        draw.text((left, middle), _AGE_LABELS[bucket], font=small, fill=_MUTED, anchor="lm")
        length = _scale(amount, most, bar_room)
        if length:
            draw.rectangle(
                [(bar_left, middle - 9), (bar_left + length, middle + 9)], fill=_AGE_COLOURS[bucket]
            )
        draw.text((bar_left + length + 6, middle), compact(amount), font=small, fill=_INK, anchor="lm")


def _draw_panel(draw: ImageDraw.ImageDraw, drawn: Chart, panel: Panel, top: int) -> None:
    code = panel.currency
    words = [code]
    if panel.cash is not None:
        words += [f"in {_money(panel.cash.total_in, code)}", f"out {_money(panel.cash.total_out, code)}"]
    if panel.aging is not None:
        words.append(f"owed {_money(panel.aging.total, code)}")
    draw.text((24, top + 10), "  ·  ".join(words), font=_font(17), fill=_INK)
    draw.line([(24, top + 2), (WIDTH - 24, top + 2)], fill=_GRID, width=1)
    _draw_cash(draw, drawn, panel, (24, top + 44, 760, top + ROW_HEIGHT - 12))
    _draw_aging(draw, panel, (800, top + 44, WIDTH - 24, top + ROW_HEIGHT - 12))


def _legend(draw: ImageDraw.ImageDraw, x: int, y: int) -> None:
    font = _font(14)
    for label, colour in (("cash in", _CASH_IN), ("cash out", _CASH_OUT)):
        draw.rectangle([(x, y - 6), (x + 12, y + 6)], fill=colour)
        draw.text((x + 18, y), label, font=font, fill=_INK, anchor="lm")
        x += 30 + int(draw.textlength(label, font=font))


def chart_png(drawn: Chart) -> bytes:
    """The chart as PNG bytes (RGB, `chart_size(drawn)` pixels). Deterministic for the same chart."""
    size = chart_size(drawn)
    image = Image.new("RGB", size, _BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.text((24, 18), drawn.title, font=_font(22), fill=_INK)
    draw.text(
        (24, 50), f"Cash {_cadence_words(drawn)}; each currency on its own scale", font=_font(14), fill=_MUTED
    )
    _legend(draw, 800, 58)
    for n, panel in enumerate(drawn.panels):
        _draw_panel(draw, drawn, panel, HEADER_HEIGHT + n * ROW_HEIGHT)
    if drawn.empty:
        draw.text(
            (WIDTH // 2, HEADER_HEIGHT + ROW_HEIGHT // 2),
            "No cash came in or went out, and nothing is owed.",
            font=_font(18),
            fill=_MUTED,
            anchor="mm",
        )
    if drawn.hidden:
        note = f"Not shown: {', '.join(drawn.hidden)} (the digest's text has every currency)"
        draw.text((24, size[1] - FOOTER_HEIGHT + 10), note, font=_font(14), fill=_MUTED)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
