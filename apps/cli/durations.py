"""Durations on the command line (500ms, 30s, 5m, 1h) and in human output."""

from __future__ import annotations

import re

import click

_MS_PER_UNIT = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_duration_ms(text: str) -> int:
    # A unit is required: a bare "30" is ambiguous between seconds and milliseconds.
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 500ms, 30s, 5m or 1h")
    return round(float(match[1]) * _MS_PER_UNIT[match[2]])


def format_ms(ms: int) -> str:
    if ms < 1_000:
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms / 1_000:.1f}s"
    minutes, seconds = divmod(ms // 1_000, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Duration(click.ParamType[int, str | int]):
    """A click option value in milliseconds; a bad value is a usage error (exit 2)."""

    name = "duration"

    def convert(
        self, value: str | int, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_duration_ms(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
