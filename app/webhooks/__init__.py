"""Signed outbound webhooks for organisation admins (docs/webhooks.md)."""
