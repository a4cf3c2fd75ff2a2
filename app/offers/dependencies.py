"""Load-or-404 for offers, scoped to the caller's organisation."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends

from app.accounts.dependencies import EditorUser
from app.core.db import Session
from app.offers import service
from app.offers.models import Offer


async def get_managed_offer(session: Session, editor: EditorUser, offer_id: uuid.UUID) -> Offer:
    return await service.get_offer(session, editor.organisation_id, offer_id)


ManagedOffer = Annotated[Offer, Depends(get_managed_offer)]
