"""The console and PWA pages as HTTP resources: served, locked down by CSP, no external assets."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from fastapi import FastAPI

from app.core.config import Environment, Settings
from app.main import create_app
from app.web.router import STATIC_DIR, content_security_policy, tile_source


def _csp(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    return {d.split(" ", 1)[0]: d.split(" ", 1)[1] for d in policy.split("; ")}


async def test_console_page_is_served_with_a_csp_allowing_only_self_and_the_tile_host(
    client: httpx.AsyncClient,
) -> None:
    res = await client.get("/console/")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/html")
    csp = _csp(res)
    assert csp["default-src"] == "'self'"
    assert csp["script-src"] == "'self'"
    assert csp["connect-src"] == "'self'"
    assert csp["img-src"] == "'self' data: blob: https://tile.openstreetmap.org"
    assert csp["frame-ancestors"] == "'none'"
    assert res.headers["x-content-type-options"] == "nosniff"
    assert 'content="https://tile.openstreetmap.org/{z}/{x}/{y}.png"' in res.text


async def test_pages_redirect_to_their_trailing_slash_scope(client: httpx.AsyncClient) -> None:
    for path in ("/console", "/app"):
        res = await client.get(path)
        assert res.status_code == 308
        assert res.headers["location"] == path + "/"


async def test_app_page_links_its_manifest_and_the_service_worker_is_served_in_scope(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/app/")
    assert page.status_code == 200
    assert '<link rel="manifest" href="/app/manifest.webmanifest">' in page.text
    sw = await client.get("/app/sw.js")
    assert sw.status_code == 200
    assert sw.headers["content-type"].startswith("text/javascript")
    assert "content-security-policy" in sw.headers
    manifest = await client.get("/app/manifest.webmanifest")
    assert manifest.headers["content-type"].startswith("application/manifest+json")
    doc = manifest.json()
    assert doc["scope"] == "/app/"
    assert {"192x192", "512x512"} <= {icon["sizes"] for icon in doc["icons"]}
    for icon in doc["icons"]:
        assert (await client.get(icon["src"])).status_code == 200


async def test_static_assets_carry_the_security_headers(client: httpx.AsyncClient) -> None:
    res = await client.get("/static/vendor/leaflet/leaflet.js")
    assert res.status_code == 200
    assert "content-security-policy" in res.headers
    assert res.headers["content-encoding"] == "gzip"
    revalidated = await client.get(
        "/static/vendor/leaflet/leaflet.js", headers={"If-None-Match": res.headers["etag"]}
    )
    assert revalidated.status_code == 304
    assert (await client.get("/static/../app/main.py")).status_code == 404


async def test_every_asset_a_page_references_is_local_and_exists(client: httpx.AsyncClient) -> None:
    for path in ("/console/", "/app/"):
        html = (await client.get(path)).text
        refs = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert refs
        for ref in refs:
            if ref.startswith("#"):
                continue
            assert ref.startswith("/"), f"{path} references a non-local asset {ref}"
            assert (await client.get(ref)).status_code in (200, 308), ref


def test_javascript_imports_only_local_modules() -> None:
    for js in STATIC_DIR.rglob("*.js"):
        if "vendor" in js.parts:
            continue
        text = js.read_text(encoding="utf-8")
        for spec in re.findall(r'from\s+"([^"]+)"', text):
            assert spec.startswith("/static/"), f"{js.name} imports {spec}"
            assert (STATIC_DIR / spec.removeprefix("/static/")).is_file(), spec
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text


def test_vendored_libraries_ship_with_their_licences() -> None:
    for lib in ("leaflet", "leaflet-geoman", "axe-core"):
        assert (STATIC_DIR / "vendor" / lib / "LICENSE").is_file()
    manifest = json.loads((STATIC_DIR / "app" / "manifest.webmanifest").read_text())
    assert manifest["start_url"] == "/app/"


@pytest.mark.parametrize(
    ("url", "source"),
    [
        ("https://tile.openstreetmap.org/{z}/{x}/{y}.png", "https://tile.openstreetmap.org"),
        ("https://{s}.tile.example.org/{z}/{x}/{y}.png", "https://*.tile.example.org"),
        ("/tiles/{z}/{x}/{y}.png", None),
    ],
)
def test_tile_host_becomes_the_only_extra_image_source(url: str, source: str | None) -> None:
    assert tile_source(url) == source
    policy = content_security_policy(Settings(environment=Environment.test, tile_url=url))
    img = next(d for d in policy.split("; ") if d.startswith("img-src"))
    assert img == "img-src 'self' data: blob:" + (f" {source}" if source else "")


async def test_configured_tile_url_is_escaped_into_the_page(settings: Settings) -> None:
    custom = settings.model_copy(
        update={"tile_url": 'https://tiles.example.org/{z}/{x}/{y}.png?a="1"'}
    )
    app: FastAPI = create_app(custom)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        res = await c.get("/console/")
    assert 'content="https://tiles.example.org/{z}/{x}/{y}.png?a=&quot;1&quot;"' in res.text
    assert "https://tiles.example.org" in res.headers["content-security-policy"]


async def test_pages_are_not_part_of_the_api_schema(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not [p for p in paths if p.startswith(("/console", "/app", "/static"))]
