"""A council for Open311 tests: the rules' committed town (tests/rules/helpers.py) plus
services, client api keys, and the two ways a client speaks GeoReport: the `georeport` client
library from PyPI (reads), and form-encoded POSTs as FixMyStreet-style clients send them."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import requests
import xmltodict
from georeport import GeoReport
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from tests.rules.helpers import Town

T = TypeVar("T")

FLY_TIPPING: dict[str, Any] = {
    "code": "fly-tipping",
    "name": "Fly-tipping",
    "description": "Rubbish dumped on public land",
    "group": "Street cleaning",
    "keywords": ["rubbish", "waste"],
    "attributes": [
        {
            "code": "size",
            "datatype": "singlevaluelist",
            "required": True,
            "description": "How much is there?",
            "order": 1,
            "values": [
                {"key": "bag", "name": "A bag or two"},
                {"key": "van", "name": "A van load"},
            ],
        },
        {
            "code": "hazards",
            "datatype": "multivaluelist",
            "description": "Anything dangerous?",
            "order": 2,
            "values": [
                {"key": "needles", "name": "Needles"},
                {"key": "asbestos", "name": "Asbestos"},
            ],
        },
        {"code": "bags", "datatype": "number", "description": "How many bags?", "order": 3},
    ],
    "place_categories": ["park"],
    "match_within_m": 60,
    "task": {"title": "Clear fly-tipping", "priority": "high", "due_in_s": 86400},
}


class Council(Town):
    def __init__(
        self, engine: AsyncEngine, settings: Settings, api: httpx.AsyncClient, base_url: str
    ) -> None:
        super().__init__(engine, settings, api)
        self.base_url = base_url
        self.root = base_url + "/open311/v2"

    @property
    def slug(self) -> str:
        return str(self.org.slug)

    async def service(self, **overrides: Any) -> dict[str, Any]:
        assert self.admin is not None
        body = {**FLY_TIPPING, **overrides}
        r = await self.api.post("/v1/open311/services", json=body, headers=self.admin.headers)
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out

    async def api_key(self, rate_per_minute: int | None = None) -> str:
        assert self.admin is not None
        body: dict[str, Any] = {"label": "FixMyTown app"}
        if rate_per_minute is not None:
            body["rate_per_minute"] = rate_per_minute
        r = await self.api.post("/v1/open311/keys", json=body, headers=self.admin.headers)
        assert r.status_code == 201, r.text
        return str(r.json()["key"])

    async def allow_public_read(self, allowed: bool = True) -> None:
        """`georeport` sends no api_key when reading, so reading needs the organisation's leave."""
        assert self.admin is not None
        r = await self.api.put(
            "/v1/open311/settings", json={"public_read": allowed}, headers=self.admin.headers
        )
        assert r.status_code == 200, r.text
        assert r.json()["public_read"] is allowed

    async def setup(self) -> Council:
        await super().setup()
        return self

    def client(self, fmt: str = "json", api_key: str | None = None) -> GeoReport:
        return GeoReport(self.root, jurisdiction=self.slug, api_key=api_key, output_format=fmt)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a synchronous client call off the event loop that serves it."""
        return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))

    def post_form(self, fmt: str, fields: dict[str, Any]) -> requests.Response:
        """POST requests.{fmt} form-encoded with jurisdiction_id, as GeoReport clients do."""
        data = {"jurisdiction_id": self.slug, **fields}
        return requests.post(f"{self.root}/requests.{fmt}", data=data, timeout=30)

    async def post(self, fmt: str = "json", **fields: Any) -> requests.Response:
        return await self.call(self.post_form, fmt, fields)

    async def get(self, path: str, **params: Any) -> requests.Response:
        return await self.call(
            requests.get, f"{self.root}/{path}", params={"jurisdiction_id": self.slug, **params}
        )

    async def count(self, table: str) -> int:
        return int(await self.scalar(f"SELECT count(*) FROM {table}"))  # noqa: S608


def parse(fmt: str, response: requests.Response) -> Any:
    """The document of a GeoReport answer, JSON or XML (XML must carry the declaration)."""
    if fmt == "json":
        assert response.headers["content-type"].startswith("application/json")
        return response.json()
    assert response.headers["content-type"].startswith("text/xml")
    assert response.text.startswith('<?xml version="1.0" encoding="utf-8"?>')
    return xmltodict.parse(response.content)


def answer(fmt: str, response: requests.Response) -> dict[str, Any]:
    """The single item of a POST requests answer, JSON or XML."""
    doc = parse(fmt, response)
    item = doc[0] if fmt == "json" else doc["service_requests"]["request"]
    assert isinstance(item, dict)
    return {k: (v or "") for k, v in item.items()}


def errors(fmt: str, response: requests.Response) -> list[dict[str, Any]]:
    """The spec's error list; every code equals the HTTP status."""
    doc = parse(fmt, response)
    if fmt == "xml":
        items = doc["errors"]["error"]
        doc = [items] if isinstance(items, dict) else items
        doc = [{"code": int(e["code"]), "description": e["description"]} for e in doc]
    assert isinstance(doc, list), doc
    assert doc
    for e in doc:
        assert set(e) == {"code", "description"}, e
        assert e["code"] == response.status_code
        assert e["description"]
    return list(doc)


def uid(value: str) -> uuid.UUID:
    return uuid.UUID(value)
