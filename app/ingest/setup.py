"""A phone's setup for each GPS app: the link the app imports, as text and as a QR code.

Each link follows the app's own documented import format (docs/ingest.md, "Setup"):

- OwnTracks: `owntracks:///config?inline=<base64 of a _type: configuration message>` (booklet,
  "Remote configuration", URL config). The base64 is percent-encoded: the Android app decodes
  the query with `URLDecoder`, which would turn a bare `+` into a space.
- Overland: `overland://setup?url=…&token=…` (Overland README, "Configuration by Custom URL").
- Traccar Client: `org.traccar.client://setup?url=…&id=…` (the app's registered URL scheme; its
  own QR scanner reads the same link: `url` is the server URL, `id` the device identifier).

The QR code is made here, on the server, with `segno` (no script from elsewhere in the page), as
an SVG data URI the page shows in an `<img>`.
"""

from __future__ import annotations

import base64
import enum
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import segno

OWNTRACKS_USER = "hereabouts"  # OwnTracks sends Basic auth only with a user name; it is ignored


class GpsApp(enum.StrEnum):
    owntracks = "owntracks"
    overland = "overland"
    traccar = "traccar"


APP_NAMES = {
    GpsApp.owntracks: "OwnTracks",
    GpsApp.overland: "Overland",
    GpsApp.traccar: "Traccar Client",
}
PATHS = {
    GpsApp.owntracks: "/v1/ingest/owntracks",
    GpsApp.overland: "/v1/ingest/overland",
    GpsApp.traccar: "/v1/ingest/traccar",
}


@dataclass(frozen=True)
class Setup:
    app: GpsApp
    endpoint: str
    link: str
    settings: list[tuple[str, str]]  # (the app's name for a setting, its value) to type by hand
    config: dict[str, Any] | None  # OwnTracks: the `.otrc` file's content

    def qr_svg(self) -> str:
        """The link as a QR code: an SVG `data:` URI (error correction M, quiet zone 4)."""
        return qr_code(self.link).svg_data_uri(scale=4, border=4)


def qr_code(text: str) -> segno.QRCode:
    return segno.make_qr(text, error="m", boost_error=False)


def owntracks_config(endpoint: str, key: str) -> dict[str, Any]:
    """The `.otrc` content: HTTP mode (3), the URL, Basic auth with the key as password, and
    remote commands on (so the app applies the waypoints the answers carry)."""
    return {
        "_type": "configuration",
        "mode": 3,
        "url": endpoint,
        "auth": True,
        "username": OWNTRACKS_USER,
        "password": key,
        "cmd": True,
    }


def setup_for(app: GpsApp, base_url: str, key: str) -> Setup:
    endpoint = base_url.rstrip("/") + PATHS[app]
    if app is GpsApp.owntracks:
        config = owntracks_config(endpoint, key)
        inline = base64.b64encode(orjson.dumps(config)).decode("ascii")
        return Setup(
            app,
            endpoint,
            "owntracks:///config?inline=" + quote(inline, safe=""),
            [
                ("Mode", "HTTP"),
                ("URL", endpoint),
                ("Authentication", "on"),
                ("UserID", OWNTRACKS_USER),
                ("Password", key),
            ],
            config,
        )
    if app is GpsApp.overland:
        query = urlencode({"url": endpoint, "token": key}, quote_via=quote)
        return Setup(
            app,
            endpoint,
            "overland://setup?" + query,
            [("Receiver Endpoint", endpoint), ("Access Token", key)],
            None,
        )
    query = urlencode({"url": endpoint, "id": key}, quote_via=quote)
    return Setup(
        app,
        endpoint,
        "org.traccar.client://setup?" + query,
        [("Server URL", endpoint), ("Device identifier", key)],
        None,
    )
