"""Typed keys for what the simulator keeps on its aiohttp Application."""

import asyncio

from aiohttp import web

from orderly_platform.settings import Settings
from payment_provider_sim.durable_ledger import DurableLedger
from payment_provider_sim.faults import Faults
from payment_provider_sim.ledger import Answer
from payment_provider_sim.settings import SimulatorSettings

SETTINGS = web.AppKey("settings", Settings)
SIMULATOR_SETTINGS = web.AppKey("simulator_settings", SimulatorSettings)
# Opened when the server starts (it reads and locks the ledger file), closed when it stops.
LEDGER = web.AppKey("ledger", DurableLedger)
FAULTS = web.AppKey("faults", Faults)
# Charges and refunds being carried out: they finish even if their caller hung up.
IN_FLIGHT = web.AppKey("in_flight", set[asyncio.Future[Answer]])
