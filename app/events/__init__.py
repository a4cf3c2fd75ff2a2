"""One typed event pipeline: every source records its events here (docs/webhooks.md)."""
