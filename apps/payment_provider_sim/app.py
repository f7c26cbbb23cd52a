"""The simulator's aiohttp application: routes, the ledger's lifetime, health endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
from aiohttp import web

from orderly_platform.http import add_health_routes, json_errors
from orderly_platform.logs import get_logger
from orderly_platform.settings import Settings
from payment_provider_sim.charges_endpoints import get_charges, post_charge, post_refund
from payment_provider_sim.durable_ledger import DurableLedger
from payment_provider_sim.faults import Faults
from payment_provider_sim.faults_endpoint import get_faults, put_faults
from payment_provider_sim.keys import FAULTS, IN_FLIGHT, LEDGER, SETTINGS, SIMULATOR_SETTINGS
from payment_provider_sim.settings import SimulatorSettings

log = get_logger(__name__)


def create_app(settings: Settings, simulator: SimulatorSettings) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=settings.max_request_bytes)
    app[SETTINGS] = settings
    app[SIMULATOR_SETTINGS] = simulator
    app.cleanup_ctx.append(_ledger_and_faults)
    app.router.add_post("/charges", post_charge)
    app.router.add_get("/charges", get_charges)
    app.router.add_post("/refunds", post_refund)
    app.router.add_get("/_sim/faults", get_faults)
    app.router.add_put("/_sim/faults", put_faults)

    async def ledger_writable() -> None:
        if app[LEDGER].failure is not None:
            raise RuntimeError(f"the ledger file cannot be written: {app[LEDGER].failure}")

    add_health_routes(app, {"ledger": ledger_writable}, service="payment-provider")
    return app


async def _ledger_and_faults(app: web.Application) -> AsyncIterator[None]:
    simulator = app[SIMULATOR_SETTINGS]
    ledger_dir = simulator.ledger_dir(app[SETTINGS].data_dir)
    app[LEDGER] = DurableLedger.open(ledger_dir)
    # The outage windows count from here: when the simulator starts serving.
    app[FAULTS] = Faults(simulator.faults, seed=simulator.seed)
    app[IN_FLIGHT] = set()
    log.info(
        "payment provider ledger open",
        path=str(ledger_dir),
        faults=msgspec.json.encode(simulator.faults).decode(),
    )
    yield
    # Requests whose callers hung up are still owed their record.
    await asyncio.gather(*app[IN_FLIGHT], return_exceptions=True)
    await app[LEDGER].close()
