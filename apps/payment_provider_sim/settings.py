"""The simulator's own settings: ``ORDERLY_SIM_*`` variables, or the same names as flags.

| variable | flag | meaning |
|---|---|---|
| ``ORDERLY_SIM_DATA_DIR`` | ``--data-dir`` | where the ledger lives (default ``$ORDERLY_DATA_DIR/payment-provider``) |
| ``ORDERLY_SIM_LATENCY_MS`` | ``--latency-ms`` | added to every charge and refund |
| ``ORDERLY_SIM_OUTAGE`` | ``--outage`` | ``true``: every charge and refund answers 503 |
| ``ORDERLY_SIM_OUTAGES`` | ``--outages`` | windows ``START-END,...`` in seconds since start, e.g. ``30-45,120-180`` |
| ``ORDERLY_SIM_AMBIGUOUS_RATE`` | ``--ambiguous-rate`` | share (0 to 1) of charges and refunds whose reply is lost |
| ``ORDERLY_SIM_AMBIGUOUS_NEXT`` | ``--ambiguous-next`` | the next N charges or refunds lose their reply |
| ``ORDERLY_SIM_AMBIGUOUS_MODE`` | ``--ambiguous-mode`` | ``disconnect`` (default) or ``504`` |
| ``ORDERLY_SIM_SEED`` | ``--seed`` | seeds the draws of the ambiguous rate |
| ``ORDERLY_SIM_API_KEY`` | ``--api-key`` | when set, writes need ``Authorization: Bearer <key>`` |

The API key is the provider's own secret, like a PSP's secret key, not ``ORDERLY_API_TOKEN``:
unset (the default), the simulator takes every request. Host, port and log settings are the
usual ``ORDERLY_*`` ones (``orderly_platform.settings``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import msgspec

from orderly_platform.settings import SettingsError
from payment_provider_sim.faults import FaultKnobs

ENV_PREFIX = "ORDERLY_SIM_"


class SimulatorSettings(msgspec.Struct, frozen=True, kw_only=True):
    data_dir: Path | None = None
    seed: int | None = None
    api_key: str | None = None
    faults: FaultKnobs = FaultKnobs()

    def ledger_dir(self, orderly_data_dir: Path) -> Path:
        return self.data_dir or orderly_data_dir / "payment-provider"


_FAULT_FIELDS = frozenset(FaultKnobs.__struct_fields__)
_KNOWN = _FAULT_FIELDS | (frozenset(SimulatorSettings.__struct_fields__) - {"faults"})


def load_simulator_settings(
    environ: Mapping[str, str] | None = None, **overrides: object
) -> SimulatorSettings:
    """Settings from ``environ`` (default: the process environment); overrides (flags) win."""
    environ = os.environ if environ is None else environ
    raw: dict[str, object] = {
        key[len(ENV_PREFIX) :].lower(): value
        for key, value in environ.items()
        if key.startswith(ENV_PREFIX)
    }
    raw.update({name: value for name, value in overrides.items() if value is not None})
    # A misspelt knob would otherwise leave a fault off while a test believes it is on.
    unknown = sorted(f"{ENV_PREFIX}{name.upper()}" for name in raw.keys() - _KNOWN)
    if unknown:
        raise SettingsError(f"unknown simulator settings: {', '.join(unknown)}")
    faults = {name: raw.pop(name) for name in list(raw) if name in _FAULT_FIELDS}
    if isinstance(faults.get("outages"), str):
        faults["outages"] = _windows(str(faults["outages"]))
    try:
        knobs = msgspec.convert(faults, FaultKnobs, strict=False)
        return msgspec.convert(
            {**raw, "faults": knobs},
            SimulatorSettings,
            strict=False,
            dec_hook=_decode_path,
            from_attributes=True,
        )
    except msgspec.ValidationError as exc:
        raise SettingsError(_explain(str(exc))) from None


def _windows(text: str) -> list[list[str]]:
    """``"30-45, 120-180"`` -> ``[["30", "45"], ["120", "180"]]`` (converted and checked later)."""
    windows = []
    for part in text.split(","):
        if not part.strip():
            continue
        start, dash, end = part.strip().partition("-")
        if not dash:
            raise SettingsError(
                f"{ENV_PREFIX}OUTAGES: {part.strip()!r} is not START-END (seconds since start)"
            )
        windows.append([start.strip(), end.strip()])
    return windows


def _decode_path(type_: type, value: object) -> object:
    if type_ is Path and isinstance(value, str | os.PathLike):
        return Path(value)
    raise NotImplementedError(f"cannot convert {value!r} to {type_}")


def _explain(message: str) -> str:
    # "Expected `int`, got `str` - at `$.latency_ms`" -> name the variable instead.
    detail, _, where = message.partition(" - at `$.")
    if where:
        name = where.rstrip("`").split("[")[0].split(".")[0]
        return f"{ENV_PREFIX}{name.upper()}: {detail}"
    return message
