"""Process settings, read from ``ORDERLY_*`` environment variables.

One place turns the environment into a typed, validated value, so a bad variable fails at
start-up with a message naming it instead of deep inside a request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import msgspec

ENV_PREFIX = "ORDERLY_"


class SettingsError(ValueError):
    """An ``ORDERLY_*`` variable holds a value that cannot be used."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    data_dir: Path = Path(".orderly")
    # Endpoints of the backing services. None means "find them in DATA_DIR/stack.json".
    redis_url: str | None = None
    postgres_url: str | None = None
    temporal_address: str | None = None
    temporal_namespace: str = "default"
    # The payment provider the payment service charges through (the simulator under `up`).
    payment_provider_url: str | None = None
    api_token: str | None = None
    http_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    http_host: str = "127.0.0.1"
    # Largest request body the HTTP services read; larger ones get 413 before any work.
    max_request_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 1024 * 1024
    # Partitions per stream category. Fixed for a deployment: changing it moves aggregates.
    stream_partitions: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 4
    # A consumer that stops renewing its partitions' leases (a dead one) keeps them this
    # long; then a peer takes them over, with the entries it left pending.
    partition_lease_ms: Annotated[int, msgspec.Meta(ge=100)] = 10_000
    # The order saga's deadlines (seconds): for the inventory service to answer, for the
    # payment provider to be reachable again (retried with backoff all along), and for one
    # call to it. They apply to sagas started afterwards.
    saga_inventory_deadline_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    saga_payment_deadline_s: Annotated[float, msgspec.Meta(gt=0)] = 6 * 3600.0
    saga_payment_attempt_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    # How often the projector trims streams below what is archived and acked everywhere.
    trim_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    # The order service's dashboard: how often it recomputes its snapshot (once for every
    # open page), and how long a saga waits on one step before the dashboard calls it stuck.
    dashboard_interval_s: Annotated[float, msgspec.Meta(ge=0.1)] = 2.0
    dashboard_stuck_after_s: Annotated[float, msgspec.Meta(ge=0)] = 300.0
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # None: JSON for machines, readable lines when stderr is a terminal.
    log_format: Literal["json", "console"] | None = None


# Variables that other tools in this repo own share the prefix; only these are settings.
_FIELDS = frozenset(Settings.__struct_fields__)


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build settings from ``environ`` (default: the process environment) plus overrides.

    Overrides are for command-line flags, which win over the environment.
    """
    environ = os.environ if environ is None else environ
    raw: dict[str, object] = {}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX):
            field = key[len(ENV_PREFIX) :].lower()
            if field in _FIELDS:
                raw[field] = value.upper() if field == "log_level" else value
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return msgspec.convert(raw, Settings, strict=False, dec_hook=_decode_path)
    except msgspec.ValidationError as exc:
        raise SettingsError(_explain(str(exc))) from None


def _decode_path(type_: type, value: object) -> object:
    if type_ is Path and isinstance(value, str | os.PathLike):
        return Path(value)
    raise NotImplementedError(f"cannot convert {value!r} to {type_}")


def _explain(message: str) -> str:
    # msgspec says "Expected `int`, got `str` - at `$.http_port`"; name the variable instead.
    detail, _, where = message.partition(" - at `$.")
    if where:
        return f"{ENV_PREFIX}{where.rstrip('`').upper()}: {detail}"
    return message
