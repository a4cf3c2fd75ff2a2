"""Completion photos of a task: the image itself is the request body (any image content type)."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel

from app.audit import service as audit_service
from app.core.db import Session
from app.core.deps import AppSettings
from app.tasks import service
from app.tasks.dependencies import CurrentStaff
from app.tasks.models import TaskPhoto

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])
# The body limit middleware lets this route take a photo-sized body.
PHOTO_UPLOAD_PATH = r"/v1/tasks/[^/]+/photos"


class TaskPhotoRead(BaseModel):
    id: uuid.UUID
    task_id: uuid.UUID
    uploaded_by: uuid.UUID | None
    content_type: str
    width: int
    height: int
    created_at: datetime
    url: str


def photo_read(photo: TaskPhoto) -> TaskPhotoRead:
    return TaskPhotoRead(
        id=photo.id,
        task_id=photo.task_id,
        uploaded_by=photo.uploaded_by,
        content_type=photo.content_type,
        width=photo.width,
        height=photo.height,
        created_at=photo.created_at,
        url=f"/v1/tasks/{photo.task_id}/photos/{photo.id}",
    )


@router.post(
    "/{task_id}/photos",
    response_model=TaskPhotoRead,
    status_code=status.HTTP_201_CREATED,
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The photo's bytes: JPEG, PNG or WebP, at most 5 MB (decoded to check; "
            "EXIF and other metadata are removed).",
            "content": {
                t: {"schema": {"type": "string", "format": "binary"}}
                for t in ("image/jpeg", "image/png", "image/webp")
            },
        }
    },
    responses={
        409: {"description": "Already 3 photos, or the task is closed"},
        413: {"description": "Larger than the limit"},
        422: {"description": "Not a readable JPEG, PNG or WebP"},
    },
)
async def add_photo(
    session: Session,
    settings: AppSettings,
    staff: CurrentStaff,
    task_id: uuid.UUID,
    request: Request,
) -> TaskPhotoRead:
    """Assignee or editor: attach a completion photo (up to 3 per task, before it is done)."""
    raw = await request.body()
    photo = await service.add_photo(session, staff, task_id, raw, settings.task_photo_max_bytes)
    await audit_service.record(
        session, staff, "task.photo.add", "task", task_id, {"photo_id": str(photo.id)}
    )
    return photo_read(photo)


@router.get("/{task_id}/photos", response_model=list[TaskPhotoRead])
async def list_photos(
    session: Session, staff: CurrentStaff, task_id: uuid.UUID
) -> list[TaskPhotoRead]:
    """Assignees and editors: the task's photos, oldest first (without the image bytes)."""
    return [photo_read(p) for p in await service.list_photos(session, staff, task_id)]


@router.get(
    "/{task_id}/photos/{photo_id}",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}}},
)
async def get_photo(
    session: Session, staff: CurrentStaff, task_id: uuid.UUID, photo_id: uuid.UUID
) -> Response:
    """Assignees and editors: the photo itself."""
    photo = await service.get_photo(session, staff, task_id, photo_id)
    return Response(
        photo.data,
        media_type=photo.content_type,
        headers={"Cache-Control": "private, max-age=3600"},
    )


@router.delete("/{task_id}/photos/{photo_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_photo(
    session: Session, staff: CurrentStaff, task_id: uuid.UUID, photo_id: uuid.UUID
) -> None:
    """Remove a photo from a task that is not yet done (field workers: their own)."""
    await service.delete_photo(session, staff, task_id, photo_id)
    await audit_service.record(
        session, staff, "task.photo.delete", "task", task_id, {"photo_id": str(photo_id)}
    )
