"""The product under test as the bench starts it (bench/servers.py): which configuration."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

import pytest

from bench.servers import (
    add_product_options,
    evaluator_label,
    parse_settings,
    product_options,
    product_server,
)


def test_settings_are_hereabouts_variables() -> None:
    assert parse_settings(
        ["ping_evaluator_max_subjects=100", "HEREABOUTS_PING_EVALUATOR_POLL_S=0.2"]
    ) == {
        "HEREABOUTS_PING_EVALUATOR_MAX_SUBJECTS": "100",
        "HEREABOUTS_PING_EVALUATOR_POLL_S": "0.2",
    }
    assert parse_settings(None) == {}
    for bad in ("ping_evaluator_max_subjects", "=1"):
        with pytest.raises(ValueError, match="NAME=VALUE"):
            parse_settings([bad])


def test_the_embedded_evaluator_runs_in_the_api_processes(tmp_path: Path) -> None:
    server = product_server("postgresql+asyncpg://x/y", 1, 2, tmp_path / "p.log")
    assert server.companions == []
    assert "HEREABOUTS_RUN_PING_EVALUATOR_IN_PROCESS" not in server.env
    assert server.cmd[server.cmd.index("--workers") + 1] == "2"


def test_the_worker_configuration_leaves_evaluating_to_niced_workers(tmp_path: Path) -> None:
    server = product_server(
        "postgresql+asyncpg://x/y",
        1,
        2,
        tmp_path / "p.log",
        evaluator="worker",
        worker_nice=7,
        evaluator_workers=2,
        settings=parse_settings(["ping_evaluator_max_subjects=100"]),
    )
    assert server.env["HEREABOUTS_RUN_PING_EVALUATOR_IN_PROCESS"] == "false"
    assert server.env["HEREABOUTS_PING_EVALUATOR_POLL_S"] == "0.1"
    assert server.env["HEREABOUTS_PING_EVALUATOR_MAX_SUBJECTS"] == "100"
    assert server.env["HEREABOUTS_PING_EVALUATOR_SLOTS"] == "2"  # both evaluate at once
    assert [name for name, _ in server.companions] == ["evaluator0", "evaluator1"]
    for _, cmd in server.companions:
        assert cmd[:3] == ["nice", "-n", "7"]
        assert cmd[-4:] == ["-m", "app.cli", "worker", "--no-push"]
    with pytest.raises(ValueError, match="evaluator"):
        product_server("postgresql+asyncpg://x/y", 1, 2, tmp_path / "p.log", evaluator="thread")


def test_both_benches_take_the_same_product_options() -> None:
    """`bench.run` and `bench.pings_async` share one set of options, and pass it whole to
    `product_server` (bench.run also to its pings_async scenario: the same product)."""
    parser = argparse.ArgumentParser()
    add_product_options(parser)
    args = parser.parse_args(
        [
            "--evaluator",
            "worker",
            "--evaluator-workers",
            "2",
            "--setting",
            "ping_evaluator_poll_s=0.2",
        ]
    )
    opts = product_options(args)
    assert opts == {
        "evaluator": "worker",
        "worker_nice": 10,
        "evaluator_workers": 2,
        "settings": {"HEREABOUTS_PING_EVALUATOR_POLL_S": "0.2"},
    }
    assert set(opts) <= set(inspect.signature(product_server).parameters)
    assert evaluator_label(**{k: v for k, v in opts.items() if k != "settings"}) == (
        "worker (2 × nice 10)"
    )
    assert evaluator_label("embedded") == "embedded"
