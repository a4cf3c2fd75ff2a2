"""GeoReport v2 documents as JSON or XML, and the spec's error list.

The JSON shapes are the spec's; the XML is the same data under the spec's element names
(`<services><service>`, `<service_requests><request>`, `<errors><error>`, …) with a UTF-8 XML
declaration. `None` is an empty element; booleans are `true`/`false`; a list whose element name
has no item name in `LIST_ITEMS` is written comma-separated.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

import orjson
from fastapi.responses import Response

JSON_TYPE = "application/json; charset=utf-8"
XML_TYPE = "text/xml; charset=utf-8"
FORMATS = ("json", "xml")


def w3c(t: datetime | None) -> str | None:
    """The spec's date/time: ISO 8601 with a zone (UTC, whole seconds)."""
    if t is None:
        return None
    return t.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _xml_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return escape(str(value))


def _xml_element(name: str, value: Any, list_item: dict[str, str]) -> str:
    if isinstance(value, dict):
        inner = "".join(_xml_element(k, v, list_item) for k, v in value.items())
        return f"<{name}>{inner}</{name}>"
    if isinstance(value, list):
        child = list_item.get(name)
        if child is None:  # a list of scalars the spec writes as one comma-separated value
            return f"<{name}>{escape(','.join(str(v) for v in value))}</{name}>"
        inner = "".join(_xml_element(child, v, list_item) for v in value)
        return f"<{name}>{inner}</{name}>"
    return f"<{name}>{_xml_value(value)}</{name}>"


# element name of a list → element name of its items
LIST_ITEMS = {
    "services": "service",
    "service_requests": "request",
    "errors": "error",
    "attributes": "attribute",
    "values": "value",
    "endpoints": "endpoint",
    "formats": "format",
}


def to_xml(root: str, doc: Any) -> str:
    return '<?xml version="1.0" encoding="utf-8"?>' + _xml_element(root, doc, LIST_ITEMS)


def render(fmt: str, root: str, doc: Any, status: int = 200) -> Response:
    if fmt == "xml":
        return Response(to_xml(root, doc), status_code=status, media_type=XML_TYPE)
    return Response(orjson.dumps(doc), status_code=status, media_type=JSON_TYPE)


def errors(
    fmt: str, status: int, description: str, headers: dict[str, str] | None = None
) -> Response:
    """The spec's error document: a list of `{code, description}` (XML `<errors><error>`)."""
    response = render(fmt, "errors", [{"code": status, "description": description}], status)
    for k, v in (headers or {}).items():
        response.headers[k] = v
    return response
