"""Parsing and printing durations for the operator verbs."""

import click
import pytest

from cli.durations import Duration, format_ms, parse_duration_ms


@pytest.mark.parametrize(
    ("text", "ms"),
    [("500ms", 500), ("30s", 30_000), ("1.5s", 1_500), ("5m", 300_000), ("1h", 3_600_000)],
)
def test_parses_durations_with_a_unit(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "30", "s", "5 minutes", "-1s", "1d", "1h30m"])
def test_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration_ms(text)


def test_a_bad_option_value_is_a_usage_error() -> None:
    with pytest.raises(click.BadParameter):
        Duration().convert("soon", None, None)


@pytest.mark.parametrize(
    ("ms", "text"),
    [(0, "0ms"), (999, "999ms"), (1_500, "1.5s"), (125_000, "2m05s"), (7_500_000, "2h05m")],
)
def test_formats_durations_for_people(ms: int, text: str) -> None:
    assert format_ms(ms) == text
