"""`hereabouts demo walk`: replay a resident's walk and a field worker's round through the demo
town, through the real ping and check-in services, and say what was queued or suppressed and why.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import service as accounts_service
from app.accounts.models import Role
from app.accounts.principal import Principal
from app.checkins import service as checkins_service
from app.checkins.schemas import CheckInCreate
from app.core.config import Settings
from app.demo import DEMO_ORG_SLUG, load_demo
from app.events import service as events_service
from app.main import register_event_hooks
from app.offers import service as offers_service
from app.offers.schemas import OfferCreate
from app.presence import service as presence_service
from app.presence.models import SubjectKind
from app.rules import service
from app.rules.schemas import PreferencesUpdate, ShiftWindow

DEMO_OFFER = "Open day at the Central Library (demo walk)"
M_PER_DEG = 111_320.0


async def _place(session: AsyncSession, org_id: uuid.UUID, external_id: str) -> Any:
    row = await session.execute(
        text(
            "SELECT id, name, ST_X(ST_Centroid(geom)) AS lon, ST_Y(ST_Centroid(geom)) AS lat "
            "FROM geofences WHERE organisation_id = :o AND external_id = :e AND deleted_at IS NULL"
        ),
        {"o": org_id, "e": external_id},
    )
    return row.first()


def _track(
    lon: float, lat: float, *, half_m: float, step_m: float, step_s: float, end: datetime
) -> list[presence_service.PingInput]:
    n = int(2 * half_m / step_m) + 1
    out = []
    for i in range(n):
        east = -half_m + i * step_m
        p_lon = lon + east / (M_PER_DEG * math.cos(math.radians(lat)))
        out.append(
            presence_service.PingInput(
                id=f"demo-{uuid.uuid4().hex[:10]}",
                lon=p_lon,
                lat=lat + 5.0 / M_PER_DEG,
                recorded_at=end - timedelta(seconds=step_s * (n - 1 - i)),
                accuracy_m=8.0,
            )
        )
    return out


async def demo_walk(session: AsyncSession, settings: Settings) -> list[str]:
    """Load the demo town if needed, then replay the walk and the round (all committed)."""
    lines = list(await load_demo(session))
    org = await accounts_service.get_or_create_organisation(session, DEMO_ORG_SLUG, "")
    library = await _place(session, org.id, "DEMO-LIB-CENTRAL")
    park = await _place(session, org.id, "DEMO-PARK-RIVERSIDE")
    if library is None or park is None:
        return [*lines, "demo walk skipped: the demo places are missing"]
    editor = await session.execute(
        text("SELECT id FROM staff_users WHERE organisation_id = :o AND role = 'editor' LIMIT 1"),
        {"o": org.id},
    )
    editor_id = editor.scalar_one_or_none()
    titled = await session.execute(
        text(
            "SELECT 1 FROM offers WHERE organisation_id = :o AND title = :t AND deleted_at IS NULL"
        ),
        {"o": org.id, "t": DEMO_OFFER},
    )
    if titled.first() is None:
        await offers_service.create_offer(
            session,
            org.id,
            editor_id,
            OfferCreate.model_validate(
                {
                    "title": DEMO_OFFER,
                    "body": "Tours every hour today, and the reading room is open late.",
                    "geofence_ids": [library.id],
                    "triggers": ["enter", "nearby", "checkin"],
                    "cooldown_s": 3600,
                    "max_per_person": 3,
                    "status": "active",
                    "quiet_hours_policy": "defer",
                    "outside_opening_hours_ok": True,
                }
            ),
        )
    # the walk's pings and check-ins go through the event pipeline, as in the API process
    register_event_hooks()
    on_events = events_service.presence_hook(settings)
    now = datetime.now(UTC)

    device, _token = await accounts_service.register_device(session, DEMO_ORG_SLUG, "demo-walk")
    resident = Principal("device", device.id, org.id, None)
    await service.update_preferences(
        session, settings, resident, PreferencesUpdate(background_location=True)
    )
    prefs = await service.read_preferences(session, settings, resident)
    quiet = prefs["quiet_hours"]
    quiet_text = f"{quiet['start']}-{quiet['end']}" if quiet else "off"
    lines.append("")
    lines.append(
        f"Resident (new demo device, background location on; quiet hours {quiet_text} "
        f"{prefs['time_zone']}, at most {prefs['max_per_day']} a day):"
    )
    subject = presence_service.Subject(SubjectKind.device, device.id, org.id)
    for label, end in (
        (f"walks past {library.name}", now - timedelta(minutes=8)),
        ("walks back the same way a few minutes later", now - timedelta(minutes=1)),
    ):
        track = _track(library.lon, library.lat, half_m=250, step_m=10, step_s=5, end=end)
        if "back" in label:
            track = [
                presence_service.PingInput(
                    id=p.id, lon=q.lon, lat=q.lat, recorded_at=p.recorded_at, accuracy_m=8.0
                )
                for p, q in zip(track, reversed(track), strict=True)
            ]
        result = await presence_service.ingest_ping_batch(
            session, settings, subject, track, now=now, on_events=on_events
        )
        lines.append(f"  {label}: {len(track)} pings")
        lines.extend(await _explain(session, org.id, result.events))

    worker_row = await session.execute(
        text(
            "SELECT id FROM staff_users WHERE organisation_id = :o AND role = 'field_worker' "
            "ORDER BY created_at LIMIT 1"
        ),
        {"o": org.id},
    )
    worker_id = worker_row.scalar_one()
    worker = Principal("staff", worker_id, org.id, Role.field_worker)
    local = now.astimezone(service.Prefs("Europe/London", None, None, frozenset(), None).tz)
    shift = ShiftWindow(
        start=(local - timedelta(hours=2)).time().replace(second=0, microsecond=0),
        end=(local + timedelta(hours=2)).time().replace(second=0, microsecond=0),
        time_zone="Europe/London",
    )
    await service.set_shift(session, settings, worker, worker_id, shift)
    lines.append("")
    lines.append(f"Field worker (on shift {shift.start:%H:%M}-{shift.end:%H:%M} Europe/London):")
    wsubject = presence_service.Subject(SubjectKind.staff, worker_id, org.id)
    track = _track(
        library.lon, library.lat, half_m=600, step_m=100, step_s=10, end=now - timedelta(minutes=5)
    )
    result = await presence_service.ingest_ping_batch(
        session, settings, wsubject, track, now=now, on_events=on_events
    )
    lines.append(f"  drives past {library.name}: {len(track)} pings")
    lines.extend(await _explain(session, org.id, result.events))
    outcome = await checkins_service.check_in(
        session,
        settings,
        worker,
        CheckInCreate(lon=park.lon, lat=park.lat, accuracy_m=10, geofence_id=park.id),
    )
    lines.append(f"  checks in at {park.name}:")
    lines.extend(await _explain_checkin(session, org.id, outcome.checkin.id))
    lines.append("")
    lines.append("Queued notifications are pushed by `hereabouts worker` (or the in-process one).")
    return lines


async def _explain(
    session: AsyncSession, org_id: uuid.UUID, events: list[dict[str, Any]]
) -> list[str]:
    decisions = await service.decisions_for_events(session, org_id, [e["id"] for e in events])
    titles = await _titles(session, [d for ds in decisions.values() for d in ds])
    lines = []
    for e in events:
        lines.append(f"    {e['occurred_at']:%H:%M:%S} {e['type']}")
        for d in decisions.get(e["id"], []):
            lines.append("      " + _line(d, titles))
    if not events:
        lines.append("    (no events)")
    return lines


async def _explain_checkin(
    session: AsyncSession, org_id: uuid.UUID, checkin_id: uuid.UUID
) -> list[str]:
    row = await session.execute(
        text("SELECT id FROM presence_events WHERE checkin_id = :c"), {"c": checkin_id}
    )
    ids = [r.id for r in row]
    decisions = await service.decisions_for_events(session, org_id, ids)
    flat = [d for ds in decisions.values() for d in ds]
    titles = await _titles(session, flat)
    return ["      " + _line(d, titles) for d in flat] or ["      (no candidate notifications)"]


async def _titles(session: AsyncSession, decisions: list[dict[str, Any]]) -> dict[uuid.UUID, str]:
    ids = [d["notification_id"] for d in decisions if d["notification_id"] is not None]
    if not ids:
        return {}
    rows = await session.execute(
        text("SELECT id, title FROM notifications WHERE id = ANY(CAST(:ids AS uuid[]))"),
        {"ids": ids},
    )
    return {r.id: r.title for r in rows}


def _line(d: dict[str, Any], titles: dict[uuid.UUID, str]) -> str:
    what = "QUEUED" if d["decision"] == "queued" else f"suppressed: {d['reason']}"
    later = f" (deferred until {d['deliver_after']:%H:%M} UTC)" if d["deliver_after"] else ""
    return f"{what:<24} {d['kind']}: {titles.get(d['notification_id'], '?')}{later}"
