"""Completion photos: decoded to prove they are images, re-encoded to drop EXIF (and location).

The bytes a phone sends are never stored. The image is decoded with Pillow (so a file named
.jpg that is not a JPEG, PNG or WebP, or that is truncated, is refused whatever its name or
declared type), turned upright from its EXIF orientation, and encoded again in the same format
without any metadata: EXIF (GPS position, camera serial), XMP, ICC comments and PNG text chunks
are all left behind.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from app.tasks.errors import InvalidPhoto, PhotoTooLarge

MAX_PHOTOS_PER_TASK = 3
# Decoding a small file into a huge bitmap is a denial of service (a "decompression bomb").
MAX_PIXELS = 40_000_000
FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


@dataclass(frozen=True)
class CleanPhoto:
    data: bytes
    content_type: str
    width: int
    height: int


def clean_photo(raw: bytes, max_bytes: int) -> CleanPhoto:
    """The photo re-encoded without metadata, or InvalidPhoto / PhotoTooLarge."""
    if len(raw) > max_bytes:
        raise PhotoTooLarge(
            f"A photo may be at most {max_bytes // (1024 * 1024)} MB; this one is "
            f"{len(raw) / (1024 * 1024):.1f} MB.",
            extra={"field": "photo", "max_bytes": max_bytes, "bytes": len(raw)},
        )
    if not raw:
        raise InvalidPhoto("The photo is empty.", extra={"field": "photo"})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw), formats=list(FORMATS)) as img:
                fmt = img.format or ""
                if img.width * img.height > MAX_PIXELS:
                    raise InvalidPhoto(
                        f"The photo has {img.width}×{img.height} pixels; at most "
                        f"{MAX_PIXELS // 1_000_000} megapixels are accepted.",
                        extra={"field": "photo"},
                    )
                img.load()  # decodes every pixel: a truncated or corrupt file fails here
                upright = ImageOps.exif_transpose(img).copy()
    except InvalidPhoto:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Warning) as exc:
        raise InvalidPhoto(
            "This file is not a JPEG, PNG or WebP photo that can be read.",
            extra={"field": "photo", "reason": type(exc).__name__},
        ) from exc
    # Nothing of the original's metadata goes on (palette transparency is pixels, not metadata).
    upright.info = {k: v for k, v in upright.info.items() if k == "transparency"}
    out = io.BytesIO()
    if fmt == "JPEG":
        if upright.mode not in ("RGB", "L"):
            upright = upright.convert("RGB")
        upright.save(out, "JPEG", quality=88, optimize=True)
    elif fmt == "PNG":
        upright.save(out, "PNG", optimize=True)
    else:
        upright.save(out, "WEBP", quality=85)
    return CleanPhoto(out.getvalue(), FORMATS[fmt], upright.width, upright.height)
