"""Dependencies every domain uses: settings from the running app."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.core.config import Settings


async def get_app_settings(request: Request) -> Settings:
    # async on purpose: FastAPI runs a plain `def` dependency in a worker thread, which cost
    # ≈ 10 % of a single-ping request's CPU in the profile (thread hand-off on every request)
    settings: Settings = request.app.state.settings
    return settings


AppSettings = Annotated[Settings, Depends(get_app_settings)]
