"""Demo data for `make run`: a small town with staff accounts; domains add their own demo rows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository as accounts_repository
from app.accounts import service as accounts_service
from app.accounts.models import Organisation, Role

DEMO_ORG_SLUG = "demo-town"
DEMO_ORG_NAME = "Hereabouts Demo Town Council"


@dataclass(frozen=True)
class DemoAccount:
    email: str
    password: str
    full_name: str
    role: Role


DEMO_ACCOUNTS = (
    DemoAccount("admin@demo-town.example", "demo-admin-pass", "Ada Admin", Role.admin),
    DemoAccount("editor@demo-town.example", "demo-editor-pass", "Libby Librarian", Role.editor),
    DemoAccount(
        "worker@demo-town.example", "demo-worker-pass", "Fred Fieldworker", Role.field_worker
    ),
)

# Later domains register loaders here: `async def load(session, org) -> list[str]` (lines to print).
DemoLoader = Callable[[AsyncSession, Organisation], Awaitable[list[str]]]
EXTRA_LOADERS: list[DemoLoader] = []

from app.geofences.demo import load_demo_places  # noqa: E402

EXTRA_LOADERS.append(load_demo_places)
# Offers and tasks attach to the demo places: keep these after the places loader.
from app.offers.demo import load_demo_offers  # noqa: E402
from app.tasks.demo import load_demo_tasks  # noqa: E402

EXTRA_LOADERS.append(load_demo_offers)
EXTRA_LOADERS.append(load_demo_tasks)
# Open311 report types (app/open311): reports become tasks at the demo parks.
from app.open311.demo import load_demo_open311  # noqa: E402

EXTRA_LOADERS.append(load_demo_open311)


async def load_demo(session: AsyncSession) -> list[str]:
    """Idempotent: running it twice leaves one copy of everything."""
    org = await accounts_service.get_or_create_organisation(session, DEMO_ORG_SLUG, DEMO_ORG_NAME)
    lines = [f"organisation: {org.name} ({org.slug})"]
    for account in DEMO_ACCOUNTS:
        if await accounts_repository.get_user_by_email(session, account.email) is None:
            await accounts_service.create_user(
                session,
                org.id,
                email=account.email,
                full_name=account.full_name,
                password=account.password,
                role=account.role,
            )
        lines.append(f"{account.role.value:>12}: {account.email} / {account.password}")
    for loader in EXTRA_LOADERS:
        lines.extend(await loader(session, org))
    return lines
