"""The one error hierarchy of the contracts package.

Every decoding failure surfaces as a ``ContractError`` carrying a machine ``code``, the
JSON path of the offending ``field`` and a human ``reason``, so a transport layer can turn
it into a precise 4xx answer without knowing msgspec.
"""

import re
from typing import ClassVar

import msgspec


class ContractError(Exception):
    """Input does not honour an orderly contract."""

    code: ClassVar[str] = "contract_error"

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        super().__init__(reason if field is None else f"{reason} (at {field})")
        self.reason = reason
        self.field = field

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason={self.reason!r}, field={self.field!r})"


class MalformedJson(ContractError):
    """The bytes are not JSON at all."""

    code = "malformed_json"


class SchemaViolation(ContractError):
    """Well-formed JSON whose shape or values break the contract."""

    code = "schema_violation"


class UnknownEventType(ContractError):
    """A CloudEvents ``type`` that no current or superseded event has."""

    code = "unknown_event_type"


class UnsupportedSpecVersion(ContractError):
    """A CloudEvents ``specversion`` other than 1.0."""

    code = "unsupported_spec_version"


# msgspec reports the location as a suffix of its message; it has no structured form.
_LOCATED = re.compile(r"^(?P<reason>.*) - at `(?P<path>\$[^`]*)`$", re.DOTALL)
_MISSING_FIELD = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")


def rebase_path(path: str, root: str) -> str:
    """Re-anchor a msgspec path (``$...``) under ``root``, e.g. ``$.data``."""
    return root + path[1:]


def schema_violation(exc: msgspec.ValidationError, *, root: str = "$") -> SchemaViolation:
    """Turn a msgspec validation error into a ``SchemaViolation`` located under ``root``.

    A missing field is reported at the field's own path rather than at its parent object,
    because that is the field a client has to add.
    """
    message = str(exc)
    located = _LOCATED.match(message)
    reason, path = (located["reason"], located["path"]) if located else (message, "$")
    missing = _MISSING_FIELD.match(reason)
    if missing:
        path = f"{path}.{missing['name']}"
    return SchemaViolation(reason, field=rebase_path(path, root))


def malformed_json(exc: msgspec.DecodeError, *, field: str | None = None) -> MalformedJson:
    """Turn a msgspec parse error into ``MalformedJson``.

    ``field`` is None when the whole document is unparseable, which is the usual case.
    """
    return MalformedJson(f"malformed JSON: {exc}", field=field)
