"""Our own HTML pages in tests: the app on a real HTTP server for given settings, and a page's
elements by id (stdlib parser, so a test reads what a browser would, not a regex's guess)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from werkzeug.serving import make_server

from app import Services
from connector.domain.clock import Clock
from connector.domain.settings import Settings
from storage import migrate
from storage.db import Database
from tests.support.live import FakeClock, make_settings

# Elements that never have a closing tag.
_VOID = frozenset({"meta", "link", "br", "hr", "img", "input"})


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""
    children: list[Element] = field(default_factory=list)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.by_id: dict[str, Element] = {}
        self.all: list[Element] = []
        self._open: list[Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.all.append(element)
        if self._open:
            self._open[-1].children.append(element)
        if "id" in element.attrs:
            assert element.attrs["id"] not in self.by_id, f"duplicate id {element.attrs['id']!r}"
            self.by_id[element.attrs["id"]] = element
        if tag not in _VOID:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop().tag == tag:
                break

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.text += data


@dataclass(frozen=True)
class Page:
    """A parsed page: elements by id, every element, and the visible text."""

    by_id: dict[str, Element]
    elements: list[Element]

    def text_of(self, element_id: str) -> str:
        return self.by_id[element_id].text

    def with_attr(self, name: str) -> list[Element]:
        return [e for e in self.elements if name in e.attrs]


def parse_page(markup: str) -> Page:
    collector = _Collector()
    collector.feed(markup)
    collector.close()
    return Page(by_id=collector.by_id, elements=collector.all)


@dataclass(frozen=True)
class Served:
    url: str
    settings: Settings
    services: Services


@contextlib.contextmanager
def serve_app(tmp_path: Path, *, clock: Clock | None = None, **env: str) -> Iterator[Served]:
    """`create_app` for the environment `env` on a real HTTP server (background loops off). Without
    DATABASE_URL, a migrated SQLite database in `tmp_path`."""
    from app import create_app

    if "DATABASE_URL" not in env:
        env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'app.db'}"
        database = Database(env["DATABASE_URL"])
        migrate.upgrade(database.engine)
        database.dispose()
    settings = make_settings(tmp_path, **env)
    flask_app = create_app(settings, clock=clock or FakeClock(), start_background=False)
    services: Services = flask_app.extensions["fbslack"]
    server = make_server("127.0.0.1", 0, flask_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield Served(url=f"http://127.0.0.1:{server.server_port}", settings=settings, services=services)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        services.stop()
