"""Temporal payloads as msgspec JSON, so workflows and activities take our Structs as they are.

Temporal's default JSON converter knows dataclasses and Pydantic, not msgspec Structs. This
one encodes any value msgspec can encode and decodes it into the type the workflow or
activity declares (a tagged event union included), validating as it goes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    EncodingPayloadConverter,
    JSONPlainPayloadConverter,
)

_ENCODING = b"json/plain"  # the standard name: the Temporal UI and CLI can show these


class MsgspecJSONPayloadConverter(EncodingPayloadConverter):
    @property
    def encoding(self) -> str:
        return _ENCODING.decode()

    def to_payload(self, value: Any) -> Payload | None:
        return Payload(metadata={"encoding": _ENCODING}, data=msgspec.json.encode(value))

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        return msgspec.json.decode(payload.data, type=Any if type_hint is None else type_hint)


class MsgspecPayloadConverter(CompositePayloadConverter):
    """Temporal's default converters, with msgspec in place of the plain JSON one."""

    def __init__(self) -> None:
        super().__init__(
            *(
                (
                    MsgspecJSONPayloadConverter()
                    if isinstance(converter, JSONPlainPayloadConverter)
                    else converter
                )
                for converter in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


DATA_CONVERTER = dataclasses.replace(
    DataConverter.default, payload_converter_class=MsgspecPayloadConverter
)
