"""The location scenarios' request files: every device's fixes go forward in time.

A fix older than its device's last evaluated one is a late fix to the engine (flagged, its
would-be events suppressed): a bench whose files send such fixes measures late-fix handling,
not people walking (docs/benchmarks.md, "Each phase its own devices")."""

from __future__ import annotations

import re
from collections import defaultdict

from bench import scenarios
from bench.city import City, CityConfig
from bench.load import Req
from bench.run import DevicePool, devices_for, mixed_requests

CITY = City(CityConfig(seed=7, geofences=300, devices=400))
AGO = re.compile(r"@T(\d+)@")


def _agos_by_device(reqs: list[Req]) -> dict[str, list[int]]:
    """Each device's fixes' "seconds before sending", in file order."""
    out: dict[str, list[int]] = defaultdict(list)
    for r in reqs:
        if r.path.startswith("/v1/pings"):
            out[r.token].extend(int(a) for a in AGO.findall(r.body or ""))
    return out


def _singles(toks: list[str]) -> list[Req]:
    return scenarios.single_ping_requests(CITY, len(toks), 6, toks)


def test_the_pool_never_hands_a_device_out_twice() -> None:
    pool = DevicePool(None, CITY, reserved=10)
    first, second = pool.take(120), pool.take(200)
    assert len(set(first) | set(second)) == 320
    assert not pool.wrapped
    third = pool.take(100)  # 390 available: the city runs out, and says so
    assert pool.wrapped
    assert set(third) & set(first)
    assert pool.handed == 420


def test_a_single_fix_file_sends_each_device_forward_in_time() -> None:
    reqs = _singles(DevicePool(None, CITY).take(devices_for(300, 6)))
    agos = _agos_by_device(reqs)
    assert len(agos) == 50
    for seq in agos.values():
        assert len(seq) == 6
        assert seq == sorted(seq, reverse=True)  # later lines: fixes closer to sending
        assert len(set(seq)) == 6


def test_the_mixed_file_interleaves_the_kinds_but_keeps_each_device_in_track_order() -> None:
    pool = DevicePool(None, CITY)
    lookups = scenarios.resolve_requests(CITY, 40, pool.take(5))
    reqs = mixed_requests(
        {"resolve": lookups, "pings_single": _singles(pool.take(3))}, 600, 6, _singles, pool
    )
    assert len(reqs) == 600
    kinds = ["p" if r.path.startswith("/v1/pings") else "r" for r in reqs]
    assert kinds.count("p") == 480  # four to one
    # interleaved, not in blocks: both kinds in every tenth of the file
    assert all({"p", "r"} <= set(kinds[k : k + 60]) for k in range(0, 600, 60))
    agos = _agos_by_device(reqs)
    assert len(agos) == 80  # fresh devices, not the scenario's own three
    for seq in agos.values():
        assert seq == sorted(seq, reverse=True)
        assert len(set(seq)) == len(seq)
