from pathlib import Path

import pytest

from orderly_platform.settings import SettingsError
from payment_provider_sim.faults import FaultKnobs, OutageWindow
from payment_provider_sim.settings import SimulatorSettings, load_simulator_settings


def test_defaults_without_variables() -> None:
    settings = load_simulator_settings({"ORDERLY_HTTP_PORT": "8080"})
    assert settings == SimulatorSettings()
    assert settings.ledger_dir(Path(".orderly")) == Path(".orderly/payment-provider")


def test_reads_the_knobs_from_the_environment() -> None:
    settings = load_simulator_settings(
        {
            "ORDERLY_SIM_DATA_DIR": "/var/lib/psp",
            "ORDERLY_SIM_LATENCY_MS": "200",
            "ORDERLY_SIM_OUTAGE": "true",
            "ORDERLY_SIM_OUTAGES": "30-45, 120-180.5",
            "ORDERLY_SIM_AMBIGUOUS_RATE": "0.25",
            "ORDERLY_SIM_AMBIGUOUS_NEXT": "3",
            "ORDERLY_SIM_AMBIGUOUS_MODE": "504",
            "ORDERLY_SIM_SEED": "42",
            "ORDERLY_SIM_API_KEY": "sk_test",
        }
    )
    assert settings == SimulatorSettings(
        data_dir=Path("/var/lib/psp"),
        seed=42,
        api_key="sk_test",
        faults=FaultKnobs(
            latency_ms=200,
            outage=True,
            outages=(OutageWindow(30, 45), OutageWindow(120, 180.5)),
            ambiguous_rate=0.25,
            ambiguous_next=3,
            ambiguous_mode="504",
        ),
    )


def test_flags_win_over_the_environment() -> None:
    settings = load_simulator_settings(
        {"ORDERLY_SIM_LATENCY_MS": "200"}, latency_ms=5, ambiguous_rate=None
    )
    assert settings.faults.latency_ms == 5


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"ORDERLY_SIM_LATENCY_MS": "soon"}, "ORDERLY_SIM_LATENCY_MS"),
        ({"ORDERLY_SIM_AMBIGUOUS_RATE": "2"}, "ORDERLY_SIM_AMBIGUOUS_RATE"),
        ({"ORDERLY_SIM_OUTAGES": "45-30"}, "ORDERLY_SIM_OUTAGES"),
        ({"ORDERLY_SIM_OUTAGES": "30"}, "ORDERLY_SIM_OUTAGES"),
        ({"ORDERLY_SIM_LATENCY": "5"}, "ORDERLY_SIM_LATENCY"),
    ],
)
def test_a_bad_or_misspelt_variable_is_named(environ: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_simulator_settings(environ)
