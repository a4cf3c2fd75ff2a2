"""Demo tasks: a park inspection in the team pool and a library stock check for the demo worker.

Attached to the demo places by external id (falling back to any place of the category); skipped
when no such place exists yet, so this loader must run after the places loader.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Organisation, Role
from app.accounts.principal import Principal
from app.geofences import service as geofence_service
from app.tasks import repository, service
from app.tasks.schemas import TaskCreate

DEMO_WORKER = "worker@demo-town.example"
DEMO_EDITOR = "editor@demo-town.example"


async def load_demo_tasks(session: AsyncSession, org: Organisation) -> list[str]:
    """Idempotent: a task whose title already exists in the organisation is left alone."""
    editor = await repository.staff_by_email(session, org.id, DEMO_EDITOR)
    worker = await repository.staff_by_email(session, org.id, DEMO_WORKER)
    if editor is None or worker is None:
        return ["tasks skipped: the demo editor and field worker accounts are missing"]
    author = Principal("staff", editor.id, org.id, Role.editor)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    demo: list[tuple[str, str, dict[str, Any]]] = [
        (
            "DEMO-PARK-RIVERSIDE",
            "park",
            {
                "title": "Weekly playground inspection",
                "description": "Check swings, gate latches and the safety surfacing; "
                "photograph any damage.",
                "priority": "high",
                "due_at": now + timedelta(days=2),
                "requires_visit": True,
            },
        ),
        (
            "DEMO-LIB-CENTRAL",
            "library",
            {
                "title": "Library stock check: reservations shelf",
                "description": "Count the reservations shelf and clear items older than 14 days.",
                "priority": "normal",
                "due_at": now + timedelta(days=5),
                "requires_visit": True,
                "assignee_ids": [worker.id],
            },
        ),
    ]
    lines: list[str] = []
    for external_id, category, fields in demo:
        if await repository.task_titled(session, org.id, fields["title"]):
            lines.append(f"task: {fields['title']} (already there)")
            continue
        place = await geofence_service.find_demo_place(session, org.id, external_id, category)
        if place is None:
            lines.append(f"task skipped (no {category} place yet): {fields['title']}")
            continue
        await service.create_task(session, author, TaskCreate(**fields, geofence_id=place.id))
        who = DEMO_WORKER if fields.get("assignee_ids") else "team pool"
        lines.append(f"task: {fields['title']} @ {place.name} ({who})")
    return lines
