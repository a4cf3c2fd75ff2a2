"""Notification rules, as other domains and the app use them (CONTRIBUTING.md: another domain
is used through its service). The rules themselves live in their own modules:

- `windows`: effective preferences, quiet hours, shifts, the local day;
- `matching`: the candidates (offers, tasks) of a call's events;
- `decisions`: whether and when each candidate is sent, recorded with its reason; staff
  explanations; the presence event hook;
- `preferences`: the preferences and shift API;
- `broadcast`: one-off messages to the people at a place.
"""

from app.rules.broadcast import broadcast
from app.rules.decisions import (
    EventHook,
    Outcome,
    decisions_for_events,
    event_hook,
    for_checkin,
    on_events,
    pipeline_hook,
)
from app.rules.matching import Candidate
from app.rules.preferences import read_preferences, set_shift, update_preferences
from app.rules.windows import Prefs, day_start, effective_prefs, on_shift, quiet_until

__all__ = [
    "Candidate",
    "EventHook",
    "Outcome",
    "Prefs",
    "broadcast",
    "day_start",
    "decisions_for_events",
    "effective_prefs",
    "event_hook",
    "for_checkin",
    "on_events",
    "on_shift",
    "pipeline_hook",
    "quiet_until",
    "read_preferences",
    "set_shift",
    "update_preferences",
]
