"""The bench's synthetic city is deterministic and loads into the real schema with COPY."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import asyncpg
import pytest
import shapely

from app.core.cluster import EmbeddedCluster
from bench.city import City, CityConfig
from bench.db import is_loaded, load, migrate

TINY = CityConfig(seed=7, geofences=300, devices=40)


def test_same_seed_gives_the_same_city() -> None:
    assert (
        City(TINY).fingerprint()
        == City(CityConfig(seed=7, geofences=300, devices=40)).fingerprint()
    )


def test_another_seed_gives_another_city() -> None:
    assert (
        City(TINY).fingerprint()
        != City(CityConfig(seed=8, geofences=300, devices=40)).fingerprint()
    )


def test_the_dense_map_crowds_the_same_places_into_smaller_towns() -> None:
    """bench/pings_async.py's dense map: towns shrunk, places overlap more; its own cache key,
    and the default city's key is unchanged (its cached load stays valid)."""
    dense = CityConfig(seed=7, geofences=300, devices=40, town_scale=0.4)
    assert dense.key != TINY.key
    assert "_t" not in TINY.key
    a, b = City(TINY), City(dense)

    def spread(city: City) -> float:
        out = 0.0
        for p in city.places():
            lon, lat = p.anchor
            out += min(abs(lon - t.lon) + abs(lat - t.lat) for t in city.towns)
        return out / 300

    assert [t.radius_m * 0.4 for t in a.towns] == pytest.approx([t.radius_m for t in b.towns])
    assert spread(b) < 0.6 * spread(a)


def test_places_can_be_recomputed_one_by_one() -> None:
    city = City(TINY)
    streamed = list(city.places())
    assert city.place(123) == streamed[123]


def test_geofences_are_valid_shapes_of_mixed_kinds_and_sizes() -> None:
    city = City(TINY)
    rows = list(city.geofence_records())
    shapes = [shapely.from_wkb(row[9]) for row in rows]
    assert all(s.is_valid and s.geom_type == "Polygon" for s in shapes)
    kinds = {row[6] for row in rows}
    categories = {row[4] for row in rows}
    assert kinds == {"polygon", "circle"}
    assert {"park", "library"} <= categories
    # buildings are tens of metres, parks hundreds (in degrees² at ~52°N: 1 m² ≈ 1.3e-10)
    areas = sorted(s.area for s in shapes)
    assert areas[-1] > 50 * areas[0]


def test_tracks_move_at_the_speed_of_walking_cycling_or_driving() -> None:
    city = City(TINY)
    for d in range(10):
        track = city.track(d, 10)
        assert [f.seconds for f in track] == sorted(f.seconds for f in track)
        assert all(0 < f.speed_mps < 30 for f in track)
        assert track == city.track(d, 10)


@pytest.fixture
def bench_dsn(pg_cluster: EmbeddedCluster) -> Iterator[str]:
    name = f"hereabouts_bench_test_{os.getpid()}"
    pg_cluster.drop_database(name)
    pg_cluster.ensure_database(name)
    migrate(pg_cluster.url(name))
    yield pg_cluster.url(name, driver="postgresql")
    pg_cluster.drop_database(name)


@pytest.mark.slow
def test_the_city_loads_into_the_real_schema_with_copy(bench_dsn: str) -> None:
    city = City(TINY)

    async def check() -> tuple[int, int, int, int, bool]:
        await load(bench_dsn, city)
        conn = await asyncpg.connect(bench_dsn)
        try:
            counts = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM geofences) AS g, (SELECT count(*) FROM devices) AS d,"
                " (SELECT count(*) FROM staff_users) AS s,"
                " (SELECT count(*) FROM geofences"
                "  WHERE NOT ST_IsValid(geom) OR geog IS NULL) AS bad"
            )
            assert counts is not None
        finally:
            await conn.close()
        return (
            counts["g"],
            counts["d"],
            counts["s"],
            counts["bad"],
            await is_loaded(bench_dsn, TINY.key),
        )

    assert asyncio.run(check()) == (300, 40, TINY.staff, 0, True)


@pytest.mark.slow
def test_every_device_can_be_given_presence_for_the_device_scale(bench_dsn: str) -> None:
    from bench.db import reset_activity
    from bench.scale import seed_presence

    async def check() -> tuple[int, int, int, int]:
        await load(bench_dsn, City(TINY))  # idempotent with the test above
        await reset_activity(bench_dsn)
        seeded = await seed_presence(bench_dsn)
        conn = await asyncpg.connect(bench_dsn)
        try:
            row = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM presence_subjects) AS s,"
                " (SELECT count(DISTINCT subject_id) FROM presence) AS p,"
                " (SELECT count(*) FROM presence p JOIN geofences g ON g.id = p.geofence_id"
                "  WHERE g.organisation_id <> p.organisation_id) AS wrong_org"
            )
            assert row is not None
        finally:
            await conn.close()
        return seeded, row["s"], row["p"], row["wrong_org"]

    assert asyncio.run(check()) == (40, 40, 40, 0)
