"""Offers: resident-facing content attached to places or whole categories of places."""
