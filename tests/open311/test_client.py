"""GeoReport v2 through the `georeport` client library (PyPI), in JSON and XML.

`georeport` reads (services, service definitions, requests, one request); it cannot post, so
reports are posted form-encoded as GeoReport clients post them (`helpers.Council.post_form`),
and the answers are parsed the way the library parses (`response.json()`, `xmltodict`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from tests.open311.helpers import Council, answer, parse
from tests.presence.helpers import at

pytestmark = pytest.mark.usefixtures("fake_push")


def _as_list(items: Any) -> list[dict[str, Any]]:
    """xmltodict gives a dict for one element and a list for several."""
    return [items] if isinstance(items, dict) else list(items)


async def test_discovery_lists_the_endpoint_in_both_formats(council: Council) -> None:
    await council.service()
    for fmt in ("json", "xml"):
        r = await council.get(f"discovery.{fmt}")
        assert r.status_code == 200, r.text
        doc = parse(fmt, r)
        if fmt == "xml":
            doc = doc["discovery"]
            endpoint = doc["endpoints"]["endpoint"]
            formats = endpoint["formats"]["format"]
        else:
            endpoint = doc["endpoints"][0]
            formats = endpoint["formats"]
        assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
        assert endpoint["url"] == council.root
        assert set(formats) == {"text/xml", "application/json"}
        assert doc["changeset"]  # the newest service change


async def test_services_and_definition_through_the_client(council: Council) -> None:
    await council.service()
    await council.service(code="pothole", name="Pothole", attributes=[], group="Roads")
    await council.service(code="retired", name="Retired", attributes=[], active=False)
    for fmt in ("json", "xml"):
        client = council.client(fmt)
        services = _as_list(await council.call(client.get_service_list))
        by_code = {s["service_code"]: s for s in services}
        assert set(by_code) == {"fly-tipping", "pothole"}  # the retired one is not offered
        fly = by_code["fly-tipping"]
        assert fly["service_name"] == "Fly-tipping"
        assert fly["group"] == "Street cleaning"
        assert fly["type"] == "realtime"
        assert str(fly["metadata"]).lower() == "true"
        assert str(by_code["pothole"]["metadata"]).lower() == "false"
        assert [k.strip() for k in fly["keywords"].split(",")] == ["rubbish", "waste"]

        definition = await council.call(client.get_service_definition, "fly-tipping")
        assert definition["service_code"] == "fly-tipping"
        attrs = definition["attributes"]
        attrs = attrs if fmt == "json" else _as_list(attrs["attribute"])
        assert [a["code"] for a in attrs] == ["size", "hazards", "bags"]
        size = attrs[0]
        assert size["datatype"] == "singlevaluelist"
        assert str(size["required"]).lower() == "true"
        values = size["values"] if fmt == "json" else _as_list(size["values"]["value"])
        assert [v["key"] for v in values] == ["bag", "van"]


async def test_unknown_service_definition_is_404_in_the_spec_format(council: Council) -> None:
    for fmt in ("json", "xml"):
        client = council.client(fmt)
        with pytest.raises(requests.HTTPError) as err:
            await council.call(client.get_service_definition, "no-such-thing")
        assert err.value.response is not None
        assert err.value.response.status_code == 404


async def test_report_lifecycle_seen_by_the_client(council: Council) -> None:
    """Post at a park and at an open spot, a duplicate, list with filters, a field worker's
    status change seen by the client, the token — in JSON and XML."""
    park = await council.park(0, 0, 100, 100)
    await council.service()
    await council.service(code="pothole", name="Pothole", attributes=[], place_categories=[])
    key = await council.api_key()
    worker = await council.worker()
    await council.allow_public_read()

    lon, lat = at(50, 50)  # inside the park
    first = await council.post(
        "json",
        api_key=key,
        service_code="fly-tipping",
        lat=lat,
        long=lon,
        description="Mattress by the gate",
        **{"attribute[size]": "van", "attribute[hazards][]": ["needles", "asbestos"]},
    )
    assert first.status_code == 200, first.text
    a1 = answer("json", first)
    assert a1["service_notice"] == ""
    assert a1["token"]

    lon2, lat2 = at(2000, 0)  # no park within 60 m: an ad-hoc place
    second = await council.post(
        "xml", api_key=key, service_code="pothole", lat=lat2, long=lon2, description="Deep"
    )
    assert second.status_code == 200, second.text
    a2 = answer("xml", second)

    dlon, dlat = at(60, 50)  # 10 m from the first, same service, within 24 h
    dup = await council.post(
        "json",
        api_key=key,
        service_code="fly-tipping",
        lat=dlat,
        long=dlon,
        **{"attribute[size]": "bag"},
    )
    a3 = answer("json", dup)
    assert a1["service_request_id"] in a3["service_notice"]
    assert a3["service_request_id"] != a1["service_request_id"]

    reader = council.client("json", api_key=key)
    xml_reader = council.client("xml", api_key=key)
    everything = await council.call(reader.get_service_requests)
    assert {r["service_request_id"] for r in everything} == {
        a1["service_request_id"],
        a2["service_request_id"],
        a3["service_request_id"],
    }
    assert all(r["status"] == "open" for r in everything)
    only_fly = await council.call(reader.get_service_requests, service_code="fly-tipping")
    assert {r["service_request_id"] for r in only_fly} == {
        a1["service_request_id"],
        a3["service_request_id"],
    }
    two = await council.call(
        xml_reader.get_service_requests,
        service_request_id=f"{a1['service_request_id']},{a2['service_request_id']}",
    )
    assert {r["service_request_id"] for r in _as_list(two)} == {
        a1["service_request_id"],
        a2["service_request_id"],
    }
    now = datetime.now(UTC)
    future = await call_range(council, reader, now + timedelta(hours=1), now + timedelta(days=2))
    assert future == []
    around = await call_range(council, reader, now - timedelta(hours=1), now + timedelta(hours=1))
    assert len(around) == 3

    one = await council.call(reader.get_service_request, a1["service_request_id"])
    assert one["service_code"] == "fly-tipping"
    assert one["description"] == "Mattress by the gate"
    assert (one["lat"], one["long"]) == (round(lat, 6), round(lon, 6))  # stored to 6 decimals
    assert one["status"] == "open"

    # the field worker claims, starts and finishes the task in the app
    tasks = (await council.api.get("/v1/tasks", headers=council.admin.headers)).json()["items"]  # type: ignore[union-attr]
    fly_task = next(t for t in tasks if t["geofence_id"] == str(park))
    h = worker.headers
    for status, note in (("assigned", None), ("in_progress", None), ("done", "Cleared, 3 bags")):
        body = {"status": status} | ({"note": note} if note else {})
        r = await council.api.patch(f"/v1/tasks/{fly_task['id']}", json=body, headers=h)
        assert r.status_code == 200, r.text

    for fmt, client in (("json", reader), ("xml", xml_reader)):
        seen = await council.call(client.get_service_request, a1["service_request_id"])
        assert seen["status"] == "closed", fmt
        assert seen["status_notes"] == "Cleared, 3 bags"
        updated = datetime.fromisoformat(seen["updated_datetime"].replace("Z", "+00:00"))
        requested = datetime.fromisoformat(seen["requested_datetime"].replace("Z", "+00:00"))
        assert updated >= requested
        # the duplicate follows its original's task
        dup_seen = await council.call(client.get_service_request, a3["service_request_id"])
        assert dup_seen["status"] == "closed"
        assert a1["service_request_id"] in dup_seen["service_notice"]

    closed = await council.call(reader.get_service_requests, status="closed")
    assert {r["service_request_id"] for r in closed} == {
        a1["service_request_id"],
        a3["service_request_id"],
    }
    still_open = await council.call(xml_reader.get_service_requests, status="open")
    assert _as_list(still_open)[0]["service_request_id"] == a2["service_request_id"]

    for fmt in ("json", "xml"):
        t = await council.get(f"tokens/{a2['token']}.{fmt}")
        assert t.status_code == 200, t.text
        item = answer(fmt, t)
        assert item == {"service_request_id": a2["service_request_id"], "token": a2["token"]}


async def call_range(
    council: Council, client: Any, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    out: list[dict[str, Any]] = await council.call(
        client.get_service_requests,
        start_date=start.astimezone(UTC).strftime(fmt),
        end_date=end.astimezone(UTC).strftime(fmt),
    )
    return out
