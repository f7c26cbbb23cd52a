from pathlib import Path

import pytest

from orderly_platform.settings import Settings
from orderly_platform.stack_file import (
    StackNotRunning,
    read_stack_file,
    remove_stack_file,
    require_endpoint,
    resolve_endpoints,
    write_stack_file,
)

ENDPOINTS = {"redis": "redis://127.0.0.1:1/0", "postgres": "postgresql://p@127.0.0.1:2/orderly"}


def test_round_trip_keeps_order_and_values(tmp_path: Path) -> None:
    write_stack_file(tmp_path, ENDPOINTS)
    assert list(read_stack_file(tmp_path).items()) == list(ENDPOINTS.items())
    remove_stack_file(tmp_path)
    assert read_stack_file(tmp_path) == {}


def test_settings_override_single_endpoints(tmp_path: Path) -> None:
    write_stack_file(tmp_path, ENDPOINTS)
    settings = Settings(data_dir=tmp_path, redis_url="redis://elsewhere:6379/0")
    endpoints = resolve_endpoints(settings)
    assert endpoints["redis"] == "redis://elsewhere:6379/0"
    assert endpoints["postgres"] == ENDPOINTS["postgres"]


def test_missing_endpoint_says_how_to_start_the_stack(tmp_path: Path) -> None:
    with pytest.raises(StackNotRunning, match=r"orderly up --data-dir .*ORDERLY_TEMPORAL_ADDRESS"):
        require_endpoint(Settings(data_dir=tmp_path), "temporal")


def test_corrupt_stack_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "stack.json").write_text("{not json")
    with pytest.raises(StackNotRunning, match="is not a stack file"):
        read_stack_file(tmp_path)
