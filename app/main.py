"""The application factory: routers, error handlers, middleware and the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy.ext.asyncio import AsyncEngine
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.accounts.router import router as accounts_router
from app.accounts.tokens import DeviceTokenCache
from app.activity import service as activity_service
from app.activity.router import router as activity_router
from app.checkins.router import router as checkins_router
from app.core import database_url
from app.core import types as core_types
from app.core.background import InProcess
from app.core.config import Environment, Settings, get_settings
from app.core.datadir import exit_with_parent
from app.core.db import create_engine, create_sessionmaker
from app.core.errors import install_error_handlers
from app.core.heap import settle_heap
from app.core.listen import listen_dsn
from app.core.logging import configure_logging
from app.core.middleware import BodyLimitMiddleware, NulByteMiddleware, ObservabilityMiddleware
from app.core.openapi import install_openapi
from app.core.ops import router as ops_router
from app.core.ratelimit import RateLimiter
from app.events import service as events_service
from app.geofences.router import router as geofences_router
from app.ingest.keycache import IngestKeyCache
from app.ingest.router import router as ingest_router
from app.notifications.router import router as notifications_router
from app.notifications.worker import run_worker
from app.offers.router import router as offers_router
from app.open311 import service as open311_service
from app.open311.router import georeport as open311_georeport_router
from app.open311.router import router as open311_router
from app.presence.acks import AckGroups
from app.presence.evaluator import run_evaluator
from app.presence.fastpath import PingFastPath
from app.presence.groups import PingGroups
from app.presence.router import router as presence_router
from app.presence.startup import maintain_on_startup
from app.privacy.router import router as privacy_router
from app.rules import decisions as rules_decisions
from app.rules import service as rules_service
from app.rules.router import router as rules_router
from app.safety import service as safety_service
from app.safety.router import router as safety_router
from app.scheduled import run_scheduled_jobs
from app.shifts import service as shifts_service
from app.shifts.cache import ShiftRulesCache
from app.shifts.router import router as shifts_router
from app.tasks.photo_router import PHOTO_UPLOAD_PATH
from app.tasks.photo_router import router as task_photos_router
from app.tasks.router import me_router as my_tasks_router
from app.tasks.router import router as tasks_router
from app.web.router import install_web
from app.webhooks import service as webhooks_service
from app.webhooks.router import router as webhooks_router
from app.webhooks.worker import run_webhook_worker


def register_event_hooks() -> None:
    """The event pipeline's hooks, in order: the activity feed's store, the notification rules,
    the webhook fan-out, then lone working's visits (idempotent; the API and `hereabouts worker`
    both call it); the rules learn of ad-hoc shifts."""
    events_service.register_hook("activity", activity_service.store_hook)
    events_service.register_hook("rules", rules_service.pipeline_hook)
    webhooks_service.register()
    # an ad-hoc shift a field worker started counts as on shift for task pushes too
    rules_decisions.register_adhoc_shift_check(shifts_service.on_adhoc_shift)
    # lone working: a field worker's enter/check-in at a task's place starts a visit, exit ends it
    events_service.register_hook("lone_working", safety_service.on_events)


def create_app(settings: Settings | None = None, engine: AsyncEngine | None = None) -> FastAPI:
    exit_with_parent()  # a uvicorn worker process of `serve` must not outlive it
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owns_engine = engine is None
        db_engine = engine or create_engine(settings, database_url.resolve(settings))
        app.state.engine = db_engine
        app.state.sessionmaker = create_sessionmaker(db_engine)
        await maintain_on_startup(app.state.sessionmaker, settings)
        background: list[InProcess] = []
        if settings.run_worker_in_process:
            background = [
                InProcess("push worker", lambda stop: run_worker(settings, db_engine, stop)),
                InProcess(
                    "webhook worker", lambda stop: run_webhook_worker(settings, db_engine, stop)
                ),
                InProcess(
                    "scheduled jobs", lambda stop: run_scheduled_jobs(settings, db_engine, stop)
                ),
            ]
        if settings.run_ping_evaluator_in_process:
            background.append(
                InProcess(
                    "ping evaluator",
                    lambda stop: run_evaluator(
                        settings, db_engine, stop, on_events=events_service.presence_hook(settings)
                    ),
                )
            )
        if settings.environment is not Environment.test:
            settle_heap()  # once per process, after startup (a test run starts many apps)
        tokens_task = None
        if settings.device_token_cache_entries > 0:
            app.state.device_tokens = DeviceTokenCache(settings.device_token_cache_entries)
            # ingest keys: revoked on the same channel (migration 0035's trigger)
            app.state.ingest_keys = IngestKeyCache(
                app.state.device_tokens, settings.device_token_cache_entries
            )
            # field workers' shift rules: changed on the same channel (migration 0039's triggers)
            app.state.shift_rules = ShiftRulesCache(
                app.state.device_tokens, settings.device_token_cache_entries
            )
            tokens_task = asyncio.create_task(app.state.device_tokens.run(listen_dsn(db_engine)))
        try:
            yield
        finally:
            if tokens_task is not None:
                tokens_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await tokens_task
                del app.state.device_tokens
                del app.state.ingest_keys
                del app.state.shift_rules
            for loop in background:
                await loop.stop()
            if owns_engine:
                await db_engine.dispose()

    app = FastAPI(
        title="Hereabouts",
        version="0.1.0",
        description=(
            "Content and services around me and for me: geofenced public buildings and spaces, "
            "check-ins, background location pings and Web Push for councils."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.rate_limiter = RateLimiter()
    # every source's events go through one pipeline (app/events) whose hooks, the rules and the
    # webhook fan-out, run in the source's transaction; ping batches hand their events to it
    # (presence imports neither: the hook is handed over here)
    register_event_hooks()
    app.state.ping_groups = PingGroups(settings, on_events=events_service.presence_hook(settings))
    app.state.ack_groups = AckGroups(settings)
    # field workers are located only on shift: the ping routes ask the shifts domain before
    # storing anything (presence imports no domain above it, so the rule is handed over here)
    # (its rules come from the process's cache while the lifespan runs: app/shifts/cache.py)
    app.state.staff_location_gate = shifts_service.tracking_gate(
        settings, lambda: getattr(app.state, "shift_rules", None)
    )
    core_types.install(settings)
    open311_service.register(settings)
    if engine is not None:
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
    install_error_handlers(app)
    install_openapi(app)
    # Routes are matched in order, each router's in turn: the devices' hot paths first (finding
    # POST /v1/pings behind the other routers took ~60 µs a request, 5 % of a single ping's CPU).
    # No path of these two can be taken by another router's route, nor the other way round.
    app.include_router(presence_router)
    app.include_router(checkins_router)
    app.include_router(ops_router)
    app.include_router(accounts_router)
    app.include_router(geofences_router)
    app.include_router(offers_router)
    app.include_router(tasks_router)
    app.include_router(my_tasks_router)
    app.include_router(task_photos_router)
    app.include_router(safety_router)
    app.include_router(notifications_router)
    app.include_router(rules_router)
    app.include_router(activity_router)
    app.include_router(webhooks_router)
    app.include_router(privacy_router)
    app.include_router(shifts_router)
    app.include_router(ingest_router)
    app.include_router(open311_router)
    app.include_router(open311_georeport_router)
    install_web(app, settings)
    # innermost: the 202 path of POST /v1/pings in plain ASGI, everything else passes through
    app.add_middleware(PingFastPath)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=False,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        )
    # Last added runs first: observability, proxy headers, body limit, NUL check, [CORS,] the
    # pings fast path, then the app.
    app.add_middleware(NulByteMiddleware, binary=(("POST", PHOTO_UPLOAD_PATH),))
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        # a completion photo: the photo's own limit, refused with its own message above that
        larger=(("POST", PHOTO_UPLOAD_PATH, settings.task_photo_max_bytes + 1_048_576),),
    )
    if settings.trusted_proxies:
        # The client address behind a trusted proxy: the rightmost X-Forwarded-For entry that is
        # not itself a trusted proxy (uvicorn's own implementation, the same list `serve` hands
        # uvicorn). Everything that reads `request.client` (the per-IP rate limits) sees it.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    app.add_middleware(ObservabilityMiddleware)
    return app
