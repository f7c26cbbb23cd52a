"""The CloudEvents HTTP protocol binding (structured, binary and batched modes) -> envelopes.

Which mode a request uses is decided by its Content-Type, as the binding specifies:
- ``application/cloudevents+json``: one event, attributes and data in the JSON body;
- ``application/cloudevents-batch+json``: a JSON array of such events;
- anything else with ``ce-*`` headers: binary mode, attributes in percent-encoded headers
  and the body as data (which must be JSON here).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote_to_bytes

from contracts import (
    EventEnvelope,
    SchemaViolation,
    decode_batch,
    decode_binary_envelope,
    decode_envelope,
)

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
_HEADER_PREFIX = "ce-"


class UnsupportedMediaType(Exception):
    pass


class BadHeader(Exception):
    pass


def parse_events(headers: Mapping[str, str], content_type: str, body: bytes) -> list[EventEnvelope]:
    """Decode the request's events; raises ContractError, BadHeader or UnsupportedMediaType."""
    if content_type == STRUCTURED:
        return [decode_envelope(body)]
    if content_type == BATCH:
        return decode_batch(body)
    attributes = _binary_attributes(headers)
    if not attributes:
        raise UnsupportedMediaType(
            f"{content_type or 'no content type'} is not a CloudEvent: send {STRUCTURED}, "
            f"{BATCH}, or binary mode with ce-* headers"
        )
    if not _is_json(content_type):
        raise UnsupportedMediaType(f"binary-mode data must be JSON, not {content_type}")
    if "specversion" not in attributes:
        raise SchemaViolation("missing required attribute ce-specversion", field="$.specversion")
    attributes["datacontenttype"] = content_type
    return [decode_binary_envelope(attributes, body)]


def _binary_attributes(headers: Mapping[str, str]) -> dict[str, str]:
    attributes = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered.startswith(_HEADER_PREFIX):
            attributes[lowered[len(_HEADER_PREFIX) :]] = _percent_decode(name, value)
    return attributes


def _percent_decode(name: str, value: str) -> str:
    # The binding percent-encodes header values as UTF-8; a stray "%" is an encoding error,
    # which urllib would silently keep.
    for index, char in enumerate(value):
        if char == "%":
            escape = value[index + 1 : index + 3]
            if len(escape) != 2 or any(c not in "0123456789abcdefABCDEF" for c in escape):
                raise BadHeader(f"header {name} has an invalid percent-encoding: {value!r}")
    try:
        return unquote_to_bytes(value).decode("utf-8")
    except (UnicodeDecodeError, UnicodeEncodeError):  # raw non-UTF-8 bytes arrive escaped
        raise BadHeader(f"header {name} does not percent-encode UTF-8: {value!r}") from None


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")
