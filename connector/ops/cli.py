"""`fbslack`: serve, worker, demo, doctor, simulate, audit, replay, db upgrade, keys generate/rotate."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from connector.domain.clock import system_clock
from connector.domain.settings import ConfigError, Settings, load_settings
from connector.features.audit import cli as cli_audit
from connector.ops import preflight
from connector.ops.logs import configure_logging

log = logging.getLogger("fbslack")


# Read from the folder `fbslack` runs in; the environment wins over it (README, Configuration).
# ENV_FILE_VARIABLE names another file; set empty, no file is read (the test suite does that, so a
# .env in the clone never reaches the servers it starts).
ENV_FILE = Path(".env")
ENV_FILE_VARIABLE = "FBSLACK_ENV_FILE"


def _env_file() -> Path | None:
    named = os.environ.get(ENV_FILE_VARIABLE)
    if named is None:
        return ENV_FILE
    if named and not Path(named).is_file():
        raise ConfigError(f"{ENV_FILE_VARIABLE}: there is no file at {Path(named).absolute()}")
    return Path(named) if named else None


def _stop(problem: Exception) -> NoReturn:
    """A setting that cannot work: one line per problem, naming the variable; never a traceback."""
    for line in str(problem).splitlines():
        print(f"fbslack: {line}", file=sys.stderr)
    raise SystemExit(2)


def _settings(*, database: bool = False) -> Settings:
    """The settings, with logging set up; with `database`, the database must exist, answer and
    have the latest schema."""
    try:
        settings = load_settings(env_file=_env_file())
        if database:
            preflight.check_schema(preflight.check_database(settings, create=False))
    except (ConfigError, preflight.StartupError) as exc:
        _stop(exc)
    configure_logging(level=settings.log_level, json_lines=settings.log_format == "json")
    return settings


def cmd_serve(args: argparse.Namespace) -> int:
    from connector.ops.server import Server, prepare_metrics_dir
    from storage import migrate
    from storage.db import Database

    settings = _settings()
    try:
        # The port first: it creates nothing.
        preflight.check_port(settings.host, settings.port)
        target = preflight.check_database(settings, create=True)
        preflight.check_data_dir(settings)
        if target.sqlite_file is None:
            # Several hosts may share PostgreSQL: one of them must not migrate behind the others' backs.
            preflight.check_schema(target)
    except preflight.StartupError as exc:
        _stop(exc)
    if target.sqlite_file is not None:
        # The embedded default must work from a fresh clone: bring the schema up to date here,
        # once, before the workers fork.
        db = Database(settings.resolved_database_url)
        try:
            migrate.upgrade(db.engine)
        finally:
            db.dispose()
    metrics_dir = prepare_metrics_dir()  # before `app` imports prometheus_client
    from storage.crypto import build_cipher

    build_cipher(settings)  # creates the development key once, before the workers fork
    for step in settings.missing_setup():  # once here, not once per web worker (as app.create_app would)
        log.warning("setup: %s", step)
    log.info(
        "serving on http://%s:%d (%d workers x %d threads, %s)",
        settings.host,
        settings.port,
        args.workers or settings.resolved_web_workers,
        args.threads or settings.resolved_web_threads,
        target.kind,
    )
    Server(
        settings,
        workers=args.workers or settings.resolved_web_workers,
        threads=args.threads or settings.resolved_web_threads,
        metrics_dir=metrics_dir,
    ).run()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """The background process alone: pipeline, delivery and scheduled jobs (`serve` starts one)."""
    import signal
    import threading

    from app import run_background

    settings = _settings(database=True)
    # Acknowledging webhooks is what FreshBooks times; fetching and posting can wait a moment.
    # A lower CPU priority keeps the background from crowding the web workers on a small machine.
    os.nice(5)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.parent_pid is not None:
        # Started by `serve`: if its master dies without stopping us (SIGKILL, the OOM killer), we
        # are re-parented and would run on unseen, next to the background process of the next serve.
        def watch_parent() -> None:
            while not stop.wait(1.0):
                if os.getppid() != args.parent_pid:
                    log.warning("the fbslack serve master is gone: stopping the background process")
                    stop.set()

        threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    run_background(settings, args.wake_path, stop)
    return 0


def cmd_db_upgrade(_args: argparse.Namespace) -> int:
    from storage import migrate
    from storage.db import Database

    settings = _settings()
    try:
        preflight.check_database(settings, create=True)
    except preflight.StartupError as exc:
        _stop(exc)
    db = Database(settings.resolved_database_url)
    try:
        before = migrate.current_revision(db.engine)
        migrate.upgrade(db.engine)
        after = migrate.current_revision(db.engine)
    finally:
        db.dispose()
    print(f"database schema: {before or 'empty'} -> {after}")
    return 0


def cmd_db_current(_args: argparse.Namespace) -> int:
    from storage import migrate
    from storage.db import Database

    settings = _settings()
    missing = preflight.missing_database(preflight.database_target(settings), "fbslack db upgrade")
    if missing:
        # Connecting would create an empty file where none was meant to be.
        print(f"database schema: empty ({missing})")
        return 1
    try:
        preflight.check_database(settings, create=False)
    except preflight.StartupError as exc:
        _stop(exc)
    db = Database(settings.resolved_database_url)
    try:
        current = migrate.current_revision(db.engine)
        head = migrate.head_revision(db.engine)
    finally:
        db.dispose()
    state = "up to date" if current == head else f"behind (latest is {head})"
    print(f"database schema: {current or 'empty'}, {state}")
    return 0 if current == head else 1


def cmd_keys_generate(_args: argparse.Namespace) -> int:
    from storage.crypto import generate_key

    print(generate_key())
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from storage.crypto import build_cipher
    from storage.db import Database
    from storage.rotation import rotate_keys

    settings = _settings(database=True)
    if len(settings.encryption_keys) < 2:
        log.warning(
            "ENCRYPTION_KEYS holds one key: put the new key first and keep the old ones after it, "
            "then run this again (nothing to rotate from)"
        )
    db = Database(settings.resolved_database_url)

    def progress(column: str, scanned: int, rotated: int) -> None:
        print(f"  {column}: scanned {scanned}, re-encrypted {rotated}", file=sys.stderr)

    try:
        report = rotate_keys(db, build_cipher(settings), batch_size=args.batch_size, progress=progress)
    finally:
        db.dispose()
    print(
        f"re-encrypted {report.rotated} values; {report.skipped_current} were already under the "
        f"current key; {report.changed_meanwhile} changed while rotating (already current)"
    )
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    """Print one message as it would be posted; reads no settings, opens no database or socket."""
    from connector.ops import preview

    try:
        sample = preview.request(args.event, amount=args.amount, client=args.client, currency=args.currency)
    except preview.PreviewError as exc:
        print(f"fbslack preview: {exc}", file=sys.stderr)
        return 2
    result = preview.preview(sample, system_clock())
    print(preview.format_json(result) if args.json else preview.format_text(result))
    return 0


def cmd_doctor(_args: argparse.Namespace) -> int:
    """Check the setup; create nothing (a missing SQLite database or key is reported, not made)."""
    from connector.ops import doctor
    from connector.ops.doctor import skipped
    from storage.db import Database

    settings = _settings()
    findings = doctor.check_settings(settings)
    key_problem = any(f.failed for f in findings if f.check == "encryption key")
    problem, url = doctor.reach_database(settings)
    if url is None:
        assert problem is not None
        findings += [problem, skipped("migrations", "the database could not be opened")]
    else:
        db = Database(url, pool_size=1)
        try:
            findings += doctor.check_database(db)
        finally:
            db.dispose()
    database_ok = not any(f.failed for f in findings if f.check in ("database", "migrations"))
    # The stored tokens and installs are read with the app's own services, built only when that
    # creates nothing: the database exists and the key that wrote it is at hand.
    needs = None if database_ok and not key_problem else "needs the database and the encryption key (above)"

    client = doctor.bot_client(settings)
    if client is not None:
        findings += doctor.check_slack(client)
    elif not settings.slack_client_id:
        findings.append(skipped("slack auth.test", "no bot token to test (see slack app)"))
    if needs is None:
        from app import build_services
        from storage import connections

        services = build_services(settings)
        try:
            if settings.slack_client_id and services.slack_tokens is None:
                findings.append(
                    skipped("slack workspaces", "Slack's settings are incomplete (see slack app)")
                )
            elif services.slack_tokens is not None:
                with services.db.read() as session:
                    teams = connections.team_ids(session)
                findings += doctor.check_slack_workspaces(services.slack_tokens.client_for_team, teams)
            findings += doctor.check_connections(
                services.db, services.cipher, services.tokens, services.freshbooks
            )
        finally:
            services.stop()
    else:
        if settings.slack_client_id:
            findings.append(skipped("slack workspaces", needs))
        findings.append(skipped("freshbooks connections", needs))
    findings += doctor.check_clock(settings.slack_api_url, system_clock)
    print(doctor.format_report(findings, settings.urls_to_paste()))
    return 1 if any(f.failed for f in findings) else 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """Send a signed sample webhook to the running instance; 0 only if it answered 2xx."""
    from connector.ops import simulate
    from storage.crypto import build_cipher
    from storage.db import Database

    try:
        sample = simulate.Sample.of(args.event, amount=args.amount, party=args.client, currency=args.currency)
    except simulate.SimulateError as exc:
        print(f"fbslack simulate: {exc}", file=sys.stderr)
        return exc.exit_code
    settings = _settings()  # the database is checked below: the demo's address needs none
    try:
        url = simulate.instance_url(args.url or settings.public_url or f"http://127.0.0.1:{settings.port}")
    except simulate.SimulateError as exc:
        print(f"fbslack simulate: {exc}", file=sys.stderr)
        return exc.exit_code
    from connector.ops.demo import client as demo_client

    if args.url and demo_client.is_demo_address(url):  # the demo holds its database and keys
        try:
            report = demo_client.simulate_on_demo(
                url, event=args.event, amount=args.amount, client=args.client, currency=args.currency
            )
        except simulate.SimulateError as exc:
            print(f"fbslack simulate: {exc}", file=sys.stderr)
            return exc.exit_code
        print(report)
        return 0
    try:  # a missing SQLite file is reported, not created (most likely run from another folder)
        preflight.check_schema(preflight.check_database(settings, create=False))
    except preflight.StartupError as exc:
        _stop(exc)
    db = Database(settings.resolved_database_url, pool_size=1)
    try:
        result = simulate.simulate(
            sample,
            db=db,
            cipher=build_cipher(settings),
            base_url=url,
            connection_id=args.connection,
            now=system_clock(),
        )
    except simulate.SimulateError as exc:
        print(f"fbslack simulate: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        db.dispose()
    print(simulate.describe(sample, result))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The real app on sample data, with a local Slack stand-in: nothing to set up."""
    import signal
    import threading

    from connector.ops.demo import runtime

    refusal = f"fbslack demo: {runtime.REFUSAL} (unset {', '.join(runtime.SLACK_CREDENTIALS)})"
    if runtime.slack_credentials_in(os.environ):  # before the settings, which may refuse them first
        print(refusal, file=sys.stderr)
        return 2
    settings = _settings()
    if runtime.slack_credentials_set(os.environ, settings):
        print(refusal, file=sys.stderr)
        return 2
    logging.getLogger("alembic").setLevel(logging.WARNING)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        demo, shutdown = runtime.start_demo(settings, port=args.port)
    except runtime.DemoRefused as exc:
        print(f"fbslack demo: {exc}", file=sys.stderr)
        return 2
    print(
        f"Demo running: open {demo.page_url}  "
        f"(Ctrl-C stops it; its database: {runtime.demo_database(settings.data_dir)})\n"
        f"From another terminal: fbslack simulate invoice.create --amount 5000 --url {demo.page_url}",
        flush=True,
    )
    try:
        stop.wait()
    finally:
        shutdown()
    return 0


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ValueError(f"{text!r} is not a port (0 to 65535; 0 picks a free one)")
    return int(text)


class CliParser(argparse.ArgumentParser):
    """argparse, speaking command-line: `--amount must be a number (got abc)`, not a Python repr.
    Descriptions and epilogs keep their line breaks (the examples are laid out by hand)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: {cli_wording(message)}\n")


_ARGUMENT = re.compile(r"^argument (?P<name>[^:]+?): (?P<reason>.*)$", re.DOTALL)
_INVALID_CHOICE = re.compile(r"^invalid choice: '(?P<value>[^']*)' \(choose from (?P<choices>.*)\)$")
_INVALID_NUMBER = re.compile(r"^invalid (?P<kind>int|float) value: '(?P<value>[^']*)'$")
_SUBCOMMANDS = ("COMMAND", "SUBCOMMAND")


def cli_wording(message: str) -> str:
    """argparse's error message in the words of the command line."""
    match = _ARGUMENT.match(message)
    if match is None:
        return message
    name, reason = match["name"].split("/")[-1], match["reason"]
    if choice := _INVALID_CHOICE.match(reason):
        choices = choice["choices"].replace("'", "")
        what = "a command" if name in _SUBCOMMANDS else f"a {name}"
        return f"{choice['value']} is not {what}: choose from {choices}"
    if number := _INVALID_NUMBER.match(reason):
        kind = "a whole number" if number["kind"] == "int" else "a number"
        return f"{name} must be {kind} (got {number['value']})"
    if reason.startswith("must "):
        return f"{name} {reason}"
    return f"{name}: {reason}"


def _argument(parse: Callable[[str], object], expected: str | None = None) -> Callable[[str], object]:
    """An argparse type from a parser raising ValueError. With `expected` the error reads
    `--amount must be <expected> (got abc)`; without, the parser's own reason (unquoted)."""

    def convert(text: str) -> object:
        try:
            return parse(text)
        except ValueError as exc:
            reason = f"must be {expected} (got {text})" if expected else str(exc).replace(repr(text), text)
            raise argparse.ArgumentTypeError(reason) from None

    return convert


def _at_least(minimum: int) -> Callable[[str], object]:
    def whole(text: str) -> int:
        value = int(text.strip())
        if value < minimum:
            raise ValueError(text)
        return value

    return _argument(whole, f"a whole number, {minimum} or more")


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(
        prog="fbslack",
        description="FreshBooks for Slack: the server, its background process and operator tools.\n"
        "Settings come from the environment and from .env in the current folder (see README).",
        epilog="Start with `fbslack doctor`: it says what is missing and how to fix it.\n"
        "`fbslack COMMAND --help` explains each command.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="run the server: web workers and the background process",
        description="Serve HTTP on HOST:PORT with gunicorn web workers, plus one background process\n"
        "(the pipeline, deliveries and scheduled jobs). On SQLite it creates the database\n"
        "and brings its schema up to date; on PostgreSQL run `fbslack db upgrade` first.",
        epilog="example:\n  PORT=8080 fbslack serve --workers 4",
    )
    serve.add_argument(
        "--workers", type=_at_least(1), metavar="N", help="web worker processes (default: WEB_WORKERS, 2)"
    )
    serve.add_argument(
        "--threads", type=_at_least(1), metavar="N", help="threads per web worker (default: WEB_THREADS, 8)"
    )
    serve.set_defaults(func=cmd_serve)

    sub.add_parser(
        "doctor",
        help="check the setup end to end and say what to fix",
        description="Check the settings, the database, Slack, the FreshBooks connections and the clock:\n"
        "one line per check, PASS, FAIL (with the fix) or SKIPPED (with the reason). Prints\n"
        "the URLs to paste into Slack and FreshBooks once PUBLIC_URL is set. Creates nothing;\n"
        "run it from the folder `fbslack serve` runs in. Exits 1 if any check fails.",
    ).set_defaults(func=cmd_doctor)
    cli_audit.add_commands(sub, lambda: _settings(database=True))

    from connector.ops.simulate import SIMULATED_EVENTS, parse_amount, parse_currency, parse_name

    simulate = sub.add_parser(
        "simulate",
        help="send a signed sample webhook to the running instance (FreshBooks is not contacted)",
        description="Send the running instance a correctly signed sample FreshBooks webhook, to try\n"
        "the routing rules. Run it with the server's environment (DATABASE_URL,\n"
        "ENCRYPTION_KEYS), from the folder `fbslack serve` runs in.",
        epilog="examples:\n"
        "  fbslack simulate invoice.create --amount 5,000 --client 'Acme Corp'\n"
        "  fbslack simulate expense.create --currency EUR --url https://fb.example.com",
    )
    simulate.add_argument("event", help="one of: " + ", ".join(SIMULATED_EVENTS))
    simulate.add_argument(
        "--amount",
        type=_argument(parse_amount, "a number more than 0 with at most 2 decimals, e.g. 5000 or 5,000.00"),
        help="the amount, e.g. 5000 or 5,000.00 (default: a sample amount)",
    )
    simulate.add_argument(
        "--client",
        metavar="NAME",
        type=_argument(parse_name),
        help="client name (invoices, payments) or vendor (bills, expenses)",
    )
    simulate.add_argument(
        "--currency",
        type=_argument(parse_currency, "a three-letter currency code, e.g. USD"),
        help="three-letter code (default: USD)",
    )
    simulate.add_argument(
        "--connection",
        type=_at_least(1),
        metavar="ID",
        help="FreshBooks connection id (needed when there are several)",
    )
    simulate.add_argument(
        "--url", help="the instance's base URL (default: PUBLIC_URL, else http://127.0.0.1:PORT)"
    )
    simulate.set_defaults(func=cmd_simulate)

    demo = sub.add_parser(
        "demo",
        help="try it with sample data: the real app, a sandbox FreshBooks and a local Slack stand-in",
        description="Run the real app against a built-in sandbox FreshBooks business and a local Slack "
        "stand-in, on its own database (DATA_DIR/demo.db, made anew each run), and print the address of "
        "its page. Refused when Slack credentials are set.",
    )
    demo.add_argument(
        "--port", type=_argument(_port), default=0, help="port on 127.0.0.1 (default: any free port)"
    )
    demo.set_defaults(func=cmd_demo)

    worker = sub.add_parser(
        "worker",
        help="run only the background process (`serve` starts one itself)",
        description="Run the background process alone: the pipeline, deliveries and scheduled jobs.\n"
        "`fbslack serve` starts one; run it by hand only to debug it.",
    )
    worker.add_argument(
        "--wake-path", required=True, metavar="PATH", help="the Unix socket the web workers wake it through"
    )
    worker.add_argument(
        "--parent-pid",
        type=_at_least(1),
        metavar="PID",
        help="stop when this process (serve's master) is gone",
    )
    worker.set_defaults(func=cmd_worker)

    db = sub.add_parser(
        "db",
        help="the database schema: upgrade, current",
        description="The database schema (Alembic migrations).",
    ).add_subparsers(dest="db_command", required=True, metavar="SUBCOMMAND")
    db.add_parser(
        "upgrade",
        help="apply all migrations (creates a SQLite database)",
        description="Bring the schema up to date: run it after each update, before `fbslack serve`\n"
        "on PostgreSQL (serve does it by itself on SQLite).",
    ).set_defaults(func=cmd_db_upgrade)
    db.add_parser(
        "current",
        help="show the schema revision",
        description="Show the schema revision; exits 1 when it is behind (or there is no database).",
    ).set_defaults(func=cmd_db_current)

    keys = sub.add_parser(
        "keys",
        help="encryption keys: generate, rotate",
        description="The Fernet keys in ENCRYPTION_KEYS that encrypt tokens and payloads at rest.",
    ).add_subparsers(dest="keys_command", required=True, metavar="SUBCOMMAND")
    keys.add_parser(
        "generate",
        help="print a new Fernet key",
        description="Print a new Fernet key, for ENCRYPTION_KEYS.",
        epilog="example:\n  export ENCRYPTION_KEYS=$(fbslack keys generate)",
    ).set_defaults(func=cmd_keys_generate)
    rotate = keys.add_parser(
        "rotate",
        help="re-encrypt everything under the first ENCRYPTION_KEYS key",
        description="Re-encrypt every stored secret and payload under the first key of ENCRYPTION_KEYS.\n"
        "Put the new key first, keep the old ones after it, run this, then drop the old ones.",
        epilog="example:\n  ENCRYPTION_KEYS=$NEW,$OLD fbslack keys rotate",
    )
    rotate.add_argument(
        "--batch-size",
        type=_at_least(1),
        default=500,
        metavar="N",
        help="rows re-encrypted per transaction (default: 500)",
    )
    rotate.set_defaults(func=cmd_keys_rotate)

    from connector.domain.events import ALL_EVENT_NAMES

    preview = sub.add_parser(
        "preview",
        help="print one message exactly as it would be posted (no database, network or account)",
        description="Print the message the app would post for an event, made from sample data: its "
        "fallback text, its Block Kit JSON and a link that opens it in Slack's Block Kit Builder.",
    )
    preview.add_argument("event", help="one of: " + ", ".join(ALL_EVENT_NAMES))
    preview.add_argument(
        "--amount",
        help="the invoice, payment, bill or expense amount, e.g. 5000 or 5,000.00 (invoice.paid and "
        "invoice.partially_paid: the invoice's total; a partial payment pays half)",
    )
    preview.add_argument("--client", help="client name (invoices, payments) or vendor (bills, expenses)")
    preview.add_argument("--currency", help="three-letter code (default USD)")
    preview.add_argument("--json", action="store_true", help="print only the chat.postMessage JSON payload")
    preview.set_defaults(func=cmd_preview)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except BrokenPipeError:
        # `fbslack preview ... | head`: the reader has all it wanted. Point stdout at /dev/null so
        # the interpreter's final flush does not fail again, and stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return result


if __name__ == "__main__":
    raise SystemExit(main())
