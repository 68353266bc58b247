"""The composition root: ``create_app`` wires settings, Redis, the model holder, the reloader,
the responsiveness probe, the live metrics window, the routes and the pages (console, offline
docs); the lifespan starts and stops what runs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import faiss
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from service import errors
from service.admin_desk import AdminDesk
from service.admin_routes import GUARDED_ROUTES as ADMIN_GUARDED_ROUTES
from service.admin_routes import build_admin_router
from service.catalog_desk import CatalogDesk
from service.catalog_mirror import CatalogMirror
from service.catalog_routes import WRITE_ROUTES, build_catalog_router
from service.catalog_store import CatalogStore
from service.deps import Services
from service.fast_path import RecommendationsFastPath
from service.feedback import FeedbackDesk
from service.feedback_store import FeedbackStore, connect
from service.live_metrics import LiveMetrics
from service.metrics import ServiceMetrics
from service.middleware import ApiKeyGuard, BodyLimit, RequestTiming
from service.model_holder import ModelHolder
from service.pages import mount_console, offline_docs_app
from service.popular import PopularCache
from service.recommender import Recommender
from service.reloader import Reloader
from service.responsiveness import ResponsivenessProbe
from service.routes import RECOMMENDATIONS_PATH, build_router
from service.user_desk import UserDesk
from service.user_routes import GUARDED_ROUTES, build_user_router
from service.user_store import UserStore
from veto import partitions
from veto.errors import StoreUnavailable
from veto.ranking import Strengths
from veto.settings import ServiceSettings

log = logging.getLogger(__name__)
# (method, path template) of every route that needs the API key: the writes and the personal
# data of a user.
GUARDED = frozenset(
    {("POST", "/v1/feedback"), *WRITE_ROUTES, *GUARDED_ROUTES, *ADMIN_GUARDED_ROUTES}
)


def create_app(
    settings: ServiceSettings,
    *,
    store: FeedbackStore | None = None,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    """The service app. ``store`` defaults to one on ``settings.redis_url`` (closed at
    shutdown); ``registry`` defaults to a fresh one."""
    owns_store = store is None
    if store is None:
        store = FeedbackStore(
            connect(settings.redis_url, timeout=settings.redis_timeout_seconds),
            partitions=settings.stream_partitions,
            history_len=settings.history_len,
            dedupe_ttl_seconds=settings.dedupe_ttl_seconds,
        )
    metrics = ServiceMetrics(registry)
    holder = ModelHolder()
    catalog = CatalogStore(store.client)
    # One catalog copy per process, kept current by the recommendation batches and read by
    # the responsiveness probe too: its "same category" is the catalog's.
    mirror = CatalogMirror(catalog)
    metrics.track_model_age(
        lambda: holder.current.version.manifest.created_at if holder.current else None
    )
    popular = PopularCache(
        store, ttl_seconds=settings.popular_cache_seconds, days=settings.popular_days
    )
    services = Services(
        holder=holder,
        store=store,
        metrics=metrics,
        recommender=Recommender(
            holder,
            store,
            popular,
            metrics,
            overfetch=settings.overfetch,
            offload_min_cost=settings.offload_min_cost,
            strengths=Strengths(
                prior_weight=settings.prior_weight,
                dislike_penalty=settings.dislike_penalty,
                penalty_window=settings.penalty_window,
            ),
            batch_max_size=settings.batch_max_size,
            batch_max_wait=settings.batch_max_wait_seconds,
            catalog=mirror,
        ),
        desk=FeedbackDesk(
            holder,
            store,
            metrics,
            catalog=catalog,
            mirror=mirror,
            max_batch=settings.max_batch,
            max_skew_seconds=settings.max_clock_skew_seconds,
        ),
        probe=ResponsivenessProbe(
            store,
            holder,
            metrics,
            sample_rate=settings.responsiveness_sample_rate,
            k=settings.responsiveness_k,
            queue_size=settings.responsiveness_queue_size,
            catalog=mirror,
        ),
    )
    reloader = Reloader(
        store.client,
        holder,
        artifacts_dir=settings.artifacts_dir,
        metrics=metrics,
        poll_interval=settings.poll_interval_seconds,
    )
    live = LiveMetrics(
        metrics,
        interval=settings.live_interval_seconds,
        window=settings.live_window_seconds,
        latency_route=RECOMMENDATIONS_PATH,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # FAISS's OpenMP threads would fight the request threads; concurrency comes from those.
        faiss.omp_set_num_threads(settings.faiss_threads)
        try:
            # A process with another partition count would split users' state: refused here.
            await partitions.check_async(store.client, settings.stream_partitions)
            await reloader.check()
            # Loaded now rather than by the first recommendation batch: feedback falls back
            # on it while the catalog's cluster master is down (service.feedback).
            await mirror.refresh_now()
        except StoreUnavailable as exc:
            log.warning("Redis unavailable at start, no model yet: %s", exc)
        reloader.start()
        services.probe.start()
        live.start()
        try:
            yield
        finally:
            await live.stop()
            await services.probe.stop()
            await reloader.stop()
            if owns_store:
                await store.close()

    app = offline_docs_app(
        title="Veto",
        version="1",
        description="Recommendations that learn from dislikes.",
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.reloader = reloader
    app.state.catalog_desk = CatalogDesk(holder, catalog, max_batch=settings.catalog_max_batch)
    app.state.user_desk = UserDesk(UserStore(store.client, partitions=settings.stream_partitions))
    app.state.admin_desk = AdminDesk(
        holder, store.client, reloader, artifacts_dir=settings.artifacts_dir
    )
    app.state.live_metrics = live
    errors.install(
        app,
        retry_after_seconds=settings.retry_after_seconds,
        on_invalid_feedback=metrics.feedback_rejected.inc,
    )
    router = build_router(settings)
    app.include_router(router)
    app.include_router(build_catalog_router())
    app.include_router(build_user_router())
    app.include_router(build_admin_router())
    mount_console(app)
    app.add_middleware(
        RecommendationsFastPath,
        recommender=services.recommender,
        route=next(r for r in router.routes if getattr(r, "path", None) == RECOMMENDATIONS_PATH),
        max_k=settings.max_k,
        retry_after_seconds=settings.retry_after_seconds,
    )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    # Outside the body limit: an unauthenticated write is refused before its body is read.
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    app.add_middleware(ApiKeyGuard, api_key=api_key, routes=GUARDED)
    app.add_middleware(RequestTiming, metrics=metrics)
    return app
