"""Serves the staff console and the PWA: HTML pages, the service worker and `/static/` assets.

Everything is plain files (ES modules, vendored Leaflet), so nothing is fetched from the network at
runtime. Every response here carries a Content-Security-Policy that allows only this origin plus
the configured map tile host.
"""

from __future__ import annotations

import html
import re
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.middleware.gzip import GZipMiddleware
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.config import Settings

WEB_DIR = Path(__file__).resolve().parent
STATIC_DIR = WEB_DIR / "static"
PAGES_DIR = WEB_DIR / "pages"

router = APIRouter(include_in_schema=False)


def tile_source(tile_url: str) -> str | None:
    """The CSP source for the tile host: `https://a.b` (with `{s}` subdomains as `*.`)."""
    parts = urlsplit(tile_url)
    if not parts.scheme or not parts.netloc:
        return None  # a relative URL: tiles served by this origin, covered by 'self'
    host = parts.netloc.replace("{s}.", "*.").replace("{s}", "*")
    return f"{parts.scheme}://{host}"


def content_security_policy(settings: Settings) -> str:
    tiles = tile_source(settings.tile_url)
    img = "'self' data: blob:" + (f" {tiles}" if tiles else "")
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {img}",
            "connect-src 'self'",
            "font-src 'self'",
            "manifest-src 'self'",
            "worker-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def page_headers(settings: Settings) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(settings),
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(self)",
        "Cache-Control": "no-cache",
    }


def _render(name: str, settings: Settings) -> HTMLResponse:
    text = (PAGES_DIR / name).read_text(encoding="utf-8")
    text = text.replace("{{tile_url}}", html.escape(settings.tile_url, quote=True))
    text = text.replace("{{tile_attribution}}", html.escape(settings.tile_attribution, quote=True))
    return HTMLResponse(text, headers=page_headers(settings))


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


@router.get("/console")
async def console_redirect() -> RedirectResponse:
    return RedirectResponse("/console/", status_code=308)


@router.get("/console/")
async def console(request: Request) -> HTMLResponse:
    return _render("console.html", _settings(request))


@router.get("/app")
async def app_redirect() -> RedirectResponse:
    return RedirectResponse("/app/", status_code=308)


@router.get("/app/")
async def resident_app(request: Request) -> HTMLResponse:
    return _render("app.html", _settings(request))


@router.get("/app/sw.js")
async def service_worker(request: Request) -> Response:
    # Served under /app/ so its default scope is the PWA; never cached so updates roll out.
    return FileResponse(
        STATIC_DIR / "app" / "sw.js",
        media_type="text/javascript",
        headers=page_headers(_settings(request)),
    )


@router.get("/app/manifest.webmanifest")
async def manifest(request: Request) -> Response:
    return FileResponse(
        STATIC_DIR / "app" / "manifest.webmanifest",
        media_type="application/manifest+json",
        headers=page_headers(_settings(request)),
    )


class _WithHeaders:
    """Adds fixed headers to every response of the wrapped ASGI app (the static files)."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_web(app: FastAPI, settings: Settings) -> None:
    """Mount the pages and `/static/` on the application."""
    app.include_router(router)
    static = StaticFiles(directory=STATIC_DIR, follow_symlink=False)
    # Compressed here only (not app-wide): the map libraries shrink from ~480 KB to ~130 KB,
    # while API responses keep their own behaviour.
    app.mount(
        "/static",
        GZipMiddleware(_WithHeaders(static, page_headers(settings)), minimum_size=1024),
        name="static",
    )


# Notifications queued before the app had detail pages point at /offers/{id} and /tasks/{id}:
# they land on the app's page for it, never on an API answer.
@router.get("/offers/{offer_id}", include_in_schema=False)
async def offer_page(offer_id: uuid.UUID) -> RedirectResponse:
    return RedirectResponse(f"/app/#offer/{offer_id}", status_code=302)


@router.get("/tasks/{task_id}", include_in_schema=False)
async def task_page(task_id: uuid.UUID) -> RedirectResponse:
    return RedirectResponse(f"/app/#task/{task_id}", status_code=302)


PRIVACY_DOC = PAGES_DIR.parents[2] / "docs" / "privacy.md"
NOTICE_HEADING = "## Privacy notice for residents"


def privacy_notice_html(markdown: str) -> str:
    """The residents' notice of docs/privacy.md as simple HTML (headings, lists, paragraphs)."""
    start = markdown.index(NOTICE_HEADING)
    end = markdown.find("\n## ", start + len(NOTICE_HEADING))
    lines = markdown[start : end if end >= 0 else None].splitlines()[1:]
    blocks: list[str] = []
    item: list[str] | None = None
    para: list[str] = []

    def inline(text: str) -> str:
        out = html.escape(text, quote=False)
        out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
        out = re.sub(r"\*(.+?)\*", r"<em>\1</em>", out)
        return re.sub(r"`(.+?)`", r"<code>\1</code>", out)

    def flush() -> None:
        nonlocal item, para
        if item is not None:
            blocks.append(f"<li>{inline(' '.join(item))}</li>")
            item = None
        if para:
            blocks.append(f"<p>{inline(' '.join(para))}</p>")
            para = []

    for line in lines:
        text = line.strip()
        if text.startswith("- "):
            flush()
            item = [text[2:]]
        elif not text:
            flush()
        elif item is not None:
            item.append(text)
        else:
            para.append(text)
    flush()
    body, in_list = [], False
    for b in blocks:
        if b.startswith("<li>") and not in_list:
            body.append("<ul>")
            in_list = True
        if not b.startswith("<li>") and in_list:
            body.append("</ul>")
            in_list = False
        body.append(b)
    if in_list:
        body.append("</ul>")
    return "\n".join(body)


@router.get("/app/privacy")
async def privacy_notice(request: Request) -> HTMLResponse:
    """The residents' privacy notice (from docs/privacy.md), linked before "Get started"."""
    notice = privacy_notice_html(PRIVACY_DOC.read_text(encoding="utf-8"))
    page = (PAGES_DIR / "privacy.html").read_text(encoding="utf-8").replace("{{notice}}", notice)
    return HTMLResponse(page, headers=page_headers(_settings(request)))
