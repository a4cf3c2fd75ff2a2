"""Demo Open311 report types for `make run`: fly-tipping (to parks) and potholes (anywhere).

Idempotent: a service whose code exists is left alone. No api key is made (a key is shown only
once): issue one in the console's Reports tab to connect a reporting app (docs/open311.md).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Organisation
from app.core.config import get_settings
from app.open311 import repository, service
from app.open311.schemas import ServiceCreate

DEMO_SERVICES = [
    {
        "code": "fly-tipping",
        "name": "Fly-tipping",
        "description": "Rubbish dumped on public land",
        "group": "Street cleaning",
        "keywords": ["rubbish", "waste", "dumping"],
        "attributes": [
            {
                "code": "size",
                "datatype": "singlevaluelist",
                "required": True,
                "description": "How much is there?",
                "order": 1,
                "values": [
                    {"key": "bag", "name": "A bag or two"},
                    {"key": "car", "name": "A car boot load"},
                    {"key": "van", "name": "A van load or more"},
                ],
            }
        ],
        "place_categories": ["park"],
        "match_within_m": 100,
        "task": {"title": "Clear fly-tipping", "priority": "high", "due_in_s": 2 * 86400},
    },
    {
        "code": "pothole",
        "name": "Pothole",
        "group": "Roads",
        "keywords": ["road", "pavement"],
        "task": {"title": "Inspect a pothole", "priority": "normal", "due_in_s": 7 * 86400},
    },
]


async def load_demo_open311(session: AsyncSession, org: Organisation) -> list[str]:
    lines = []
    for body in DEMO_SERVICES:
        data = ServiceCreate.model_validate(body)
        if await repository.service_by_code(session, org.id, data.code) is None:
            await service.create_service(session, get_settings(), org.id, data)
            lines.append(f"    open311: report type {data.code}")
    await service.set_public_read(session, org.id, True)
    return lines
