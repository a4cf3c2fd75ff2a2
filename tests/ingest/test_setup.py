"""Setup links for the GPS apps: each link, read the way its app reads it, configures a working
connection (the fix it then sends is stored), keys are listed and revoked."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Organisation
from tests.factories import Resident, Staff
from tests.ingest.helpers import basic, overland_body, owntracks_location, stored, traccar_params
from tests.ingest.helpers import walk as a_walk


async def _setup(client: httpx.AsyncClient, headers: dict[str, str], app: str) -> dict[str, object]:
    r = await client.post("/v1/me/ingest-keys", json={"app": app}, headers=headers)
    assert r.status_code == 201, r.text
    data = r.json()
    assert data["setup"]["app"] == app
    assert data["setup"]["qr_svg"].startswith("data:image/svg+xml")
    return dict(data)


def _android_query(link: str) -> dict[str, str]:
    """The query as OwnTracks for Android splits and decodes it (java.net.URLDecoder: `+` is a
    space, so an undecoded `+` in the base64 would break the configuration)."""
    out = {}
    for part in (urlsplit(link).query or "").split("&"):
        name, _, value = part.partition("=")
        out[unquote(name.replace("+", " "))] = unquote(value.replace("+", " "))
    return out


async def test_owntracks_link_holds_a_configuration_that_sends_fixes(
    client: httpx.AsyncClient, db: AsyncSession, resident: Resident
) -> None:
    data = await _setup(client, resident.headers, "owntracks")
    link = str(data["setup"]["link"])  # type: ignore[index]
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc, parts.path) == ("owntracks", "", "/config")
    config = json.loads(base64.b64decode(_android_query(link)["inline"], validate=True))
    assert config == {
        "_type": "configuration",
        "mode": 3,
        "url": "http://test/v1/ingest/owntracks",
        "auth": True,
        "username": "hereabouts",
        "password": data["key"],
        "cmd": True,
    }
    assert data["setup"]["config"] == config  # type: ignore[index]
    # the app, configured so, posts a location with Basic auth: it is stored
    fix = a_walk(1)[0]
    r = await client.post(
        urlsplit(config["url"]).path,
        json=owntracks_location(fix),
        headers=basic(config["password"], config["username"]),
    )
    assert r.status_code == 200, r.text
    assert len(await stored(db, resident.id)) == 1


async def test_overland_and_traccar_links_configure_working_apps(
    client: httpx.AsyncClient, db: AsyncSession, worker: Staff
) -> None:
    fixes = a_walk(2)
    data = await _setup(client, worker.headers, "overland")
    link = urlsplit(str(data["setup"]["link"]))  # type: ignore[index]
    assert (link.scheme, link.netloc) == ("overland", "setup")
    query = {k: v[0] for k, v in parse_qs(link.query, strict_parsing=True).items()}
    assert query == {"url": "http://test/v1/ingest/overland", "token": data["key"]}
    r = await client.post(
        urlsplit(query["url"]).path,
        json=overland_body(fixes[:1]),
        headers={"Authorization": f"Bearer {query['token']}"},
    )
    assert (r.status_code, r.json()["result"], r.json()["accepted"]) == (200, "ok", 1)

    data = await _setup(client, worker.headers, "traccar")
    link = urlsplit(str(data["setup"]["link"]))  # type: ignore[index]
    assert (link.scheme, link.netloc) == ("org.traccar.client", "setup")
    query = {k: v[0] for k, v in parse_qs(link.query, strict_parsing=True).items()}
    assert query == {"url": "http://test/v1/ingest/traccar", "id": data["key"]}
    r = await client.get(urlsplit(query["url"]).path, params=traccar_params(query["id"], fixes[1]))
    assert (r.status_code, r.json()["accepted"]) == (200, 1)
    assert len(await stored(db, worker.id)) == 2
    settings = {s["name"]: s["value"] for s in data["setup"]["settings"]}  # type: ignore[index]
    assert settings == {"Server URL": query["url"], "Device identifier": data["key"]}


async def test_keys_are_listed_without_the_key_and_revoked(
    client: httpx.AsyncClient, org: Organisation, resident: Resident, twin: Resident
) -> None:
    first = await _setup(client, resident.headers, "traccar")
    r = await client.post(
        "/v1/me/ingest-keys",
        json={"app": "overland", "label": "Sam's iPhone"},
        headers=resident.headers,
    )
    second = r.json()
    await _setup(client, twin.headers, "owntracks")  # another device's: never listed here
    r = await client.get("/v1/me/ingest-keys", headers=resident.headers)
    assert r.status_code == 200, r.text
    listed = r.json()
    # newest first; here both were made in the test's one transaction (the same now()), so
    # only the set is compared
    assert sorted((k["id"], k["label"]) for k in listed) == sorted(
        [(second["id"], "Sam's iPhone"), (first["id"], "Traccar Client")]
    )
    assert all(set(k) == {"id", "label", "created_at"} for k in listed)
    assert (
        await client.delete(f"/v1/me/ingest-keys/{first['id']}", headers=twin.headers)
    ).status_code == 404
    assert (
        await client.delete(f"/v1/me/ingest-keys/{first['id']}", headers=resident.headers)
    ).status_code == 204
    r = await client.get("/v1/me/ingest-keys", headers=resident.headers)
    assert [k["id"] for k in r.json()] == [second["id"]]
    params = traccar_params(str(first["key"]), a_walk(1)[0])
    assert (await client.get("/v1/ingest/traccar", params=params)).status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"app": "whatsapp"},
        {"app": "owntracks", "extra": 1},
        {"label": "x" * 101, "app": "overland"},
    ],
)
async def test_a_bad_request_creates_no_key(
    client: httpx.AsyncClient, resident: Resident, body: dict[str, object]
) -> None:
    r = await client.post("/v1/me/ingest-keys", json=body, headers=resident.headers)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert (await client.get("/v1/me/ingest-keys", headers=resident.headers)).json() == []


async def test_public_url_names_the_address_phones_reach(
    app: FastAPI, client: httpx.AsyncClient, resident: Resident
) -> None:
    app.state.settings.public_url = "https://where.example.org/"
    try:
        data = await _setup(client, resident.headers, "overland")
    finally:
        app.state.settings.public_url = None
    assert data["setup"]["endpoint"] == "https://where.example.org/v1/ingest/overland"  # type: ignore[index]
