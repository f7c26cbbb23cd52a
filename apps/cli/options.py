"""Options every verb shares, and turning library errors into clear one-line CLI errors."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
import msgspec

from orderly_platform.settings import SettingsError, load_settings
from orderly_platform.stack_file import StackNotRunning

F = TypeVar("F", bound=Callable[..., Any])


def stack_options(command: F) -> F:
    """--data-dir and --json, resolved into Settings passed as the `settings` argument."""

    @click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Where the stack keeps its data and stack.json (default: $ORDERLY_DATA_DIR or .orderly).",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
    @functools.wraps(command)
    def wrapper(data_dir: Path | None, as_json: bool, **kwargs: Any) -> Any:
        with clear_errors():
            settings = load_settings(data_dir=data_dir)
            return command(settings=settings, as_json=as_json, **kwargs)

    return wrapper  # type: ignore[return-value]


@contextmanager
def clear_errors() -> Iterator[None]:
    try:
        yield
    except (SettingsError, StackNotRunning) as exc:
        raise click.ClickException(str(exc)) from None


def emit(as_json: bool, data: object, lines: list[str]) -> None:
    if as_json:
        sys.stdout.buffer.write(msgspec.json.encode(data) + b"\n")
    else:
        for line in lines:
            click.echo(line)
    sys.stdout.flush()
