"""Authorization matrix: every route in the OpenAPI schema, called as every kind of caller.

The rows it acts on (a place, an offer, a task, a check-in, a subscription, a notification, a staff
user and a resident device) all belong to organisation 1 / resident A. Each call runs inside a
savepoint that is rolled back afterwards, so every caller meets the same data. For each call the
test asserts the status in `MATRIX`, that a refused call (and any GET) changed no row in any table,
and that a successful answer to another organisation's caller (or to resident B) never contains
the ids of rows they may not know exist.

A route missing from `MATRIX` fails the test: add a row when adding an endpoint.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from app import models as models_registry
from app.accounts.models import Role
from app.core.config import Settings
from app.main import create_app
from app.notifications import service as notifications_service
from app.notifications.schemas import NotificationPayload, Recipient
from app.notifications.vapid import generate_private_key, private_key_pem
from tests import factories
from tests.notifications.test_api import subscription_json
from tests.offers.helpers import create_geofence, quick_staff

CALLERS = ("anon", "res_a", "res_b", "worker", "editor", "admin", "x_admin", "x_editor", "x_res")
# Who may not know that organisation 1's rows (or resident A's own rows) exist.
OUTSIDERS = {"x_admin", "x_editor", "x_res"}

# Expected status per caller, in the order of CALLERS.
# fmt: off
MATRIX: dict[tuple[str, str], tuple[int, ...]] = {
    #                                              anon resA resB  fw   ed  adm xadm  xed xres
    ("GET", "/healthz"):                          (200, 200, 200, 200, 200, 200, 200, 200, 200),
    ("GET", "/readyz"):                           (200, 200, 200, 200, 200, 200, 200, 200, 200),
    ("GET", "/metrics"):                          (200, 200, 200, 200, 200, 200, 200, 200, 200),
    ("POST", "/v1/auth/token"):                   (200, 200, 200, 200, 200, 200, 200, 200, 200),
    ("POST", "/v1/devices"):                      (201, 201, 201, 201, 201, 201, 201, 201, 201),
    ("GET", "/v1/me"):                            (401, 200, 200, 200, 200, 200, 200, 200, 200),
    ("POST", "/v1/users"):                        (401, 403, 403, 403, 403, 201, 201, 403, 403),
    ("GET", "/v1/users"):                         (401, 403, 403, 403, 403, 200, 200, 403, 403),
    ("GET", "/v1/users/{user_id}"):               (401, 403, 403, 403, 403, 200, 404, 403, 403),
    ("PATCH", "/v1/users/{user_id}"):             (401, 403, 403, 403, 403, 200, 404, 403, 403),
    ("POST", "/v1/users/{user_id}/password-reset"):
                                                  (401, 403, 403, 403, 403, 200, 404, 403, 403),
    ("GET", "/v1/users/me/export"):               (401, 403, 403, 200, 200, 200, 200, 200, 403),
    ("GET", "/v1/users/{user_id}/export"):        (401, 403, 403, 403, 403, 200, 404, 403, 403),
    ("POST", "/v1/users/{user_id}/erase"):        (401, 403, 403, 403, 403, 200, 404, 403, 403),
    ("GET", "/v1/audit"):                         (401, 403, 403, 403, 403, 200, 200, 403, 403),
    ("POST", "/v1/checkins"):                     (401, 201, 201, 201, 201, 201, 201, 201, 201),
    ("GET", "/v1/checkins/{checkin_id}"):         (401, 200, 404, 404, 200, 200, 404, 404, 404),
    ("GET", "/v1/me/checkins"):                   (401, 200, 200, 200, 200, 200, 200, 200, 200),
    ("GET", "/v1/geofences/{geofence_id}/checkins/stats"):
                                                  (401, 403, 403, 403, 200, 200, 404, 404, 403),
    ("GET", "/v1/geofences/{geofence_id}/checkins/regulars"):
                                                  (401, 403, 403, 200, 200, 200, 404, 404, 403),
    ("POST", "/v1/geofences"):                    (401, 403, 403, 403, 201, 201, 201, 201, 403),
    ("GET", "/v1/geofences"):                     (401, 200, 200, 200, 200, 200, 200, 200, 200),
    ("GET", "/v1/geofences/resolve"):             (401, 200, 200, 200, 200, 200, 200, 200, 200),
    ("POST", "/v1/geofences/import"):             (401, 403, 403, 403, 200, 200, 200, 200, 403),
    ("GET", "/v1/geofences/{geofence_id}"):       (401, 200, 200, 200, 200, 200, 404, 404, 404),
    ("PATCH", "/v1/geofences/{geofence_id}"):     (401, 403, 403, 403, 200, 200, 404, 404, 403),
    ("DELETE", "/v1/geofences/{geofence_id}"):    (401, 403, 403, 403, 204, 204, 404, 404, 403),
    ("POST", "/v1/offers"):                       (401, 403, 403, 403, 201, 201, 422, 422, 403),
    ("GET", "/v1/offers"):                        (401, 200, 200, 200, 200, 200, 200, 200, 200),
    ("GET", "/v1/offers/{offer_id}"):             (401, 200, 200, 404, 200, 200, 404, 404, 404),
    ("PATCH", "/v1/offers/{offer_id}"):           (401, 403, 403, 403, 200, 200, 404, 404, 403),
    ("DELETE", "/v1/offers/{offer_id}"):          (401, 403, 403, 403, 204, 204, 404, 404, 403),
    ("POST", "/v1/offers/{offer_id}/redeem"):     (401, 201, 201, 403, 403, 403, 403, 403, 404),
    ("GET", "/v1/offers/{offer_id}/stats"):       (401, 403, 403, 403, 200, 200, 404, 404, 403),
    ("GET", "/v1/offers/codes/{code}"):           (401, 403, 403, 200, 200, 200, 404, 404, 403),
    ("POST", "/v1/offers/codes/{code}/use"):      (401, 403, 403, 200, 200, 200, 404, 404, 403),
    ("GET", "/v1/offers/{offer_id}/funnel"):      (401, 403, 403, 403, 200, 200, 404, 404, 403),
    ("GET", "/v1/geofences/{geofence_id}/preview"):
                                                  (401, 403, 403, 403, 200, 200, 404, 404, 403),
    ("POST", "/v1/tasks"):                        (401, 403, 403, 403, 201, 201, 422, 422, 403),
    ("GET", "/v1/tasks"):                         (401, 403, 403, 200, 200, 200, 200, 200, 403),
    ("GET", "/v1/tasks/{task_id}"):               (401, 403, 403, 200, 200, 200, 404, 404, 403),
    ("PATCH", "/v1/tasks/{task_id}"):             (401, 403, 403, 200, 200, 200, 404, 404, 403),
    ("GET", "/v1/me/tasks"):                      (401, 403, 403, 200, 200, 200, 200, 200, 403),
    ("POST", "/v1/tasks/{task_id}/photos"):       (401, 403, 403, 201, 201, 201, 404, 404, 403),
    ("GET", "/v1/tasks/{task_id}/photos"):        (401, 403, 403, 200, 200, 200, 404, 404, 403),
    ("GET", "/v1/tasks/{task_id}/photos/{photo_id}"):
                                                  (401, 403, 403, 200, 200, 200, 404, 404, 403),
    ("DELETE", "/v1/tasks/{task_id}/photos/{photo_id}"):
                                                  (401, 403, 403, 204, 204, 204, 404, 404, 403),
    ("POST", "/v1/pings"):                        (401, 202, 202, 202, 403, 403, 403, 403, 202),
    ("GET", "/v1/me/presence"):                   (401, 200, 200, 200, 200, 200, 200, 200, 200),
    ("GET", "/v1/me/background-location"):        (401, 200, 200, 403, 403, 403, 403, 403, 200),
    ("PUT", "/v1/me/background-location"):        (401, 200, 200, 403, 403, 403, 403, 403, 200),
    ("GET", "/v1/events"):                        (401, 403, 403, 200, 200, 200, 200, 200, 403),
    ("GET", "/v1/activity"):                      (401, 403, 403, 200, 200, 200, 200, 200, 403),
    ("GET", "/v1/events/stream"):                 (401, 403, 403, 200, 200, 200, 200, 200, 403),
    ("GET", "/v1/push/vapid-public-key"):         (200, 200, 200, 200, 200, 200, 200, 200, 200),
    ("POST", "/v1/push/subscriptions"):           (401, 201, 201, 201, 201, 201, 201, 201, 201),
    ("GET", "/v1/push/subscriptions"):            (401, 200, 200, 200, 200, 200, 200, 200, 200),
    ("DELETE", "/v1/push/subscriptions/{subscription_id}"):
                                                  (401, 204, 404, 404, 404, 404, 404, 404, 404),
    ("GET", "/v1/me/notifications"):              (401, 200, 200, 200, 200, 200, 200, 200, 200),
    ("POST", "/v1/me/notifications/{notification_id}/opened"):
                                                  (401, 200, 404, 404, 404, 404, 404, 404, 404),
    ("GET", "/v1/deliveries"):                    (401, 403, 403, 403, 200, 200, 200, 200, 403),
    ("GET", "/v1/me/preferences"):                (401, 200, 200, 200, 200, 200, 200, 200, 200),
    ("PUT", "/v1/me/preferences"):                (401, 200, 200, 200, 200, 200, 200, 200, 200),
    ("PUT", "/v1/staff/{staff_id}/shift"):        (401, 403, 403, 200, 200, 200, 404, 404, 403),
    ("DELETE", "/v1/staff/{staff_id}/shift"):     (401, 403, 403, 200, 200, 200, 404, 404, 403),
    ("POST", "/v1/geofences/{geofence_id}/broadcast"):
                                                  (401, 403, 403, 403, 200, 200, 404, 404, 403),
    ("GET", "/v1/me/export"):                     (401, 200, 200, 403, 403, 403, 403, 403, 200),
    # shifts and tracking (field workers only); the world's worker has no ad-hoc shift and no
    # pause, so ending and resuming are 409 for them
    ("GET", "/v1/me/tracking"):                   (401, 403, 403, 200, 403, 403, 403, 403, 403),
    ("POST", "/v1/me/shift/start"):               (401, 403, 403, 201, 403, 403, 403, 403, 403),
    ("POST", "/v1/me/shift/end"):                 (401, 403, 403, 409, 403, 403, 403, 403, 403),
    ("POST", "/v1/me/tracking/pause"):            (401, 403, 403, 201, 403, 403, 403, 403, 403),
    ("POST", "/v1/me/tracking/resume"):           (401, 403, 403, 409, 403, 403, 403, 403, 403),
    ("GET", "/v1/me/shifts"):                     (401, 403, 403, 200, 403, 403, 403, 403, 403),
    # a worker's current place: supervisors (admins, editors) of their organisation only
    ("GET", "/v1/staff/{staff_id}/current-place"):
                                                  (401, 403, 403, 403, 200, 200, 404, 404, 403),
    ("DELETE", "/v1/me"):                         (401, 204, 204, 403, 403, 403, 403, 403, 204),
    ("GET", "/v1/devices/{device_id}/export"):    (401, 403, 403, 403, 403, 200, 404, 403, 403),
    ("DELETE", "/v1/devices/{device_id}"):        (401, 403, 403, 403, 403, 204, 404, 403, 403),
    ("POST", "/v1/ingest/overland"):              (401, 200, 200, 200, 403, 403, 403, 403, 200),
    ("POST", "/v1/ingest/owntracks"):             (401, 200, 200, 200, 403, 403, 403, 403, 200),
    # Traccar authenticates with its `id` (an ingest key), never a header: none given → 401
    ("GET", "/v1/ingest/traccar"):                (401, 401, 401, 401, 401, 401, 401, 401, 401),
    ("POST", "/v1/ingest/traccar"):               (401, 401, 401, 401, 401, 401, 401, 401, 401),
    ("GET", "/v1/me/ingest-keys"):                (401, 200, 200, 200, 403, 403, 403, 403, 200),
    ("POST", "/v1/me/ingest-keys"):               (401, 201, 201, 201, 403, 403, 403, 403, 201),
    ("DELETE", "/v1/me/ingest-keys/{key_id}"):    (401, 204, 404, 404, 403, 403, 403, 403, 404),
    # Open311: the staff side (admins configure, editors read reports with contact fields) ...
    ("GET", "/v1/open311/services"):              (401, 403, 403, 403, 200, 200, 200, 200, 403),
    ("POST", "/v1/open311/services"):             (401, 403, 403, 403, 403, 201, 201, 403, 403),
    ("GET", "/v1/open311/services/{service_code}"):
                                                  (401, 403, 403, 403, 200, 200, 404, 404, 403),
    ("PATCH", "/v1/open311/services/{service_code}"):
                                                  (401, 403, 403, 403, 403, 200, 404, 403, 403),
    ("GET", "/v1/open311/keys"):                  (401, 403, 403, 403, 403, 200, 200, 403, 403),
    ("POST", "/v1/open311/keys"):                 (401, 403, 403, 403, 403, 201, 201, 403, 403),
    ("DELETE", "/v1/open311/keys/{api_key_id}"):  (401, 403, 403, 403, 403, 204, 404, 403, 403),
    ("GET", "/v1/open311/settings"):              (401, 403, 403, 403, 403, 200, 200, 403, 403),
    ("PUT", "/v1/open311/settings"):              (401, 403, 403, 403, 403, 200, 200, 403, 403),
    ("GET", "/v1/open311/reports"):               (401, 403, 403, 403, 200, 200, 200, 200, 403),
    ("GET", "/v1/open311/reports/{report_id}"):   (401, 403, 403, 403, 200, 200, 404, 404, 403),
    # ... and GeoReport v2, which knows no bearer: its api_key and jurisdiction_id decide
    ("GET", "/open311/v2/discovery.{fmt}"):       (200, 200, 200, 200, 200, 200, 200, 200, 200),
    ("GET", "/open311/v2/services.{fmt}"):        (200, 200, 200, 200, 200, 200, 200, 200, 200),
    ("GET", "/open311/v2/services/{service_code}.{fmt}"):
                                                  (200, 200, 200, 200, 200, 200, 200, 200, 200),
    ("POST", "/open311/v2/requests.{fmt}"):       (200, 200, 200, 200, 200, 200, 200, 200, 200),
    ("GET", "/open311/v2/requests.{fmt}"):        (200, 200, 200, 200, 200, 200, 200, 200, 200),
    ("GET", "/open311/v2/requests/{service_request_id}.{fmt}"):
                                                  (200, 200, 200, 200, 200, 200, 200, 200, 200),
    ("GET", "/open311/v2/tokens/{token}.{fmt}"):  (200, 200, 200, 200, 200, 200, 200, 200, 200),
    # lone working: the worker's own visits; alerts for admins, editors and the on-call list
    ("GET", "/v1/me/visits"):                     (401, 403, 403, 200, 200, 200, 200, 200, 403),
    ("POST", "/v1/me/visits/{visit_id}/extend"):  (401, 403, 403, 200, 404, 404, 404, 404, 403),
    ("POST", "/v1/me/visits/{visit_id}/check-out"):
                                                  (401, 403, 403, 200, 404, 404, 404, 404, 403),
    ("POST", "/v1/me/help"):                      (401, 403, 403, 201, 201, 201, 201, 201, 403),
    ("GET", "/v1/safety/alerts"):                 (401, 403, 403, 403, 200, 200, 200, 200, 403),
    ("GET", "/v1/safety/alerts/{alert_id}"):      (401, 403, 403, 403, 200, 200, 404, 404, 403),
    ("POST", "/v1/safety/alerts/{alert_id}/acknowledge"):
                                                  (401, 403, 403, 403, 200, 200, 404, 404, 403),
    ("GET", "/v1/safety/on-call"):                (401, 403, 403, 403, 200, 200, 200, 200, 403),
    # another organisation's admin naming our staff: not staff of theirs (422), nothing learnt
    ("PUT", "/v1/safety/on-call"):                (401, 403, 403, 403, 403, 200, 422, 403, 403),
    ("GET", "/v1/safety/visit-lengths"):          (401, 403, 403, 403, 200, 200, 200, 200, 403),
    ("PUT", "/v1/safety/visit-lengths/{category}"):
                                                  (401, 403, 403, 403, 403, 200, 200, 403, 403),
    ("DELETE", "/v1/safety/visit-lengths/{category}"):
                                                  (401, 403, 403, 403, 403, 204, 404, 403, 403),
    ("POST", "/v1/webhooks/endpoints"):           (401, 403, 403, 403, 403, 201, 201, 403, 403),
    ("GET", "/v1/webhooks/endpoints"):            (401, 403, 403, 403, 403, 200, 200, 403, 403),
    ("GET", "/v1/webhooks/endpoints/{endpoint_id}"):
                                                  (401, 403, 403, 403, 403, 200, 404, 403, 403),
    ("PATCH", "/v1/webhooks/endpoints/{endpoint_id}"):
                                                  (401, 403, 403, 403, 403, 200, 404, 403, 403),
    ("DELETE", "/v1/webhooks/endpoints/{endpoint_id}"):
                                                  (401, 403, 403, 403, 403, 204, 404, 403, 403),
    ("POST", "/v1/webhooks/endpoints/{endpoint_id}/rotate-secret"):
                                                  (401, 403, 403, 403, 403, 200, 404, 403, 403),
    ("POST", "/v1/webhooks/endpoints/{endpoint_id}/test"):
                                                  (401, 403, 403, 403, 403, 202, 404, 403, 403),
    ("POST", "/v1/webhooks/endpoints/{endpoint_id}/replay"):
                                                  (401, 403, 403, 403, 403, 202, 404, 403, 403),
    ("GET", "/v1/webhooks/endpoints/{endpoint_id}/messages"):
                                                  (401, 403, 403, 403, 403, 200, 404, 403, 403),
    ("GET", "/v1/webhooks/endpoints/{endpoint_id}/deliveries"):
                                                  (401, 403, 403, 403, 403, 200, 404, 403, 403),
}

# Routes called again on other rows: (method, path, whose row) → statuses, with the row's id from
# VARIANT_IDS. A staff member's check-in is where they were: only they read it (docs/privacy.md,
# "Staff"), not a colleague, an editor or an admin (who has the audited staff export).
VARIANTS: dict[tuple[str, str, str], tuple[int, ...]] = {
    #                                              anon resA resB  fw   ed  adm xadm  xed xres
    ("GET", "/v1/checkins/{checkin_id}", "the field worker's"):
                                                  (401, 404, 404, 200, 404, 404, 404, 404, 404),
    ("GET", "/v1/checkins/{checkin_id}", "the editor's"):
                                                  (401, 404, 404, 404, 200, 404, 404, 404, 404),
}
# fmt: on
# whose row → the ids to put in the path instead of the world's
VARIANT_IDS = {
    "the field worker's": {"checkin_id": "worker_checkin_id"},
    "the editor's": {"checkin_id": "editor_checkin_id"},
}

# Routes that must never change anything, whatever the answer (beyond GET, which never may).
READ_ONLY_POSTS: set[tuple[str, str]] = set()
# Reads that are audited: on success they may add to the audit log, and nothing else.
AUDITED_READS = {
    ("GET", "/v1/devices/{device_id}/export"),
    ("GET", "/v1/users/{user_id}/export"),
}


@dataclass
class World:
    callers: dict[str, dict[str, str]]
    ids: dict[str, str]
    private_to_org1: set[str]
    private_to_res_a: set[str]
    org_slug: str
    admin_email: str
    place_lon: float
    place_lat: float


def png_photo() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 120, 40)).save(out, "PNG")
    return out.getvalue()


def body_for(method: str, path: str, w: World) -> dict[str, Any]:
    """Request keyword arguments (json/data/params) that succeed for an allowed caller."""
    lon, lat = w.place_lon, w.place_lat
    now = datetime.now(UTC)
    key = (method, path)
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/v1/auth/token"): {
            "data": {"username": w.admin_email, "password": factories.DEFAULT_PASSWORD}
        },
        ("POST", "/v1/devices"): {"json": {"organisation": w.org_slug}},
        ("POST", "/v1/users"): {
            "json": {
                "email": "new-user@example.org",
                "full_name": "New User",
                "password": "a long enough password",
                "role": "editor",
            }
        },
        ("POST", "/v1/checkins"): {"json": {"lon": lon, "lat": lat, "accuracy_m": 5}},
        ("POST", "/v1/geofences"): {
            "json": {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [lon + 0.01, lat]},
                "properties": {"name": "New place", "category": "library", "radius_m": 30},
            }
        },
        ("GET", "/v1/geofences/resolve"): {"params": {"lon": lon, "lat": lat}},
        ("GET", "/v1/offers"): {"params": {"geofence_id": w.ids["geofence_id"]}},
        ("POST", "/v1/geofences/import"): {
            "json": {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "geometry": {"type": "Point", "coordinates": [lon + 0.02, lat]},
                        "properties": {
                            "name": "Imported",
                            "category": "park",
                            "radius_m": 40,
                            "external_id": "imp-1",
                        },
                    }
                ],
            }
        },
        ("PATCH", "/v1/geofences/{geofence_id}"): {
            "json": {"properties": {"name": "Renamed library"}}
        },
        ("POST", "/v1/offers"): {
            "json": {
                "title": "Story time",
                "body": "Every Saturday at ten.",
                "geofence_ids": [w.ids["geofence_id"]],
                "triggers": ["checkin"],
                "status": "active",
            }
        },
        ("PATCH", "/v1/offers/{offer_id}"): {"json": {"title": "Renamed offer"}},
        ("POST", "/v1/offers/{offer_id}/redeem"): {"json": {}},
        ("POST", "/v1/tasks"): {
            "json": {"title": "Sweep the path", "geofence_id": w.ids["geofence_id"]}
        },
        ("PATCH", "/v1/tasks/{task_id}"): {"json": {"status": "in_progress"}},
        ("PATCH", "/v1/users/{user_id}"): {"json": {"full_name": "Renamed Editor"}},
        ("POST", "/v1/tasks/{task_id}/photos"): {"content": png_photo()},
        ("POST", "/v1/pings"): {
            "json": {
                "pings": [
                    {
                        "id": "matrix-ping-1",
                        "lon": lon,
                        "lat": lat,
                        "accuracy_m": 10,
                        "recorded_at": (now - timedelta(seconds=5)).isoformat(),
                    }
                ]
            }
        },
        ("PUT", "/v1/me/background-location"): {"json": {"enabled": True}},
        ("POST", "/v1/ingest/overland"): {
            "json": {
                "locations": [
                    {
                        "type": "Feature",
                        "geometry": {"type": "Point", "coordinates": [lon, lat]},
                        "properties": {
                            "timestamp": (now - timedelta(seconds=5)).isoformat(),
                            "horizontal_accuracy": 10,
                        },
                    }
                ]
            }
        },
        ("POST", "/v1/ingest/owntracks"): {
            "json": {
                "_type": "location",
                "lat": lat,
                "lon": lon,
                "acc": 10,
                "tst": int((now - timedelta(seconds=5)).timestamp()),
            }
        },
        ("PUT", "/v1/me/preferences"): {"json": {"max_per_day": 5}},
        ("PUT", "/v1/staff/{staff_id}/shift"): {"json": {"start": "08:00", "end": "16:00"}},
        ("POST", "/v1/geofences/{geofence_id}/broadcast"): {"json": {"title": "Closing early"}},
        ("GET", "/v1/events/stream"): {"params": {"follow": "false"}},
        ("POST", "/v1/push/subscriptions"): {"json": subscription_json()},
        ("POST", "/v1/open311/services"): {
            "json": {"code": "pothole", "name": "Pothole", "task": {"title": "Fill it"}}
        },
        ("PATCH", "/v1/open311/services/{service_code}"): {"json": {"name": "Renamed"}},
        ("POST", "/v1/open311/keys"): {"json": {"label": "Another app"}},
        ("PUT", "/v1/open311/settings"): {"json": {"public_read": True}},
        ("POST", "/open311/v2/requests.{fmt}"): {
            "data": {
                "jurisdiction_id": w.org_slug,
                "api_key": w.ids["open311_key"],
                "service_code": w.ids["service_code"],
                "lat": lat + 0.01,
                "long": lon,
            }
        },
        ("POST", "/v1/webhooks/endpoints"): {
            "json": {"url": "http://127.0.0.1:9/new", "event_types": ["task.*"]}
        },
        ("POST", "/v1/me/visits/{visit_id}/extend"): {"json": {"minutes": 15}},
        ("POST", "/v1/me/help"): {"json": {"note": "Matrix"}},
        ("POST", "/v1/safety/alerts/{alert_id}/acknowledge"): {"json": {}},
        ("PUT", "/v1/safety/on-call"): {
            "json": {"contacts": [{"staff_id": w.ids["user_id"], "rank": 1}]}
        },
        ("PUT", "/v1/safety/visit-lengths/{category}"): {"json": {"expected_duration_min": 30}},
        ("PATCH", "/v1/webhooks/endpoints/{endpoint_id}"): {"json": {"description": "CRM"}},
        ("POST", "/v1/webhooks/endpoints/{endpoint_id}/replay"): {
            "json": {"message_id": w.ids["message_id"]}
        },
    }
    if path.startswith("/open311/v2/") and method == "GET":
        return {"params": {"jurisdiction_id": w.org_slug, "api_key": w.ids["open311_key"]}}
    return bodies.get(key, {})


def fill(path: str, ids: dict[str, str]) -> str:
    for name, value in ids.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, f"no id to put in {path}: add one to World.ids"
    return path


def snapshot_sql() -> str:
    parts = []
    for table in models_registry.metadata.sorted_tables:
        parts.append(
            f"SELECT '{table.name}' AS tbl, count(*) AS n, "
            f"md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) AS h "
            f"FROM {table.name} x"
        )
    return " UNION ALL ".join(parts)


async def snapshot(conn: AsyncConnection, sql: str) -> dict[str, tuple[int, str]]:
    rows = (await conn.execute(text(sql))).all()
    return {r.tbl: (r.n, r.h) for r in rows}


async def build_world(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> World:
    org = await factories.create_organisation(session)
    other = await factories.create_organisation(session)
    lon, lat = -1.2577, 51.752
    place = await create_geofence(session, org.id, lon=lon, lat=lat, name="Central Library")
    park = await create_geofence(
        session, org.id, lon=lon + 0.003, lat=lat, name="Town Park", category="park"
    )
    await create_geofence(session, other.id, lon=lon, lat=lat, name="Their library")
    admin = await factories.create_staff(session, settings, org, Role.admin)
    editor = await quick_staff(session, settings, org, Role.editor)
    worker = await quick_staff(session, settings, org, Role.field_worker)
    res_a = await factories.create_resident(session, org)
    res_b = await factories.create_resident(session, org)
    x_admin = await quick_staff(session, settings, other, Role.admin)
    x_editor = await quick_staff(session, settings, other, Role.editor)
    x_res = await factories.create_resident(session, other)
    note = await notifications_service.enqueue(
        session,
        recipient=Recipient("device", res_a.id, org.id),
        payload=NotificationPayload(title="For resident A"),
    )
    place_id, park_id, note_id, org_slug = place.id, park.id, note.id, org.slug
    await session.commit()

    async def ok(r: httpx.Response) -> dict[str, Any]:
        assert r.status_code < 300, r.text
        data: dict[str, Any] = r.json()
        return data

    offer = await ok(
        await client.post(
            "/v1/offers",
            json={
                "title": "Author talk",
                "body": "Tonight at six.",
                "geofence_ids": [str(place_id)],
                "triggers": ["checkin", "enter"],
                "status": "active",
            },
            headers=editor.headers,
        )
    )
    # a second offer, redeemed by resident A: its desk code (the first stays unredeemed)
    coded = await ok(
        await client.post(
            "/v1/offers",
            json={
                "title": "Free coffee",
                "body": "At the desk.",
                "geofence_ids": [str(place_id)],
                "triggers": ["checkin"],
                "status": "active",
            },
            headers=editor.headers,
        )
    )
    redeemed = await ok(
        await client.post(f"/v1/offers/{coded['id']}/redeem", json={}, headers=res_a.headers)
    )
    task = await ok(
        await client.post(
            "/v1/tasks",
            json={
                "title": "Inspect the play area",
                "geofence_id": str(park_id),
                "assignee_ids": [str(worker.id)],
            },
            headers=editor.headers,
        )
    )
    checkin = await ok(
        await client.post(
            "/v1/checkins",
            json={"lon": lon + 0.003, "lat": lat, "accuracy_m": 5},
            headers=res_a.headers,
        )
    )
    sub = await ok(
        await client.post("/v1/push/subscriptions", json=subscription_json(), headers=res_a.headers)
    )
    for resident in (res_a, res_b, x_res):
        await ok(
            await client.put(
                "/v1/me/background-location", json={"enabled": True}, headers=resident.headers
            )
        )
    await ok(
        await client.post(
            "/v1/pings?mode=sync",  # evaluated now: the world has its presence and events
            json={
                "pings": [
                    {
                        "id": "setup-ping",
                        "lon": lon,
                        "lat": lat,
                        "accuracy_m": 8,
                        "recorded_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
                    }
                ]
            },
            headers=res_a.headers,
        )
    )
    ingest_key = await ok(
        await client.post("/v1/me/ingest-keys", json={"label": "A"}, headers=res_a.headers)
    )
    service311 = await ok(
        await client.post(
            "/v1/open311/services",
            json={"code": "fly-tipping", "name": "Fly-tipping", "task": {"title": "Clear it"}},
            headers=admin.headers,
        )
    )
    key311 = await ok(
        await client.post("/v1/open311/keys", json={"label": "App"}, headers=admin.headers)
    )
    report = await client.post(
        "/open311/v2/requests.json",
        data={
            "jurisdiction_id": org_slug,
            "api_key": key311["key"],
            "service_code": "fly-tipping",
            "lat": lat,
            "long": lon + 0.001,
        },
    )
    assert report.status_code == 200, report.text
    report_id, report_token = report.json()[0]["service_request_id"], report.json()[0]["token"]
    photo = await ok(
        await client.post(
            f"/v1/tasks/{task['id']}/photos", content=png_photo(), headers=worker.headers
        )
    )
    # lone working: the worker checks in at the park (their task's place): a visit; then asks
    # for help: an alert; the park has a visit length
    worker_checkin = await ok(
        await client.post(
            "/v1/checkins",
            json={"lon": lon + 0.003, "lat": lat, "accuracy_m": 5},
            headers=worker.headers,
        )
    )
    editor_checkin = await ok(
        await client.post(
            "/v1/checkins",  # at the park: the matrix's own check-in is at the library
            json={"lon": lon + 0.003, "lat": lat, "accuracy_m": 5},
            headers=editor.headers,
        )
    )
    visits = await client.get("/v1/me/visits", headers=worker.headers)
    assert visits.status_code == 200, visits.text
    [visit] = visits.json()
    alert = await ok(await client.post("/v1/me/help", json={}, headers=worker.headers))
    await ok(
        await client.put(
            "/v1/safety/visit-lengths/park",
            json={"expected_duration_min": 40},
            headers=admin.headers,
        )
    )
    endpoint = await ok(
        await client.post(
            "/v1/webhooks/endpoints",
            json={"url": "http://127.0.0.1:9/crm", "event_types": ["*"]},
            headers=admin.headers,
        )
    )
    message = await ok(
        await client.post(f"/v1/webhooks/endpoints/{endpoint['id']}/test", headers=admin.headers)
    )
    ids = {
        "key_id": ingest_key["id"],
        "service_code": "fly-tipping",
        "api_key_id": key311["id"],
        "open311_key": key311["key"],
        "report_id": report_id,
        "service_request_id": report_id,
        "token": report_token,
        "fmt": "json",
        "geofence_id": str(place_id),
        "offer_id": offer["id"],
        "code": redeemed["code"],
        "task_id": task["id"],
        "photo_id": photo["id"],
        "checkin_id": checkin["checkin"]["id"],
        "worker_checkin_id": worker_checkin["checkin"]["id"],
        "editor_checkin_id": editor_checkin["checkin"]["id"],
        "subscription_id": sub["id"],
        "notification_id": str(note_id),
        "user_id": str(editor.id),
        "device_id": str(res_a.id),
        "staff_id": str(worker.id),
        "endpoint_id": endpoint["id"],
        "message_id": message["id"],
        "visit_id": visit["id"],
        "alert_id": alert["id"],
        "category": "park",
    }
    callers = {
        "anon": {},
        "res_a": res_a.headers,
        "res_b": res_b.headers,
        "worker": worker.headers,
        "editor": editor.headers,
        "admin": admin.headers,
        "x_admin": x_admin.headers,
        "x_editor": x_editor.headers,
        "x_res": x_res.headers,
    }
    org1_ids = {
        str(place_id),
        offer["id"],
        task["id"],
        str(editor.id),
        str(park_id),
        coded["id"],
        photo["id"],
    }
    org1_ids |= {service311["id"], key311["id"]}
    org1_ids |= {endpoint["id"], message["id"]}
    org1_ids |= {visit["id"], alert["id"], str(worker.id)}
    res_a_ids = {
        checkin["checkin"]["id"],
        sub["id"],
        str(note_id),
        str(res_a.id),
        ingest_key["id"],
    }
    return World(
        callers=callers,
        ids=ids,
        private_to_org1=org1_ids | res_a_ids,
        private_to_res_a=res_a_ids,
        org_slug=org_slug,
        admin_email=admin.email,
        place_lon=lon,
        place_lat=lat,
    )


@pytest.fixture
async def matrix_app(
    settings: Settings, engine: AsyncEngine, connection: AsyncConnection
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(
        settings.model_copy(
            update={
                "rate_limit_enabled": False,
                "vapid_private_key": private_key_pem(generate_private_key()).decode(),
                "webhook_allow_loopback": True,  # the matrix's endpoints are on loopback
            }
        ),
        engine=engine,
    )
    # Every request (and the event stream's polls) works inside the test's outer transaction:
    # a request's commit releases a savepoint, the test rolls back to its own savepoint after it.
    app.state.sessionmaker = async_sessionmaker(
        bind=connection,
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
        autoflush=False,
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield app, client


def openapi_routes(app: FastAPI) -> list[tuple[str, str]]:
    routes = []
    for path, ops in app.openapi()["paths"].items():
        for method in ops:
            routes.append((method.upper(), path))
    return routes


async def test_every_route_has_a_row_in_the_matrix(
    matrix_app: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, _ = matrix_app
    routes = set(openapi_routes(app))
    missing = sorted(routes - MATRIX.keys())
    assert not missing, f"routes without a row in the authorization matrix: {missing}"
    stale = sorted(MATRIX.keys() - routes)
    assert not stale, f"matrix rows for routes that no longer exist: {stale}"


async def test_every_route_answers_every_caller_as_the_matrix_says(
    matrix_app: tuple[FastAPI, httpx.AsyncClient],
    connection: AsyncConnection,
    settings: Settings,
) -> None:
    app, client = matrix_app
    async with app.state.sessionmaker() as session:
        world = await build_world(client, session, settings)
    sql = snapshot_sql()
    before = await snapshot(connection, sql)
    problems: list[str] = []
    actual: dict[tuple[str, str], list[int]] = {}
    calls: list[tuple[str, str, str, tuple[int, ...] | None, dict[str, str]]] = [
        (method, path, "", MATRIX.get((method, path)), world.ids)
        for method, path in openapi_routes(app)
    ]
    for (method, path, whose), statuses in VARIANTS.items():
        ids = world.ids | {k: world.ids[v] for k, v in VARIANT_IDS[whose].items()}
        calls.append((method, path, whose, statuses, ids))
    for method, path, whose, expected, ids in calls:
        url = fill(path, ids)
        for i, caller in enumerate(CALLERS):
            savepoint = await connection.begin_nested()
            try:
                kwargs = body_for(method, path, world)
                r = await client.request(method, url, headers=world.callers[caller], **kwargs)
                after = await snapshot(connection, sql)
            finally:
                await savepoint.rollback()
            actual.setdefault((method, path + (f" ({whose} row)" if whose else "")), []).append(
                r.status_code
            )
            where = f"{method} {path}{f' on {whose} row' if whose else ''} as {caller}"
            if r.status_code >= 500:
                problems.append(f"{where}: {r.status_code} {r.text[:200]}")
            if expected is not None and r.status_code != expected[i]:
                problems.append(f"{where}: {r.status_code}, expected {expected[i]}: {r.text[:160]}")
            may_write = (
                r.status_code < 300 and method != "GET" and (method, path) not in READ_ONLY_POSTS
            )
            changed = sorted(t for t in after if after[t] != before.get(t))
            if r.status_code < 300 and (method, path) in AUDITED_READS:
                changed = [t for t in changed if t != "audit_log"]
            if not may_write and changed:
                problems.append(f"{where}: answered {r.status_code} but changed {changed}")
            if r.status_code < 300:
                secret = (
                    world.private_to_org1
                    if caller in OUTSIDERS
                    else world.private_to_res_a
                    if caller == "res_b"
                    else set()
                )
                leaked = sorted(s for s in secret if s in r.text)
                if leaked:
                    problems.append(f"{where}: the answer contains ids it must not: {leaked}")
    if problems:
        table = "\n".join(f"{k}: {tuple(v)}" for k, v in actual.items())
        pytest.fail("\n".join(problems) + "\n\nactual statuses:\n" + table)


def test_matrix_rows_name_every_caller() -> None:
    for key, row in MATRIX.items():
        assert len(row) == len(CALLERS), key
    for (method, path, whose), row in VARIANTS.items():
        assert len(row) == len(CALLERS), (method, path, whose)
        assert (method, path) in MATRIX, "a variant of a route the matrix does not know"
        assert whose in VARIANT_IDS
