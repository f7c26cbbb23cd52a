"""``GET /_sim/faults`` and ``PUT /_sim/faults``: the simulator's knobs, for tests and demos.

``PUT`` takes any of the knobs of ``faults.FaultsUpdate`` (unknown ones are a 422, so a typo
cannot leave a fault off) and answers with all of them, as ``GET`` does.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from orderly_platform.http import ApiError, json_response, require_bearer_token
from payment_provider_sim.faults import FaultsUpdate
from payment_provider_sim.keys import FAULTS, SIMULATOR_SETTINGS

_decoder = msgspec.json.Decoder(FaultsUpdate)


async def get_faults(request: web.Request) -> web.Response:
    return json_response(request.app[FAULTS].view())


async def put_faults(request: web.Request) -> web.Response:
    api_key = request.app[SIMULATOR_SETTINGS].api_key
    if api_key:
        require_bearer_token(request, api_key)
    try:
        update = _decoder.decode(await request.read())
    except msgspec.ValidationError as exc:
        raise ApiError(422, "schema_violation", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "malformed_json", str(exc)) from None
    faults = request.app[FAULTS]
    faults.update(update)
    return json_response(faults.view())
