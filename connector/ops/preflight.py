"""What `fbslack` checks before it starts: the database, the data folder, the port.

Each problem becomes one StartupError line naming the setting to change and how, instead of the
traceback the first connection or bind would raise. `fbslack doctor` reports the same problems
through `database_problem`, and never creates anything.
"""

from __future__ import annotations

import errno
import re
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from connector.domain.settings import Settings, redact_url

# A PostgreSQL host that drops packets would otherwise hold the first connection for minutes.
CONNECT_TIMEOUT_SECONDS = 10


class StartupError(Exception):
    """One line: the setting, what is wrong, what to do."""


@dataclass(frozen=True, slots=True)
class DatabaseTarget:
    """Where the database is, in the words of the setting that chose it."""

    url: str  # SQLAlchemy URL, driver resolved
    variable: str  # DATABASE_URL, or DATA_DIR when the SQLite default is used
    sqlite_file: Path | None  # None: PostgreSQL, or SQLite in memory

    @property
    def kind(self) -> str:
        return "SQLite" if self.url.startswith("sqlite") else "PostgreSQL"

    def where(self) -> str:
        if self.sqlite_file is not None:
            return str(self.sqlite_file)
        parsed = _url(self.url)
        if parsed is None or parsed.get_backend_name() == "sqlite":
            return redact_url(self.url)
        return f"{parsed.host or 'localhost (Unix socket)'}:{parsed.port or 5432}/{parsed.database or ''}"


def _url(url: str) -> URL | None:
    try:
        return make_url(url)
    except ArgumentError:
        return None


def database_target(settings: Settings) -> DatabaseTarget:
    url = settings.resolved_database_url
    variable = "DATABASE_URL" if settings.database_url else "DATA_DIR"
    parsed = _url(url)
    sqlite_file = None
    if (
        parsed is not None
        and parsed.get_backend_name() == "sqlite"
        and parsed.database
        and parsed.database != ":memory:"
    ):
        sqlite_file = Path(parsed.database).absolute()
    return DatabaseTarget(url=url, variable=variable, sqlite_file=sqlite_file)


# psycopg's message: 'connection failed: connection to server at "h" (addr), port 1 failed: Connection
# refused\n\tIs the server running...': only the driver's reason is kept, the place is said once.
_PG_PREFIXES = re.compile(
    r'^(?:connection failed: )?(?:connection to server (?:at "[^"]*"(?: \([^)]*\))?, port \d+|on socket '
    r'"[^"]*") failed: )?'
)


def driver_reason(exc: BaseException) -> str:
    """The database driver's own reason for a failure, on one line."""
    orig = getattr(exc, "orig", None) or exc
    first = next((line.strip() for line in str(orig).splitlines() if line.strip()), "")
    reason = _PG_PREFIXES.sub("", first).removeprefix("FATAL:").strip()
    return reason or type(orig).__name__


def database_problem(target: DatabaseTarget, exc: BaseException) -> str:
    """One line for a database that could not be opened or reached."""
    where = f"{target.kind} at {target.where()}"
    if target.sqlite_file is not None:
        return (
            f"{target.variable}: cannot open the {where} ({driver_reason(exc)}): "
            "check that its folder exists and this user can write to it"
        )
    return (
        f"DATABASE_URL: cannot connect to {where} ({driver_reason(exc)}): check that the server is "
        "running there and that DATABASE_URL's host, port, user, password and database name are right"
    )


def missing_database(target: DatabaseTarget, command: str = "fbslack serve") -> str | None:
    """A SQLite file that is not there yet: connecting would create an empty one."""
    if target.sqlite_file is None or target.sqlite_file.exists():
        return None
    return (
        f"no database at {target.sqlite_file}: are you in the right folder? `{command}` creates it "
        f"(or set {target.variable})"
    )


def ensure_writable_folder(folder: Path, variable: str) -> None:
    """Create `folder` if needed and prove this process can write files in it."""
    if folder.exists() and not folder.is_dir():
        raise StartupError(f"{variable}: {folder.absolute()} is a file, not a folder: choose a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise StartupError(
            f"{variable}: cannot write to the folder {folder.absolute()} ({reason}): "
            f"choose a folder this user can write to, or fix its permissions"
        ) from None


def check_database(settings: Settings, *, create: bool, command: str = "fbslack serve") -> DatabaseTarget:
    """Raise StartupError unless the database can be reached; with `create`, a SQLite file (and its
    folder) may be created, as `serve` and `db upgrade` do on a fresh clone."""
    target = database_target(settings)
    if target.sqlite_file is not None:
        if create:
            ensure_writable_folder(target.sqlite_file.parent, target.variable)
        elif problem := missing_database(target, command):
            raise StartupError(problem)
    connect_args = {} if target.sqlite_file is not None else {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    try:
        engine = create_engine(target.url, poolclass=NullPool, connect_args=connect_args)
    except (ArgumentError, ImportError) as exc:  # the settings check lets no such URL through
        raise StartupError(f"DATABASE_URL: cannot use it ({type(exc).__name__})") from None
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise StartupError(database_problem(target, exc)) from None
    finally:
        engine.dispose()
    return target


def check_schema(target: DatabaseTarget) -> None:
    """Raise StartupError unless the schema is at the latest migration: the app's queries would
    fail on every table otherwise, in a loop."""
    from storage import migrate

    engine = create_engine(target.url, poolclass=NullPool)
    try:
        current, head = migrate.current_revision(engine), migrate.head_revision(engine)
    except SQLAlchemyError as exc:
        raise StartupError(database_problem(target, exc)) from None
    finally:
        engine.dispose()
    if current != head:
        raise StartupError(
            f"the database schema of the {target.kind} at {target.where()} is behind "
            f"({current or 'empty'}, latest {head}): run `fbslack db upgrade`"
        )


def check_data_dir(settings: Settings) -> None:
    """DATA_DIR must be writable when it is used: the default SQLite database, the development key."""
    if not settings.database_url or not settings.encryption_keys:
        ensure_writable_folder(settings.data_dir, "DATA_DIR")


def check_port(host: str, port: int) -> None:
    """Raise StartupError if `serve` could not listen on HOST:PORT.

    The web workers bind with SO_REUSEPORT, which would let a second `fbslack serve` on the same
    port share it silently; this probe binds without it, so it sees that one too.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As gunicorn does: a port left in TIME_WAIT by the last run is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise StartupError(_bind_problem(host, port, exc)) from None
        except (OverflowError, ValueError, UnicodeError):
            raise StartupError(f"HOST: cannot listen on {host!r}: use an address like 0.0.0.0") from None


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"PORT: {port} is already in use on {host} (another program, or another `fbslack serve`): "
            "stop it or set PORT to a free port"
        )
    if exc.errno == errno.EACCES:
        return f"PORT: {port} needs privileges to listen on: set PORT to 1024 or above (3000 is the default)"
    if exc.errno in (errno.EADDRNOTAVAIL, getattr(errno, "EAI_NONAME", -1)) or isinstance(
        exc, socket.gaierror
    ):
        return f"HOST: {host} is not an address of this machine: use 0.0.0.0 (every address) or 127.0.0.1"
    return f"PORT: cannot listen on {host}:{port} ({exc.strerror or type(exc).__name__})"
