"""Redemption a desk can trust (issue 21): redeeming gives a short single-use code; staff check
it (GET, changes nothing) and accept it (POST .../use) once, in its organisation, while the
offer is valid."""

from __future__ import annotations

from datetime import datetime

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.offers.service import CODE_ALPHABET, CODE_LENGTH
from tests.offers.helpers import Town
from tests.offers.test_offers_api import PROBLEM, create


async def redeem_code(client: httpx.AsyncClient, town: Town) -> tuple[str, str]:
    oid = (await create(client, town))["id"]
    r = await client.post(f"/v1/offers/{oid}/redeem", headers=town.resident.headers)
    assert r.status_code == 201, r.text
    code: str = r.json()["code"]
    return oid, code


async def test_a_code_is_short_unambiguous_and_checked_without_being_used(
    client: httpx.AsyncClient, town: Town
) -> None:
    oid, code = await redeem_code(client, town)
    assert len(code) == CODE_LENGTH
    assert set(code) <= set(CODE_ALPHABET)
    assert not set(code) & set("0O1IL2Z5S8B")
    for _ in range(2):  # a check is a read: the second sees the same
        r = await client.get(f"/v1/offers/codes/{code}", headers=town.worker.headers)
        assert r.status_code == 200, r.text
        assert (r.json()["offer_id"], r.json()["valid_now"], r.json()["used_at"]) == (
            oid,
            True,
            None,
        )
    # typed at a desk: lower case and spaces are the same code
    spaced = f"{code[:3].lower()} {code[3:].lower()}"
    assert (await client.get(f"/v1/offers/codes/{spaced}", headers=town.editor.headers)).json()[
        "code"
    ] == code


async def test_a_code_works_once(client: httpx.AsyncClient, town: Town, db: AsyncSession) -> None:
    _, code = await redeem_code(client, town)
    used = await client.post(f"/v1/offers/codes/{code}/use", headers=town.worker.headers)
    assert used.status_code == 200, used.text
    assert used.json()["used_at"] is not None
    again = await client.post(f"/v1/offers/codes/{code}/use", headers=town.editor.headers)
    assert again.status_code == 409
    assert again.headers["content-type"] == PROBLEM
    assert again.json()["type"].endswith("/code-used")
    used_at = datetime.fromisoformat(used.json()["used_at"])
    assert datetime.fromisoformat(again.json()["used_at"]) == used_at
    check = await client.get(f"/v1/offers/codes/{code}", headers=town.worker.headers)
    assert (check.json()["valid_now"], check.json()["used_at"]) == (False, used.json()["used_at"])
    row = await db.execute(
        text("SELECT used_by FROM offer_redemptions WHERE code = :c"), {"c": code}
    )
    assert row.scalar_one() is not None


async def test_a_code_works_only_in_its_organisation_and_while_the_offer_is_valid(
    client: httpx.AsyncClient, town: Town
) -> None:
    oid, code = await redeem_code(client, town)
    for method, path in (("GET", ""), ("POST", "/use")):
        theirs = await client.request(
            method, f"/v1/offers/codes/{code}{path}", headers=town.other_editor.headers
        )
        assert theirs.status_code == 404
        assert theirs.json()["type"].endswith("/code-not-found")
    resident = await client.get(f"/v1/offers/codes/{code}", headers=town.resident.headers)
    assert resident.status_code == 403
    paused = await client.patch(
        f"/v1/offers/{oid}", json={"status": "paused"}, headers=town.editor.headers
    )
    assert paused.status_code == 200
    refused = await client.post(f"/v1/offers/codes/{code}/use", headers=town.worker.headers)
    assert refused.status_code == 409
    assert refused.json()["type"].endswith("/offer-not-available")
    check = await client.get(f"/v1/offers/codes/{code}", headers=town.worker.headers)
    assert (check.json()["valid_now"], check.json()["used_at"]) == (False, None)  # unchanged


async def test_unknown_and_malformed_codes_are_clear_problems(
    client: httpx.AsyncClient, town: Town
) -> None:
    unknown = await client.get("/v1/offers/codes/ACDEFG", headers=town.worker.headers)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == PROBLEM
    for bad in ("AB", "A" * 13, "AB-CD!"):
        r = await client.get(f"/v1/offers/codes/{bad}", headers=town.worker.headers)
        assert r.status_code == 422, bad
        assert r.headers["content-type"] == PROBLEM
