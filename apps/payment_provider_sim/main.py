"""Run the payment provider simulator: ``python -m payment_provider_sim [flags]``.

Host and port come from ``ORDERLY_HTTP_HOST``/``ORDERLY_HTTP_PORT`` (or ``--host``/``--port``);
the simulator's knobs from ``ORDERLY_SIM_*`` or the flags below (``settings.py``). It is ready
when ``GET /readyz`` answers 200.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from orderly_platform.http import serve
from orderly_platform.logs import configure_logging, get_logger
from orderly_platform.settings import SettingsError, load_settings
from payment_provider_sim.app import create_app
from payment_provider_sim.journal import JournalCorrupt, JournalLocked
from payment_provider_sim.settings import load_simulator_settings

log = get_logger(__name__)


def main(argv: Sequence[str] | None = None) -> None:
    flags = _parser().parse_args(argv)
    try:
        settings = load_settings(http_host=flags.host, http_port=flags.port)
        simulator = load_simulator_settings(
            data_dir=flags.data_dir,
            latency_ms=flags.latency_ms,
            outage=flags.outage,
            outages=flags.outages,
            ambiguous_rate=flags.ambiguous_rate,
            ambiguous_next=flags.ambiguous_next,
            ambiguous_mode=flags.ambiguous_mode,
            seed=flags.seed,
            api_key=flags.api_key,
        )
    except SettingsError as exc:
        sys.exit(f"payment provider simulator: {exc}")
    configure_logging(settings.log_level, settings.log_format)
    log.info(
        "payment provider simulator starting", host=settings.http_host, port=settings.http_port
    )
    try:
        serve(create_app(settings, simulator), host=settings.http_host, port=settings.http_port)
    except (JournalCorrupt, JournalLocked) as exc:
        log.error("payment provider simulator cannot use its ledger", error=str(exc))
        sys.exit(f"payment provider simulator: {exc}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m payment_provider_sim",
        description="A payment provider stand-in: charges, refunds, idempotency keys, faults. "
        "Every flag overrides its ORDERLY_* variable.",
    )
    parser.add_argument("--host", help="ORDERLY_HTTP_HOST (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="ORDERLY_HTTP_PORT")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="ORDERLY_SIM_DATA_DIR: where the ledger lives "
        "(default $ORDERLY_DATA_DIR/payment-provider)",
    )
    parser.add_argument("--latency-ms", type=int, help="ORDERLY_SIM_LATENCY_MS")
    parser.add_argument(
        "--outage",
        action="store_const",
        const=True,
        help="ORDERLY_SIM_OUTAGE: start in an outage (every charge and refund gets 503)",
    )
    parser.add_argument(
        "--outages", help="ORDERLY_SIM_OUTAGES: windows START-END,... in seconds since start"
    )
    parser.add_argument("--ambiguous-rate", type=float, help="ORDERLY_SIM_AMBIGUOUS_RATE")
    parser.add_argument("--ambiguous-next", type=int, help="ORDERLY_SIM_AMBIGUOUS_NEXT")
    parser.add_argument(
        "--ambiguous-mode", choices=["disconnect", "504"], help="ORDERLY_SIM_AMBIGUOUS_MODE"
    )
    parser.add_argument("--seed", type=int, help="ORDERLY_SIM_SEED")
    parser.add_argument(
        "--api-key", help="ORDERLY_SIM_API_KEY: the bearer token writes need (default: none)"
    )
    return parser
