"""Time comes from one clock: the app reads the wall clock only in connector/domain/clock.py."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.paths import REPO

CLOCK_MODULE = REPO / "connector" / "domain" / "clock.py"
# Reading the wall clock: datetime.now/utcnow/today, date.today, time.time. Durations
# (time.monotonic, perf_counter) are not timestamps and stay allowed.
WALL_CLOCK_CALLS = {("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today")}


def app_sources() -> list[Path]:
    files = [REPO / "app.py"]
    for package in ("connector", "slack_ui", "storage"):
        files += sorted((REPO / package).rglob("*.py"))
    return files


def wall_clock_reads(source: str) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value
        owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
        call = (owner_name, node.func.attr)
        if call in WALL_CLOCK_CALLS or call == ("time", "time"):
            found.append((node.lineno, ".".join(call)))
    return found


def test_the_scan_finds_every_way_of_reading_the_wall_clock() -> None:
    source = (
        "import datetime as dt, time\nfrom datetime import date, datetime\n"
        "a = dt.datetime.now(dt.UTC)\nb = datetime.utcnow()\nc = date.today()\nd = time.time()\n"
        "e = dt.date.today()\nf = time.monotonic()\n"
    )
    assert [what for _, what in wall_clock_reads(source)] == [
        "datetime.now",
        "datetime.utcnow",
        "date.today",
        "time.time",
        "date.today",
    ]


@pytest.mark.parametrize("path", app_sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_only_the_clock_module_reads_the_wall_clock(path: Path) -> None:
    reads = wall_clock_reads(path.read_text())
    if path == CLOCK_MODULE:
        assert reads, "the clock module is where the wall clock is read"
        return
    assert reads == [], f"{path.relative_to(REPO)} reads the wall clock: take the injected clock instead"


def test_no_time_column_has_a_default() -> None:
    from sqlalchemy import DateTime

    from storage.models import Base

    for table in Base.metadata.tables.values():
        for column in table.columns:
            if not isinstance(column.type, DateTime) and not isinstance(
                getattr(column.type, "impl", None), DateTime
            ):
                continue
            default = column.default
            assert default is None and column.server_default is None, (
                f"{table.name}.{column.name} has a default: stored times come from the injected clock"
            )


def test_the_test_clock_starts_where_the_variable_says(monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    from tests.support.live import CLOCK_START_VARIABLE, DEFAULT_CLOCK_START, FakeClock

    monkeypatch.delenv(CLOCK_START_VARIABLE, raising=False)
    assert FakeClock()() == DEFAULT_CLOCK_START
    monkeypatch.setenv(CLOCK_START_VARIABLE, "2028-02-29T23:59 America/New_York")
    assert FakeClock()() == dt.datetime(2028, 3, 1, 4, 59, tzinfo=dt.UTC)  # EST: UTC-5
    monkeypatch.setenv(CLOCK_START_VARIABLE, "2027-07-01T12:00+02:00")
    assert FakeClock()() == dt.datetime(2027, 7, 1, 10, 0, tzinfo=dt.UTC)
    monkeypatch.setenv(CLOCK_START_VARIABLE, "2027-07-01T12:00")
    with pytest.raises(ValueError, match=CLOCK_START_VARIABLE):
        FakeClock()
