from __future__ import annotations

from app.core.errors import Conflict, NotFound, Unprocessable


class OfferNotFound(NotFound):
    code, title = "offer-not-found", "Offer not found"


class UnknownGeofence(Unprocessable):
    code, title = "unknown-geofence", "Unknown place"


class InvalidOffer(Unprocessable):
    code, title = "invalid-offer", "Invalid offer"


class OfferEnded(Conflict):
    code, title = "offer-ended", "Offer has ended"


class OfferNotAvailable(Conflict):
    code, title = "offer-not-available", "Offer not available"


class RedemptionLimitReached(Conflict):
    code, title = "redemption-limit", "Redemption limit reached"


class OfferExhausted(Conflict):
    code, title = "offer-exhausted", "Offer exhausted"


class CodeNotFound(NotFound):
    code, title = "code-not-found", "No such redemption code"


class CodeUsed(Conflict):
    code, title = "code-used", "Redemption code already used"
