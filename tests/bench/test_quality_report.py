"""The quality report's pooled rates (bench/quality/__main__.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench.quality.__main__ import main, pooled, wilson


def test_wilson_interval_matches_published_values() -> None:
    # Wilson score intervals, z = 1.96 (Newcombe 1998, table I: 0/10, 1/29 ...; and 50/100)
    assert wilson(0, 10) == pytest.approx((0.0, 27.8), abs=0.1)
    assert wilson(1, 29) == pytest.approx((0.6, 17.2), abs=0.1)
    assert wilson(50, 100) == pytest.approx((40.4, 59.6), abs=0.1)
    assert wilson(5, 5) == pytest.approx((56.6, 100.0), abs=0.1)


def test_pooled_adds_the_seeds_counts() -> None:
    label = "recall, >= 2 min in buildings >= 10 m wide (walks)"
    per_seed = {
        "1": {label: (46, 54)},
        "2": {label: (47, 49)},
    }
    row = pooled(per_seed)[label]
    assert (row["found"], row["of"], row["pct"]) == (93, 103, 90.3)
    low, high = row["ci95"]
    assert low < 90.3 < high
    assert high - low < 13
    assert row["per_seed"] == {"1": [46, 54], "2": [47, 49]}


@pytest.fixture(scope="module")
def fast_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """One fast report (its JSON and markdown) with a held-out seed and the real map: every
    section the tests below read, for one run of the harness (about a minute of CPU)."""
    out = tmp_path_factory.mktemp("quality")
    args = ["--fast", "--seeds", "", "--held-out", "2", "--map-seeds", "2", "--out", str(out)]
    assert main(args) == 0
    (report,) = out.glob("*-quality-fast.json")
    return json.loads(report.read_text()), report.with_suffix(".md").read_text()


def test_the_held_out_seeds_are_pooled_on_their_own(
    fast_report: tuple[dict[str, Any], str],
) -> None:
    """Seeds no rule was tuned on are reported apart from the tuning seeds, not mixed in."""
    result, markdown = fast_report
    label = "recall, deep visits (>= 2 fixes >= 10 m inside)"
    assert list(result["pooled"][label]["per_seed"]) == ["1"]
    assert list(result["held_out"][label]["per_seed"]) == ["2"]
    assert result["held_out"][label]["of"] > 0
    assert "## Held out: seeds no rule was tuned on, pooled (2)" in markdown


def test_the_real_map_is_reported_beside_the_generated_towns(
    fast_report: tuple[dict[str, Any], str],
) -> None:
    """The three engines on the real city centre, and the current one pooled over its tracks."""
    result, markdown = fast_report
    on_map = result["map"]
    assert on_map["name"] == "helsinki"
    assert on_map["places"] > 300
    assert list(on_map["summary"]) == ["point-in-polygon", "previous rules", "new engine"]
    walking = "enter precision, walking, accuracy <= 20 m"
    # judged there as on the generated towns: the engines differ as they do there
    assert (
        on_map["summary"]["previous rules"][walking] < 60 < on_map["summary"]["new engine"][walking]
    )
    label = "pass-throughs that truly crossed (within 3 m)"
    assert list(on_map["pooled"][label]["per_seed"]) == ["1", "2"]
    assert "## A real city centre: helsinki (OpenStreetMap)" in markdown
