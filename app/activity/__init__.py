"""The organisation's activity feed: every kind of event, newest first (docs/webhooks.md)."""
