"""`fbslack`: serve, worker, doctor, simulate, audit, replay, db upgrade, keys generate/rotate."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from connector.domain.clock import system_clock
from connector.domain.settings import ConfigError, Settings, load_settings
from connector.features.audit import cli as cli_audit
from connector.ops import preflight
from connector.ops.logs import configure_logging

log = logging.getLogger("fbslack")


# Read from the folder `fbslack` runs in; the environment wins over it (README, Configuration).
ENV_FILE = Path(".env")


def _stop(problem: Exception) -> NoReturn:
    """A setting that cannot work: one line per problem, naming the variable; never a traceback."""
    for line in str(problem).splitlines():
        print(f"fbslack: {line}", file=sys.stderr)
    raise SystemExit(2)


def _settings(*, database: bool = False) -> Settings:
    """The settings, with logging set up; with `database`, the database must exist and answer."""
    try:
        settings = load_settings(env_file=ENV_FILE)
        if database:
            preflight.check_database(settings, create=False)
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
        preflight.check_database(settings, create=True)
        preflight.check_data_dir(settings)
    except preflight.StartupError as exc:
        _stop(exc)
    db = Database(settings.resolved_database_url)
    try:
        if db.dialect == "sqlite":
            # The embedded default must work from a fresh clone: bring the schema up to date here,
            # once, before the workers fork.
            migrate.upgrade(db.engine)
        elif not migrate.is_up_to_date(db.engine):
            print(
                "fbslack: the database schema is not up to date: run `fbslack db upgrade` first",
                file=sys.stderr,
            )
            return 1
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
        db.dialect,
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
    from storage import migrate
    from storage.crypto import build_cipher
    from storage.db import Database

    try:
        sample = simulate.Sample.of(args.event, amount=args.amount, party=args.client, currency=args.currency)
    except simulate.SimulateError as exc:
        print(f"fbslack simulate: {exc}", file=sys.stderr)
        return exc.exit_code
    settings = _settings(database=True)
    try:
        url = simulate.instance_url(args.url or settings.public_url or f"http://127.0.0.1:{settings.port}")
    except simulate.SimulateError as exc:
        print(f"fbslack simulate: {exc}", file=sys.stderr)
        return exc.exit_code
    db = Database(settings.resolved_database_url, pool_size=1)
    try:
        if not migrate.is_up_to_date(db.engine):
            print(
                "fbslack simulate: the database schema is not up to date: run `fbslack db upgrade`",
                file=sys.stderr,
            )
            return 2
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


def _argument(parse: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse type from a parser raising ValueError: argparse then prints our reason."""

    def convert(text: str) -> object:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fbslack", description="FreshBooks to Slack connector")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the production server (gunicorn)")
    serve.add_argument("--workers", type=int, help="worker processes (default WEB_WORKERS)")
    serve.add_argument("--threads", type=int, help="threads per worker (default WEB_THREADS)")
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("doctor", help="check the setup end to end").set_defaults(func=cmd_doctor)
    cli_audit.add_commands(sub, lambda: _settings(database=True))

    from connector.ops.simulate import SIMULATED_EVENTS, parse_amount, parse_currency, parse_name

    simulate = sub.add_parser(
        "simulate",
        help="send a signed sample webhook to the running instance (FreshBooks is not contacted)",
        description="Send the running instance a correctly signed sample FreshBooks webhook, to try the "
        "routing rules. Run it with the server's environment (DATABASE_URL, ENCRYPTION_KEYS).",
    )
    simulate.add_argument("event", help="one of: " + ", ".join(SIMULATED_EVENTS))
    simulate.add_argument("--amount", type=_argument(parse_amount), help="e.g. 5000 or 5,000.00")
    simulate.add_argument(
        "--client",
        type=_argument(parse_name),
        help="client name (invoices, payments) or vendor (bills, expenses)",
    )
    simulate.add_argument(
        "--currency", type=_argument(parse_currency), help="three-letter code (default USD)"
    )
    simulate.add_argument("--connection", type=int, help="FreshBooks connection id (when there are several)")
    simulate.add_argument(
        "--url", help="the instance's base URL (default PUBLIC_URL, else http://127.0.0.1:PORT)"
    )
    simulate.set_defaults(func=cmd_simulate)

    worker = sub.add_parser("worker", help="run only the background process (serve starts one itself)")
    worker.add_argument("--wake-path", required=True, help="Unix socket the web workers wake it through")
    worker.add_argument("--parent-pid", type=int, help="stop when this process (serve's master) is gone")
    worker.set_defaults(func=cmd_worker)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="apply all migrations").set_defaults(func=cmd_db_upgrade)
    db.add_parser("current", help="show the schema revision").set_defaults(func=cmd_db_current)

    keys = sub.add_parser("keys", help="encryption keys").add_subparsers(dest="keys_command", required=True)
    keys.add_parser("generate", help="print a new Fernet key").set_defaults(func=cmd_keys_generate)
    rotate = keys.add_parser("rotate", help="re-encrypt everything under the first ENCRYPTION_KEYS key")
    rotate.add_argument("--batch-size", type=int, default=500)
    rotate.set_defaults(func=cmd_keys_rotate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
