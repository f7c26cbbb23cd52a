"""JSON encoding and decoding of events, envelopes and commands.

Encoders and decoders are built once, here, at import: building one compiles a plan for its
type, which costs far more than a decode. Decoding never refuses unknown fields, so
producers can add fields before every consumer knows them. Every failure comes out as a
``contracts.errors.ContractError`` located by JSON path relative to the whole document.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Generic, TypeVar, cast

import msgspec

from contracts.commands import COMMAND_TYPES, Command
from contracts.envelope import SPEC_VERSION, CloudEventAttributes, EventEnvelope
from contracts.errors import (
    SchemaViolation,
    UnknownEventType,
    UnsupportedSpecVersion,
    malformed_json,
    rebase_path,
    schema_violation,
)
from contracts.events import EVENT_TYPES, AnyEvent, Event, LegacyEvent, event_type_of
from contracts.upcasting import UPCASTERS, current_type_of, upcast_unchecked

D = TypeVar("D")
C = TypeVar("C", bound=Command)
T = TypeVar("T")


class _WireAttributes(CloudEventAttributes, frozen=True, kw_only=True):
    """Incoming attributes: unlike a locally built envelope, ``specversion`` is required."""

    specversion: str


class _WireEnvelope(_WireAttributes, Generic[D], frozen=True, kw_only=True):
    """An incoming structured-mode CloudEvent, its data not yet decoded."""

    data: D


class _OutgoingEnvelope(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Structured-mode CloudEvent as written: absent extensions are left out, not null."""

    specversion: str
    id: str
    source: str
    type: str
    time: datetime
    subject: str
    datacontenttype: str
    correlationid: str | None = None
    causationid: str | None = None
    aggregateversion: int | None = None
    traceparent: str | None = None
    data: dict[str, Any]


class _Probe(msgspec.Struct):
    """Reads just the attributes that decide which error to report, ignoring the rest."""

    specversion: Any = None
    type: Any = None


class _TypeAndData(msgspec.Struct):
    """Just what it takes to rebuild a stored event's data; the rest of the document is skipped."""

    type: str
    data: msgspec.Raw


_ENCODER: Final = msgspec.json.Encoder()
_TYPE_AND_DATA_DECODER: Final = msgspec.json.Decoder(_TypeAndData)
_ATTRIBUTES_DECODER: Final = msgspec.json.Decoder(CloudEventAttributes)
_WIRE_DECODER: Final = msgspec.json.Decoder(_WireEnvelope[msgspec.Raw])
_BATCH_DECODER: Final = msgspec.json.Decoder(list[msgspec.Raw])
_PROBE_DECODER: Final = msgspec.json.Decoder(_Probe)
_DICT_DECODER: Final = msgspec.json.Decoder(dict[str, Any])
# convert() keeps its compiled plan on the type, so the parametrized alias is made once too.
_PARSED_ENVELOPE: Final = _WireEnvelope[dict[str, Any]]
_EVENT_DECODER: Final[msgspec.json.Decoder[AnyEvent]] = msgspec.json.Decoder(AnyEvent)
_DATA_DECODERS: Final[dict[str, msgspec.json.Decoder[Any]]] = {
    event_type: msgspec.json.Decoder(cls) for event_type, cls in EVENT_TYPES.items()
}
_COMMAND_DECODERS: Final[dict[type[Command], msgspec.json.Decoder[Any]]] = {
    cls: msgspec.json.Decoder(cls) for cls in COMMAND_TYPES
}


def data_decoder(event_type: str) -> msgspec.json.Decoder[Any]:
    """The shared decoder for the data of a current event type."""
    try:
        return _DATA_DECODERS[event_type]
    except KeyError:
        raise UnknownEventType(f"unknown event type {event_type!r}", field="$.type") from None


def command_decoder(cls: type[C]) -> msgspec.json.Decoder[C]:
    """The shared decoder for a command class."""
    try:
        return _COMMAND_DECODERS[cls]
    except KeyError:
        # Passing a class that is not a command is a programming error, not bad input.
        raise TypeError(f"{cls.__name__} is not an orderly command") from None


# --- envelopes ----------------------------------------------------------------------------


def encode_envelope(envelope: EventEnvelope) -> bytes:
    """Structured-mode CloudEvents JSON.

    ``data`` holds the event's fields without its tag: the ``type`` attribute already says
    what the data is, and a second copy could only disagree with it.
    """
    return encode_cloudevent(envelope, envelope.data)


def encode_cloudevent(attributes: CloudEventAttributes, data: AnyEvent) -> bytes:
    """Structured-mode CloudEvents JSON from attributes and any event, superseded included.

    This is how a test or a migration writes an event in an old version; services write
    ``EventEnvelope``s through ``encode_envelope``.
    """
    if attributes.type != event_type_of(data):
        raise SchemaViolation(
            f"type {attributes.type!r} does not match data of type {event_type_of(data)!r}",
            field="$.type",
        )
    return _ENCODER.encode(
        _OutgoingEnvelope(
            specversion=attributes.specversion,
            id=attributes.id,
            source=attributes.source,
            type=attributes.type,
            time=attributes.time,
            subject=attributes.subject,
            datacontenttype=attributes.datacontenttype,
            correlationid=attributes.correlationid,
            causationid=attributes.causationid,
            aggregateversion=attributes.aggregateversion,
            traceparent=attributes.traceparent,
            data=msgspec.structs.asdict(data),
        )
    )


def decode_envelope(raw: bytes) -> EventEnvelope:
    """Decode one structured-mode CloudEvent, upcasting superseded event versions."""
    return _decode_envelope_at(raw, root="$")


def decode_stored_event(raw: bytes) -> Event:
    """The event (``data``, upcast if superseded) of a CloudEvent read back from a stream or
    the archive; cheaper than ``decode_envelope`` when the attributes are known already.

    Errors are the same as ``decode_envelope``'s where both decode (a stored event passed
    them once); the envelope's other attributes are not validated again.
    """
    stored = _decode_stored(_TYPE_AND_DATA_DECODER, raw)
    return _event_from_raw(stored.type, stored.data, root="$")


def decode_stored_attributes(raw: bytes) -> CloudEventAttributes:
    """The attributes of a CloudEvent read back from a stream, without decoding its data.

    ``type`` is the one stored, which may name a superseded version.
    """
    attributes = _decode_stored(_ATTRIBUTES_DECODER, raw)
    _refuse_foreign_spec_version(attributes.specversion, root="$")
    return attributes


def _decode_stored(decoder: msgspec.json.Decoder[T], raw: bytes) -> T:
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise schema_violation(exc) from exc
    except msgspec.DecodeError as exc:
        raise malformed_json(exc) from exc


def decode_batch(raw: bytes) -> list[EventEnvelope]:
    """Decode a batched-mode body (a JSON array of CloudEvents).

    Errors are located within the batch, e.g. ``$[3].data.items[0].quantity``.
    """
    try:
        elements = _BATCH_DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        raise schema_violation(exc) from exc
    except msgspec.DecodeError as exc:
        raise malformed_json(exc) from exc
    return [_decode_envelope_at(element, root=f"$[{i}]") for i, element in enumerate(elements)]


def decode_envelope_obj(obj: dict[str, Any]) -> EventEnvelope:
    """Decode one CloudEvent that is already parsed JSON (e.g. an element of a batch)."""
    try:
        wire = msgspec.convert(obj, _PARSED_ENVELOPE)
    except msgspec.ValidationError as exc:
        if isinstance(obj, dict):
            _refuse_foreign_spec_version(obj.get("specversion"), root="$")
        raise schema_violation(exc) from exc
    _refuse_foreign_spec_version(wire.specversion, root="$")
    event = _event_from_dict(wire.type, wire.data, root="$")
    return _envelope(wire, event)


def decode_binary_envelope(attributes: Mapping[str, str], data: bytes) -> EventEnvelope:
    """Decode a binary-mode CloudEvent: string attributes (from ``ce-*`` headers, prefix
    removed, plus ``datacontenttype`` from Content-Type) and the body as data.

    Errors about attributes are located as if the event were structured, e.g. ``$.time``.
    """
    try:
        attrs = msgspec.convert(dict(attributes), _WireAttributes, strict=False)
    except msgspec.ValidationError as exc:
        _refuse_foreign_spec_version(attributes.get("specversion"), root="$")
        raise schema_violation(exc) from exc
    _refuse_foreign_spec_version(attrs.specversion, root="$")
    event = _event_from_raw(attrs.type, data, root="$")
    return _envelope(attrs, event)


def _decode_envelope_at(raw: bytes | msgspec.Raw, *, root: str) -> EventEnvelope:
    try:
        wire = _WIRE_DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        # The spec version decides what the other attributes mean, so a foreign one is
        # reported as such even when the rest of the document is wrong for 1.0 too.
        _refuse_foreign_spec_version(_probe(raw).specversion, root=root)
        raise schema_violation(exc, root=root) from exc
    except msgspec.DecodeError as exc:
        raise malformed_json(exc) from exc
    _refuse_foreign_spec_version(wire.specversion, root=root)
    event = _event_from_raw(wire.type, wire.data, root=root)
    return _envelope(wire, event)


def _envelope(attrs: CloudEventAttributes, event: Event) -> EventEnvelope:
    # After upcasting the attributes must name the version the data now has.
    return EventEnvelope(
        id=attrs.id,
        source=attrs.source,
        type=current_type_of(attrs.type),
        time=attrs.time,
        subject=attrs.subject,
        specversion=attrs.specversion,
        datacontenttype=attrs.datacontenttype,
        correlationid=attrs.correlationid,
        causationid=attrs.causationid,
        aggregateversion=attrs.aggregateversion,
        traceparent=attrs.traceparent,
        data=event,
    )


def _probe(raw: bytes | msgspec.Raw) -> _Probe:
    try:
        return _PROBE_DECODER.decode(raw)
    except msgspec.DecodeError:
        return _Probe()


def _refuse_foreign_spec_version(specversion: object, *, root: str) -> None:
    if specversion is not None and specversion != SPEC_VERSION:
        raise UnsupportedSpecVersion(
            f"only CloudEvents specversion {SPEC_VERSION!r} is supported, got {specversion!r}",
            field=rebase_path("$.specversion", root),
        )


def _check_known(event_type: str, *, root: str) -> None:
    if event_type not in _DATA_DECODERS and event_type not in UPCASTERS:
        raise UnknownEventType(
            f"unknown event type {event_type!r}", field=rebase_path("$.type", root)
        )


def _event_from_raw(event_type: str, data: bytes | msgspec.Raw, *, root: str) -> Event:
    _check_known(event_type, root=root)
    decoder = _DATA_DECODERS.get(event_type)
    try:
        if decoder is not None:
            return cast(Event, decoder.decode(data))
        # Superseded versions take the slow road through plain dicts; they are rare.
        return _upcast_to_event(event_type, _DICT_DECODER.decode(data))
    except msgspec.ValidationError as exc:
        raise schema_violation(exc, root=f"{root}.data") from exc
    except msgspec.DecodeError as exc:
        # Only binary mode gets here: a structured event's data was parsed with the rest.
        raise malformed_json(exc, field=f"{root}.data") from exc


def _event_from_dict(event_type: str, data: dict[str, Any], *, root: str) -> Event:
    _check_known(event_type, root=root)
    try:
        return _upcast_to_event(event_type, data)
    except msgspec.ValidationError as exc:
        raise schema_violation(exc, root=f"{root}.data") from exc


def _upcast_to_event(event_type: str, data: dict[str, Any]) -> Event:
    current_type, current_data = upcast_unchecked(event_type, data)
    return msgspec.convert(current_data, EVENT_TYPES[current_type])


# --- standalone events --------------------------------------------------------------------


def encode_event(event: AnyEvent) -> bytes:
    """The standalone tagged form: the event's fields plus ``"type"``, its CloudEvents type."""
    return _ENCODER.encode(event)


def decode_event(raw: bytes) -> Event:
    """Decode the standalone tagged form, upcasting superseded versions."""
    try:
        event = _EVENT_DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        event_type = _probe(raw).type
        if isinstance(event_type, str):
            _check_known(event_type, root="$")
        raise schema_violation(exc) from exc
    except msgspec.DecodeError as exc:
        raise malformed_json(exc) from exc
    if not isinstance(event, LegacyEvent):
        return event
    # Upcasters speak plain JSON-shaped dicts; the tag travels as the type instead.
    data = msgspec.to_builtins(event)
    del data["type"]
    try:
        return _upcast_to_event(event_type_of(event), data)
    except msgspec.ValidationError as exc:
        raise schema_violation(exc) from exc


# --- commands -----------------------------------------------------------------------------


def encode_command(command: Command) -> bytes:
    """JSON for a command (e.g. a client's request body)."""
    return _ENCODER.encode(command)


def decode_command(raw: bytes, cls: type[C]) -> C:
    """Decode a command body of class ``cls``; unknown fields are ignored."""
    decoder = command_decoder(cls)
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise schema_violation(exc) from exc
    except msgspec.DecodeError as exc:
        raise malformed_json(exc) from exc


__all__ = [
    "decode_stored_attributes",
    "decode_stored_event",
    "command_decoder",
    "data_decoder",
    "decode_batch",
    "decode_binary_envelope",
    "decode_command",
    "decode_envelope",
    "decode_envelope_obj",
    "decode_event",
    "encode_cloudevent",
    "encode_command",
    "encode_envelope",
    "encode_event",
]
