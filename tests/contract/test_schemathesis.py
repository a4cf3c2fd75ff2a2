"""Schemathesis against the app's own OpenAPI schema, on a real uvicorn server and database.

Stateless: every operation gets generated valid and invalid requests; no 500s, responses conform
to the documented schema, bad data is rejected. Bounded (max_examples per operation) so CI stays
fast. Runs against its own database so its committed rows never touch the other tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.core.cluster import EmbeddedCluster
from app.core.config import PROJECT_ROOT
from tests.live import live_server as start_live_server


@pytest.fixture(scope="module")
def live_server(pg_cluster: EmbeddedCluster) -> Iterator[dict[str, Any]]:
    with start_live_server(pg_cluster, "hereabouts_st", organisation="st-town") as server:
        admin = server.token(server.admin_email, server.admin_password)
        device = httpx.post(server.base + "/v1/devices", json={"organisation": "st-town"}).json()[
            "token"
        ]
        yield {"base": server.base, "admin": admin, "device": device}


DEVICE_PATHS = r"^/v1/(me|pings|checkins|push|offers/\{offer_id\}/redeem)"
EXAMPLES = os.environ.get("HEREABOUTS_SCHEMATHESIS_EXAMPLES", "5")
# Time budgets (`--max-time`; "" for none: every phase once, which takes about 5 minutes for
# the staff's 100-odd operations): within its budget Schemathesis repeats fuzzing until it is
# spent. The residents' dozen operations take about 7 s a pass, so 20 s is three passes.
BUDGET_S = os.environ.get("HEREABOUTS_SCHEMATHESIS_MAX_TIME", "60")
RESIDENT_BUDGET_S = os.environ.get("HEREABOUTS_SCHEMATHESIS_RESIDENT_MAX_TIME", "20")


def _run_schemathesis(
    base: str, token: str, *filters: str, tmp_path: Any, budget_s: str = BUDGET_S
) -> subprocess.CompletedProcess[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "schemathesis")
    return subprocess.run(
        [
            exe,
            "run",
            base + "/openapi.json",
            "--checks",
            "all",
            # a cursor or filter the server clamps instead of rejecting is by design
            "--exclude-checks",
            "negative_data_rejection,positive_data_acceptance",
            "--max-examples",
            EXAMPLES,
            *(["--max-time", budget_s] if budget_s else []),
            "--seed",
            "20261125",
            "--generation-deterministic",
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "--header",
            f"Authorization: Bearer {token}",
            "--suppress-health-check",
            "all",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path),
            *filters,
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "NO_COLOR": "1"},
    )


def test_staff_operations_conform_to_the_schema(live_server: dict[str, Any], tmp_path: Any) -> None:
    result = _run_schemathesis(
        live_server["base"],
        live_server["admin"],
        "--exclude-path-regex",
        DEVICE_PATHS,
        # a reset of the caller's own password ends the session every later call (and the pinned
        # cases below) uses; erasing a staff member ends theirs (both tested elsewhere)
        "--exclude-name",
        "POST /v1/users/{user_id}/password-reset",
        "--exclude-name",
        "POST /v1/users/{user_id}/erase",
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_resident_operations_conform_to_the_schema(
    live_server: dict[str, Any], tmp_path: Any
) -> None:
    result = _run_schemathesis(
        live_server["base"],
        live_server["device"],
        "--include-path-regex",
        DEVICE_PATHS,
        # erasing the device would end the run: every later call is 401 (tested elsewhere)
        "--exclude-name",
        "DELETE /v1/me",
        tmp_path=tmp_path,
        budget_s=RESIDENT_BUDGET_S,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


# --- cases the Schemathesis runs of issue 18 found (finding 11), pinned down -----------------


def _response_schema(schema: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    content = schema["paths"][path][method]["responses"]["200"]["content"]
    return {**content["application/json"]["schema"], "components": schema["components"]}


def test_time_window_times_conform_to_their_declared_format(live_server: dict[str, Any]) -> None:
    """`TimeWindowRead` declared `format: time` (RFC 3339: with an offset) but returned local
    times without one. Validated here as Schemathesis does (jsonschema-rs, formats checked)."""
    import jsonschema_rs

    base, headers = live_server["base"], {"Authorization": f"Bearer {live_server['admin']}"}
    place = httpx.post(
        base + "/v1/geofences",
        headers=headers,
        json={
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [-1.25, 51.75]},
            "properties": {"name": "Contract library", "category": "library", "radius_m": 40},
        },
    )
    assert place.status_code == 201, place.text
    offer = httpx.post(
        base + "/v1/offers",
        headers=headers,
        json={
            "title": "Evening opening",
            "body": "Open late",
            "geofence_ids": [place.json()["id"]],
            "triggers": ["checkin"],
            "time_window": {"start": "17:00", "end": "20:30", "time_zone": "Europe/London"},
        },
    )
    assert offer.status_code == 201, offer.text
    schema = httpx.get(base + "/openapi.json").json()
    read = httpx.get(base + f"/v1/offers/{offer.json()['id']}", headers=headers)
    assert read.status_code == 200
    validator = jsonschema_rs.validator_for(
        _response_schema(schema, "/v1/offers/{offer_id}", "get"), validate_formats=True
    )
    errors = [e.message for e in validator.iter_errors(read.json())]
    assert errors == []
    assert read.json()["time_window"]["start"] == "17:00:00"
    window = schema["components"]["schemas"]["TimeWindowRead"]["properties"]
    assert "format" not in window["start"]
    assert "format" not in window["end"]


@pytest.mark.parametrize("value", [0, 1, "true", "false"])
def test_booleans_in_request_bodies_are_strict(live_server: dict[str, Any], value: Any) -> None:
    """`{"enabled": 0}` was accepted as `false`: only JSON true / false are booleans."""
    res = httpx.put(
        live_server["base"] + "/v1/me/background-location",
        headers={"Authorization": f"Bearer {live_server['device']}"},
        json={"enabled": value},
    )
    assert res.status_code == 422, res.text
    assert res.headers["content-type"] == "application/problem+json"
    ok = httpx.put(
        live_server["base"] + "/v1/me/background-location",
        headers={"Authorization": f"Bearer {live_server['device']}"},
        json={"enabled": False},
    )
    assert ok.status_code == 200
