"""DATA_DIR/stack.json: how the verbs of the CLI find a stack that `orderly up` runs.

It maps each endpoint name to its URL, exactly the lines `up` prints. ``ORDERLY_*`` settings
override single endpoints, so a verb can also point at servers that `up` did not start.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import msgspec

from orderly_platform.settings import Settings

STACK_FILE = "stack.json"
# Endpoint name -> the setting that overrides it.
_OVERRIDING_SETTING = {
    "redis": "redis_url",
    "postgres": "postgres_url",
    "temporal": "temporal_address",
}


class StackNotRunning(RuntimeError):
    """No stack.json in the data dir and no endpoint given in the environment."""


def stack_file_path(data_dir: Path) -> Path:
    return data_dir / STACK_FILE


def write_stack_file(data_dir: Path, endpoints: dict[str, str]) -> Path:
    path = stack_file_path(data_dir)
    tmp = path.with_suffix(".json.tmp")
    # It holds the API token: readable by its owner only.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(msgspec.json.format(msgspec.json.encode(endpoints)) + b"\n")
    # Readers never see half a file: rename is atomic within one directory.
    os.replace(tmp, path)
    return path


def remove_stack_file(data_dir: Path) -> None:
    stack_file_path(data_dir).unlink(missing_ok=True)


def read_stack_file(data_dir: Path) -> dict[str, str]:
    path = stack_file_path(data_dir)
    try:
        return msgspec.json.decode(path.read_bytes(), type=dict[str, str])
    except FileNotFoundError:
        return {}
    except msgspec.DecodeError as exc:
        raise StackNotRunning(f"{path} is not a stack file ({exc}).") from None


def resolve_endpoints(settings: Settings) -> dict[str, str]:
    """The stack's endpoints: stack.json, with the settings' endpoints taking precedence."""
    endpoints = read_stack_file(settings.data_dir)
    for name, setting in _OVERRIDING_SETTING.items():
        value = getattr(settings, setting)
        if value:
            endpoints[name] = value
    return endpoints


def require_endpoint(settings: Settings, name: str) -> str:
    endpoint = resolve_endpoints(settings).get(name)
    if not endpoint:
        hint = (
            f" or set ORDERLY_{_OVERRIDING_SETTING[name].upper()}"
            if name in _OVERRIDING_SETTING
            else ""
        )
        raise StackNotRunning(
            f"no {name} endpoint: is the stack running? Start it with "
            f"'./orderly up --data-dir {settings.data_dir}'{hint}."
        )
    return endpoint


def redacted(url: str) -> str:
    """The URL without its password: error lines end up in terminals and CI logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
