"""Shared fixtures: `town` (callers and places of one organisation and of another)."""

from tests.offers.helpers import town  # noqa: F401
