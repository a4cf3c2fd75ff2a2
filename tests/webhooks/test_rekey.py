"""`hereabouts webhooks rekey`: after a key change, every stored signing secret is sealed again
with the current key, on a real database (its own, so the command's commit is real)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner, Result

from app.cli import app as cli_app
from app.core.cluster import EmbeddedCluster
from app.core.config import Settings, get_settings
from app.core.db import create_engine
from app.webhooks import secretbox
from tests.conftest import migrated_database
from tests.factories import create_organisation

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


@pytest.fixture(scope="module")
def url(pg_cluster: EmbeddedCluster) -> Iterator[str]:
    with migrated_database(pg_cluster, "hereabouts_rekey") as u:
        yield u


def _keyed(settings: Settings, url: str, current: str, *previous: str) -> Settings:
    return settings.model_copy(
        update={
            "database_url": url,
            "webhook_secret_key": current,
            "webhook_previous_secret_keys": list(previous),
        }
    )


def _run(
    settings: Settings, query: str, params: dict[str, object] | None = None
) -> list[tuple[Any, ...]]:
    async def go() -> list[tuple[Any, ...]]:
        engine = create_engine(settings)
        try:
            async with AsyncSession(engine) as s:
                result = await s.execute(text(query), params or {})
                returns_rows = query.lstrip().upper().startswith("SELECT")
                rows = [tuple(r) for r in result.all()] if returns_rows else []
                await s.commit()
                return rows
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _add_endpoints(settings: Settings, plain: dict[str, tuple[str, str | None]]) -> list[str]:
    """Endpoints (in two organisations) whose secrets `settings`' current key seals."""

    async def go() -> list[str]:
        engine = create_engine(settings)
        ids = []
        try:
            async with AsyncSession(engine) as s:
                orgs = [await create_organisation(s), await create_organisation(s)]
                for n, (secret, previous) in enumerate(plain.values()):
                    row = await s.execute(
                        text(
                            "INSERT INTO webhook_endpoints (id, organisation_id, url, description,"
                            " event_types, include_person_ids, secret, previous_secret,"
                            " pseudonym_key, status, created_at, updated_at) VALUES (:id, :org,"
                            " 'https://crm.example.org/h', '', ARRAY['*'], false, :secret,"
                            " :previous, 'k', 'enabled', now(), now()) RETURNING id"
                        ),
                        {
                            "id": uuid.uuid4(),
                            "org": orgs[n % 2].id,
                            "secret": secretbox.seal(settings, secret),
                            "previous": None
                            if previous is None
                            else secretbox.seal(settings, previous),
                        },
                    )
                    ids.append(str(row.scalar_one()))
                await s.commit()
        finally:
            await engine.dispose()
        return ids

    return asyncio.run(go())


def _stored(settings: Settings, ids: list[str]) -> dict[str, tuple[str, str | None]]:
    rows = _run(
        settings,
        "SELECT id::text, secret, previous_secret FROM webhook_endpoints WHERE id::text = ANY(:i)",
        {"i": ids},
    )
    return {r[0]: (r[1], r[2]) for r in rows}


def _rekey(url: str, current: str, *previous: str, monkeypatch: pytest.MonkeyPatch) -> Result:
    monkeypatch.setenv("HEREABOUTS_DATABASE_URL", url)
    monkeypatch.setenv("HEREABOUTS_WEBHOOK_SECRET_KEY", current)
    monkeypatch.setenv("HEREABOUTS_WEBHOOK_PREVIOUS_SECRET_KEYS", json.dumps(list(previous)))
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(cli_app, ["webhooks", "rekey"])
    finally:
        get_settings.cache_clear()


def _opens_with_only(key: str, stored: str) -> str:
    return Fernet(key.encode()).decrypt(stored.removeprefix("fernet:").encode()).decode()


def test_rekey_seals_every_secret_with_the_new_key_once(
    settings: Settings, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(settings.model_copy(update={"database_url": url}), "DELETE FROM webhook_endpoints")
    plain = {
        "plain": ("whsec_one", None),
        "rotated": ("whsec_two", "whsec_two_before"),  # a previous secret still signing
        "third": ("whsec_three", None),
    }
    ids = _add_endpoints(_keyed(settings, url, OLD), plain)
    # one endpoint registered after the key change: already under the new key
    [fresh] = _add_endpoints(_keyed(settings, url, NEW, OLD), {"fresh": ("whsec_new", None)})
    before = _stored(settings.model_copy(update={"database_url": url}), [*ids, fresh])

    first = _rekey(url, NEW, OLD, monkeypatch=monkeypatch)
    assert first.exit_code == 0, first.output
    assert "endpoints: 4" in first.output
    assert "secrets re-encrypted: 4" in first.output  # 3 secrets + 1 previous secret
    assert "secrets already under the current key: 1" in first.output
    after = _stored(settings.model_copy(update={"database_url": url}), [*ids, fresh])
    assert after[fresh] == before[fresh]  # not rewritten
    for endpoint_id, (secret, previous) in zip(ids, plain.values(), strict=True):
        stored_secret, stored_previous = after[endpoint_id]
        assert stored_secret != before[endpoint_id][0]
        # the new key alone opens every secret, and it is the same secret
        assert _opens_with_only(NEW, stored_secret) == secret
        assert (None if stored_previous is None else _opens_with_only(NEW, stored_previous)) == (
            previous
        )
        with pytest.raises(InvalidToken):
            _opens_with_only(OLD, stored_secret)
        assert not stored_secret.removeprefix("fernet:").startswith("whsec")  # never plaintext
    # without the old key listed any more, the service still opens them all
    only_new = _keyed(settings, url, NEW)
    assert {secretbox.open_sealed(only_new, after[i][0]) for i in ids} == {
        "whsec_one",
        "whsec_two",
        "whsec_three",
    }

    again = _rekey(url, NEW, OLD, monkeypatch=monkeypatch)
    assert again.exit_code == 0, again.output
    assert "secrets re-encrypted: 0" in again.output
    assert "secrets already under the current key: 5" in again.output
    assert _stored(settings.model_copy(update={"database_url": url}), [*ids, fresh]) == after


def test_a_secret_no_key_opens_stops_the_rekey_and_nothing_is_written(
    settings: Settings, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    at_url = settings.model_copy(update={"database_url": url})
    _run(at_url, "DELETE FROM webhook_endpoints")
    ids = _add_endpoints(
        _keyed(settings, url, OLD), {"a": ("whsec_a", None), "b": ("whsec_b", None)}
    )
    lost_key = Fernet.generate_key().decode()
    [lost] = _add_endpoints(_keyed(settings, url, lost_key), {"lost": ("whsec_lost", None)})
    before = _stored(at_url, [*ids, lost])

    r = _rekey(url, NEW, OLD, monkeypatch=monkeypatch)
    assert r.exit_code == 1, r.output
    assert lost in r.output
    assert "nothing was written" in r.output
    assert "whsec" not in r.output  # no secret in the output
    assert _stored(at_url, [*ids, lost]) == before

    # a current key that is not a Fernet key: a clear error, nothing written
    bad = _rekey(url, "not-a-key", OLD, lost_key, monkeypatch=monkeypatch)
    assert bad.exit_code == 1
    assert "not a Fernet key" in bad.output
    assert _stored(at_url, [*ids, lost]) == before

    # with the lost key listed too, all three are re-encrypted
    ok = _rekey(url, NEW, OLD, lost_key, monkeypatch=monkeypatch)
    assert ok.exit_code == 0, ok.output
    assert "secrets re-encrypted: 3" in ok.output
    assert _opens_with_only(NEW, _stored(at_url, [lost])[lost][0]) == "whsec_lost"
