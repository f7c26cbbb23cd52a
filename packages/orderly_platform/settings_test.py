from pathlib import Path

import pytest

from orderly_platform.settings import Settings, SettingsError, load_settings


def test_defaults_when_environment_is_empty() -> None:
    assert load_settings({}) == Settings()


def test_reads_orderly_variables_and_converts_types() -> None:
    settings = load_settings(
        {
            "ORDERLY_DATA_DIR": "/var/lib/orderly",
            "ORDERLY_REDIS_URL": "redis://cache:6379/0",
            "ORDERLY_HTTP_PORT": "8081",
            "ORDERLY_LOG_LEVEL": "debug",
            "ORDERLY_LOG_FORMAT": "console",
        }
    )
    assert settings.data_dir == Path("/var/lib/orderly")
    assert settings.redis_url == "redis://cache:6379/0"
    assert settings.http_port == 8081
    assert settings.log_level == "DEBUG"
    assert settings.log_format == "console"


def test_ignores_unrelated_and_unknown_variables() -> None:
    settings = load_settings({"HOME": "/root", "ORDERLY_SOMETHING_ELSE": "x"})
    assert settings == Settings()


def test_overrides_win_over_environment_but_none_does_not_override() -> None:
    environ = {"ORDERLY_DATA_DIR": "/from/env", "ORDERLY_HTTP_PORT": "9000"}
    settings = load_settings(environ, data_dir=Path("/from/flag"), http_port=None)
    assert settings.data_dir == Path("/from/flag")
    assert settings.http_port == 9000


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("ORDERLY_HTTP_PORT", "eighty", "ORDERLY_HTTP_PORT: Expected `int`"),
        ("ORDERLY_HTTP_PORT", "70000", "ORDERLY_HTTP_PORT: Expected `int` <= 65535"),
        ("ORDERLY_LOG_LEVEL", "loud", "ORDERLY_LOG_LEVEL: Invalid enum value 'LOUD'"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str, expected: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({variable: value})
    assert str(error.value).startswith(expected)
