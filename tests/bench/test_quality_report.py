"""The quality report's pooled rates (bench/quality/__main__.py)."""

from __future__ import annotations

import json
from pathlib import Path

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


def test_the_held_out_seeds_are_pooled_on_their_own(tmp_path: Path) -> None:
    """Seeds no rule was tuned on are reported apart from the tuning seeds, not mixed in."""
    assert main(["--fast", "--seeds", "", "--held-out", "2", "--out", str(tmp_path)]) == 0
    (report,) = tmp_path.glob("*-quality-fast.json")
    result = json.loads(report.read_text())
    label = "recall, deep visits (>= 2 fixes >= 10 m inside)"
    assert list(result["pooled"][label]["per_seed"]) == ["1"]
    assert list(result["held_out"][label]["per_seed"]) == ["2"]
    assert result["held_out"][label]["of"] > 0
    markdown = report.with_suffix(".md").read_text()
    assert "## Held out: seeds no rule was tuned on, pooled (2)" in markdown
