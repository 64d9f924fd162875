"""Composition root: builds the services, the Flask app, the Bolt app and the scheduler. No logic here."""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask, Response, jsonify, request
from slack_bolt import App as BoltApp
from slack_bolt.adapter.flask import SlackRequestHandler
from slack_bolt.adapter.flask.handler import to_bolt_request, to_flask_response
from slack_sdk import WebClient
from sqlalchemy.exc import SQLAlchemyError

from connector.domain.clock import Clock, system_clock
from connector.domain.settings import Settings, load_settings
from connector.features.audit.replay import ReplayService
from connector.features.audit.search import AuditService
from connector.features.digest.sender import DigestSender, share_chart_after
from connector.features.digest.service import DigestService
from connector.features.home import HomeService
from connector.features.limits import SampleLimit
from connector.features.permissions import ChannelVisibility, Permissions
from connector.features.retention import RetentionPurge
from connector.features.rules.preview import PreviewService
from connector.features.rules.service import RuleService
from connector.features.status import workspace_status
from connector.freshbooks.callbacks import CallbackRegistrar
from connector.freshbooks.client import FreshBooksClient
from connector.freshbooks.connect import ConnectionSetup, ConnectService, DisconnectService, OAuthConfig
from connector.freshbooks.monitor import CHECK_INTERVAL, CallbackMonitor
from connector.freshbooks.tokens import TokenManager
from connector.freshbooks.verification import VerificationService
from connector.ops.setup_page import gather_setup_state, load_manifest_template
from connector.ops.web import Health, create_blueprint
from connector.pipeline import wake as wakeup
from connector.pipeline.deliver.engine import DeliveryEngine
from connector.pipeline.enrich.enrich import Enricher
from connector.pipeline.enrich.reconcile import Reconciler
from connector.pipeline.inbox_worker import InboxWorker
from connector.pipeline.index import AuditIndex
from connector.pipeline.ingest.intake import Intake
from connector.pipeline.loop import BackgroundLoop
from connector.pipeline.route.router import Router
from connector.pipeline.stages import background_stages, run_stages
from connector.pipeline.wake import WakeListener, WakeSender
from connector.slack.notify import LogNotifier, Notifier, SlackNotifier, workspace_name
from connector.slack.slack_tokens import SlackTokens
from connector.telemetry import metrics
from slack_ui.answer import ARRIVED
from slack_ui.audit_commands import AuditCommands
from slack_ui.bolt_app import build_bolt_app, build_multi_workspace, build_slack_access
from slack_ui.commands import CommandServices
from slack_ui.digest_commands import DigestCommands
from slack_ui.url_check import url_check_challenge
from storage import connections, migrate
from storage.crypto import Cipher, build_cipher
from storage.db import Database
from storage.search import BlindIndex

log = logging.getLogger("fbslack")


@dataclass
class Services:
    """Everything one process runs, built once from the settings."""

    settings: Settings
    db: Database
    cipher: Cipher
    freshbooks: FreshBooksClient
    tokens: TokenManager
    intake: Intake
    verification: VerificationService
    registrar: CallbackRegistrar | None
    monitor: CallbackMonitor | None
    connect: ConnectService
    disconnect: DisconnectService
    inbox_worker: InboxWorker
    reconciler: Reconciler
    router: Router
    engine: DeliveryEngine
    audit: AuditService
    replay: ReplayService
    retention: RetentionPurge
    digest_sender: DigestSender
    inbox_loop: BackgroundLoop
    delivery_loop: BackgroundLoop
    verification_loop: BackgroundLoop
    scheduler: BackgroundScheduler
    background: ThreadPoolExecutor
    slack_client: WebClient | None
    bolt: BoltApp | None
    slack_tokens: SlackTokens | None = None  # multi-workspace mode
    _started: bool = field(default=False, init=False)

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.inbox_loop.start()
        self.verification_loop.start()
        self.delivery_loop.start()
        self.scheduler.start()
        # Pick up whatever a previous process left behind.
        self.inbox_loop.wake()
        self.verification_loop.wake()
        self.delivery_loop.wake()
        self.scheduler.add_job(self.engine.resume_workspaces, id="resume-at-start")  # once, now

    def stop(self) -> None:
        if self._started:
            self._started = False
            self.scheduler.shutdown(wait=False)
            self.inbox_loop.stop()
            self.verification_loop.stop()
            self.delivery_loop.stop()
        self.engine.close()
        self.background.shutdown(wait=True, cancel_futures=False)
        self.freshbooks.close()
        self.db.dispose()

    def health(self) -> Health:
        try:
            self.db.ping()
        except SQLAlchemyError as exc:
            log.error("health check: database unreachable (%s)", type(exc).__name__)
            return Health(ok=False, database="unreachable")
        return Health(ok=True, database="ok")


def _oauth_config(settings: Settings) -> OAuthConfig | None:
    if not (settings.freshbooks_configured and settings.freshbooks_redirect_uri):
        return None
    assert settings.freshbooks_client_id and settings.freshbooks_client_secret
    return OAuthConfig(
        client_id=settings.freshbooks_client_id,
        client_secret=settings.freshbooks_client_secret.get_secret_value(),
        auth_url=settings.freshbooks_auth_url,
        redirect_uri=settings.freshbooks_redirect_uri,
    )


def _build_scheduler(
    settings: Settings,
    *,
    inbox_loop: BackgroundLoop,
    verification_loop: BackgroundLoop,
    delivery_loop: BackgroundLoop,
    reconciler: Reconciler,
    monitor: CallbackMonitor | None,
    resume_workspaces: Callable[[], object],
    checkpoint: Callable[[], None],
    purge: Callable[[], object],
    digests: Callable[[], object],
) -> BackgroundScheduler:
    """The safety net and the periodic jobs. The loops wake on their own when work arrives; the
    nudges make retries and rows left by a crashed process due even while a loop idles. Each
    periodic job takes a database lease, so it runs once per interval however many processes tick."""

    def poll() -> None:
        if reconciler.run_poll():
            inbox_loop.wake()  # route what it found

    def overdue_scan() -> None:
        if reconciler.run_overdue_scan():
            inbox_loop.wake()

    scheduler = BackgroundScheduler(timezone="UTC")
    once = {"max_instances": 1, "coalesce": True}
    scheduler.add_job(inbox_loop.wake, "interval", seconds=settings.inbox_sweep_seconds, id="inbox-sweep")
    scheduler.add_job(verification_loop.wake, "interval", seconds=60, id="verification-sweep")
    scheduler.add_job(delivery_loop.wake, "interval", seconds=15, id="delivery-sweep")
    scheduler.add_job(checkpoint, "interval", seconds=2, id="sqlite-checkpoint", **once)
    scheduler.add_job(resume_workspaces, "interval", minutes=15, id="resume-workspaces", **once)
    scheduler.add_job(poll, "interval", seconds=settings.reconcile_poll_seconds, id="reconcile-poll", **once)
    # Ticks at most hourly whatever the interval: the scan's lease decides whether it runs, so a
    # restarted process does not postpone a due scan by a whole interval.
    scan_tick = min(settings.overdue_scan_seconds, 3600)
    scheduler.add_job(overdue_scan, "interval", seconds=scan_tick, id="overdue-scan", **once)
    scheduler.add_job(purge, "interval", hours=1, id="retention-purge", **once)
    # Every minute: the digests that became due (their runs' unique key and leases make each go
    # out once however many processes tick).
    scheduler.add_job(digests, "interval", seconds=60, id="digests", **once)
    if monitor is not None:
        scheduler.add_job(
            monitor.run, "interval", seconds=CHECK_INTERVAL.total_seconds(), id="callback-check", **once
        )
    return scheduler


def build_services(
    settings: Settings, *, clock: Clock = system_clock, wake: WakeSender | None = None
) -> Services:
    """Everything one process needs. `wake`, when given, is how the intake reaches the background
    process (production); without it the intake wakes this process's own loops (tests, one process)."""
    db = Database(settings.resolved_database_url, pool_size=settings.resolved_web_threads + 4)
    cipher = build_cipher(settings)
    freshbooks = FreshBooksClient(
        base_url=settings.freshbooks_api_url, timeout=settings.freshbooks_timeout_seconds
    )
    slack = build_slack_access(settings, db=db, cipher=cipher, clock=clock)
    notifier: Notifier = SlackNotifier(slack.client_for_team) if slack.configured else LogNotifier()
    oauth_config = _oauth_config(settings)

    def on_revoked(connection_id: int, _reason: str) -> None:
        with db.session() as session:
            team_id, user_id = connections.team_of(session, connection_id)
        if user_id:
            notifier.tell_user(
                team_id=team_id,
                user_id=user_id,
                text=":x: FreshBooks refused to renew this workspace's access (it was revoked or expired). "
                "Run `/freshbooks connect` to reconnect: events keep arriving meanwhile and are processed "
                "after the reconnect.",
            )

    tokens = TokenManager(
        db=db,
        cipher=cipher,
        client=freshbooks,
        client_id=oauth_config.client_id if oauth_config else None,
        client_secret=oauth_config.client_secret if oauth_config else None,
        redirect_uri=oauth_config.redirect_uri if oauth_config else None,
        clock=clock,
        on_revoked=on_revoked,
    )
    verification = VerificationService(db=db, cipher=cipher, client=freshbooks, tokens=tokens, clock=clock)
    verification_loop = BackgroundLoop("callback-verification", verification.process_pending, idle_seconds=60)
    enricher = Enricher(db=db, cipher=cipher, client=freshbooks, tokens=tokens, clock=clock)
    inbox_worker = InboxWorker(
        db=db, cipher=cipher, handler=enricher, clock=clock, lease_seconds=settings.inbox_lease_seconds
    )
    reconciler = Reconciler(
        db=db,
        cipher=cipher,
        client=freshbooks,
        tokens=tokens,
        enricher=enricher,
        clock=clock,
        poll_interval=dt.timedelta(seconds=settings.reconcile_poll_seconds),
        scan_interval=dt.timedelta(seconds=settings.overdue_scan_seconds),
    )
    blind_index = BlindIndex(db, cipher, clock=clock)
    router = Router(db=db, cipher=cipher, clock=clock, hooks=[AuditIndex(blind_index)])
    engine = DeliveryEngine(
        db=db, cipher=cipher, client_for_team=slack.client_for_team, notifier=notifier, clock=clock
    )
    delivery_loop = BackgroundLoop(
        "deliver",
        engine.step,
        idle_seconds=5,
        gather_seconds=0.1,
        next_due=engine.seconds_until_a_channel_frees,
    )

    stages = background_stages(
        enrich=inbox_worker.run_once, route=router.run_once, deliver=delivery_loop.wake
    )
    inbox_loop = BackgroundLoop(
        "inbox", lambda: run_stages(stages), idle_seconds=settings.inbox_sweep_seconds, gather_seconds=0.03
    )
    intake = Intake(
        db=db,
        cipher=cipher,
        clock=clock,
        blind_index=blind_index,
        on_stored=wake.inbox if wake else inbox_loop.wake,
        on_verify=wake.verification if wake else verification_loop.wake,
    )
    registrar = (
        CallbackRegistrar(
            db=db,
            cipher=cipher,
            client=freshbooks,
            tokens=tokens,
            verification=verification,
            public_url=settings.public_url,
            clock=clock,
        )
        if settings.public_url
        else None
    )
    monitor = (
        CallbackMonitor(db=db, registrar=registrar, notifier=notifier, clock=clock) if registrar else None
    )
    # Connection setup (13 registrations, each with a verification round trip) runs off the request.
    background = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fbslack-setup")
    setup = ConnectionSetup(db=db, registrar=registrar, notifier=notifier)

    def on_connected(connection_id: int, user_id: str) -> None:
        background.submit(setup.run, connection_id, user_id)

    connect = ConnectService(
        db=db,
        cipher=cipher,
        client=freshbooks,
        config=oauth_config,
        clock=clock,
        on_connected=on_connected,
        workspace_name=lambda team_id: workspace_name(slack.client_for_team(team_id)),
    )
    disconnect = DisconnectService(
        db=db, cipher=cipher, client=freshbooks, tokens=tokens, public_url=settings.public_url, clock=clock
    )
    audit_service = AuditService(db=db, cipher=cipher, blind_index=blind_index, clock=clock)
    replay = ReplayService(db=db, cipher=cipher, clock=clock, on_requeued=delivery_loop.wake)
    retention = RetentionPurge(db=db, clock=clock, retention_days=settings.retention_days)
    digest_sender = DigestSender(
        db=db,
        cipher=cipher,
        client=freshbooks,
        tokens=tokens,
        client_for_team=slack.client_for_team,
        clock=clock,
        chart=share_chart_after,
    )
    digest_service = DigestService(
        db=db, cipher=cipher, client=freshbooks, tokens=tokens, clock=clock, chart=share_chart_after
    )
    scheduler = _build_scheduler(
        settings,
        inbox_loop=inbox_loop,
        verification_loop=verification_loop,
        delivery_loop=delivery_loop,
        reconciler=reconciler,
        monitor=monitor,
        resume_workspaces=engine.resume_workspaces,
        checkpoint=db.checkpoint,
        purge=retention.run,
        digests=digest_sender.run,
    )

    def on_installed(team_id: str, enterprise_id: str | None) -> None:
        """A (re)install: the workspace exists, and one suspended by an uninstall resumes."""
        with db.session() as session:
            connections.ensure_workspace(session, team_id=team_id, now=clock(), enterprise_id=enterprise_id)
        if engine.resume_workspaces():
            delivery_loop.wake()

    bolt = build_bolt_app(
        settings,
        client=slack.client,
        multi=build_multi_workspace(
            settings, db=db, cipher=cipher, tokens=slack.tokens, clock=clock, on_installed=on_installed
        ),
        commands=CommandServices(
            connect=connect,
            disconnect=disconnect,
            status=lambda team_id: workspace_status(db, cipher, team_id),
            rules=RuleService(db=db, cipher=cipher, clock=clock),
            home=HomeService(db=db, cipher=cipher, clock=clock),
            clock=clock,
            permissions=Permissions(db=db),
            preview=PreviewService(db=db, cipher=cipher, clock=clock),
            audit=AuditCommands(
                audit=audit_service, replay=replay, may_manage=Permissions(db=db).may_manage, clock=clock
            ),
            samples=SampleLimit(db=db, clock=clock),
            visibility=ChannelVisibility(clock=clock),
            digests=DigestCommands(
                service=digest_service,
                clock=clock,
                permissions=Permissions(db=db),
                visibility=ChannelVisibility(clock=clock),
            ),
        ),
    )
    return Services(
        settings=settings,
        db=db,
        cipher=cipher,
        freshbooks=freshbooks,
        tokens=tokens,
        intake=intake,
        verification=verification,
        registrar=registrar,
        monitor=monitor,
        connect=connect,
        disconnect=disconnect,
        inbox_worker=inbox_worker,
        reconciler=reconciler,
        router=router,
        engine=engine,
        audit=audit_service,
        replay=replay,
        retention=retention,
        digest_sender=digest_sender,
        inbox_loop=inbox_loop,
        delivery_loop=delivery_loop,
        verification_loop=verification_loop,
        scheduler=scheduler,
        background=background,
        slack_client=slack.client,
        bolt=bolt,
        slack_tokens=slack.tokens,
    )


def _slack_routes(flask_app: Flask, bolt: BoltApp | None, *, settings: Settings, clock: Clock) -> None:
    handler = SlackRequestHandler(bolt) if bolt else None
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None

    def slack_events() -> Response | tuple[str, int]:
        arrived = time.monotonic()
        if bolt is None:
            # Slack checks the request URL as soon as the app is created (slack_ui.url_check).
            challenge = url_check_challenge(
                request.get_data(),
                dict(request.headers.items()),
                signing_secret=secret,
                now=clock().timestamp(),
            )
            if challenge is not None:
                return jsonify(challenge=challenge)
            return "Slack is not configured on this server yet (see the / page).\n", 503
        # Bolt's Flask adapter, with the arrival time in the context: a slash command's 3 s (and
        # our budget within them) count from here, not from when a listener thread picked it up.
        bolt_request = to_bolt_request(request)
        bolt_request.context[ARRIVED] = arrived
        return to_flask_response(bolt.dispatch(bolt_request))

    flask_app.add_url_rule("/slack/events", "slack_events", slack_events, methods=["POST"])

    def slack_install() -> Response | tuple[str, int]:
        """GET /slack/install and /slack/oauth_redirect: Bolt's OAuth flow (multi-workspace mode)."""
        if handler is None or bolt is None or bolt.oauth_flow is None:
            return "Installing from here needs SLACK_CLIENT_ID and SLACK_CLIENT_SECRET (see README).\n", 404
        response: Response = handler.handle(request)
        return response

    flask_app.add_url_rule("/slack/install", "slack_install", slack_install, methods=["GET"])
    flask_app.add_url_rule("/slack/oauth_redirect", "slack_oauth_redirect", slack_install, methods=["GET"])


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock = system_clock,
    start_background: bool = True,
    wake: WakeSender | None = None,
    announce_setup: bool = True,
) -> Flask:
    """The WSGI app. With `start_background=False` this process only serves requests: the loops
    run elsewhere (`run_background`, or the test driving them), reached through `wake`. With
    `announce_setup=False` what is left to configure is not logged (`fbslack serve` logs it once,
    not once per web worker)."""
    settings = settings or load_settings()
    db_check = Database(settings.resolved_database_url)
    try:
        if not migrate.is_up_to_date(db_check.engine):
            raise RuntimeError(
                "the database schema is not up to date: run `fbslack db upgrade` "
                f"(DATABASE_URL points at a {db_check.dialect} database)"
            )
    finally:
        db_check.dispose()
    services = build_services(settings, clock=clock, wake=wake)
    flask_app = Flask("fbslack")
    flask_app.extensions["fbslack"] = services
    queues = metrics.QueueCollector(db=services.db, clock=clock)
    flask_app.register_blueprint(
        create_blueprint(
            intake=services.intake,
            connect=services.connect,
            health=services.health,
            setup_state=lambda: gather_setup_state(
                settings, services.db, manifest_template=load_manifest_template()
            ),
            metrics_body=lambda: metrics.exposition(queues),
            metrics_token=settings.metrics_token.get_secret_value() if settings.metrics_token else None,
            secure_cookies=(settings.public_url or "").startswith("https://"),
        )
    )
    _slack_routes(flask_app, services.bolt, settings=settings, clock=clock)
    if announce_setup:
        for step in settings.missing_setup():
            log.warning("setup: %s", step)
    if start_background:
        services.start()
        atexit.register(services.stop)
    return flask_app


def run_background(settings: Settings, wake_path: str, stop: threading.Event) -> None:
    """The background process of `fbslack serve`: pipeline loops, delivery and scheduled jobs.

    Kept out of the web workers so that fetching, routing and posting never compete with
    acknowledging webhooks for the GIL. Woken by the web workers through `wake_path`.
    """
    services = build_services(settings)

    listener = WakeListener(
        wake_path,
        {wakeup.INBOX: services.inbox_loop.wake, wakeup.VERIFICATION: services.verification_loop.wake},
    )
    listener.start()
    services.start()
    log.info("background worker running")
    try:
        stop.wait()
    finally:
        listener.stop()
        services.stop()
