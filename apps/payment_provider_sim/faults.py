"""The faults the simulator injects into charges and refunds, set at start and changed at runtime.

- ``latency_ms``: every ``POST /charges`` and ``POST /refunds`` waits this long first.
- An outage (the ``outage`` switch, or now falling in one of the ``outages`` windows, given in
  seconds since the simulator started): those requests answer 503 and record nothing.
- A lost reply (``ambiguous_next`` requests, then a share ``ambiguous_rate`` of the rest):
  the request is carried out and recorded, and only then is its reply lost, the way a real
  provider's reply is lost to a network fault after the charge happened. ``ambiguous_mode``
  says how: ``disconnect`` closes the connection without a reply, ``504`` answers
  ``504 gateway_timeout``. Only requests the ledger acted on lose their reply (captures,
  declines and refunds, first or replayed); refusals (409, 404, 422) are answered.

The rate draws from a random generator seeded with ``seed`` when one is given, so a run with
the same requests in the same order loses the same replies.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Annotated, Literal

import msgspec

AmbiguousMode = Literal["disconnect", "504"]


class OutageWindow(msgspec.Struct, frozen=True, array_like=True):
    """``[start_s, end_s)``, in seconds since the simulator started."""

    start_s: Annotated[float, msgspec.Meta(ge=0)]
    end_s: float

    def __post_init__(self) -> None:
        if self.end_s <= self.start_s:
            raise ValueError("an outage window must end after it starts")

    def covers(self, uptime_s: float) -> bool:
        return self.start_s <= uptime_s < self.end_s


class FaultKnobs(msgspec.Struct, frozen=True, kw_only=True):
    latency_ms: Annotated[int, msgspec.Meta(ge=0, le=600_000)] = 0
    outage: bool = False
    outages: tuple[OutageWindow, ...] = ()
    ambiguous_rate: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.0
    ambiguous_next: Annotated[int, msgspec.Meta(ge=0)] = 0
    ambiguous_mode: AmbiguousMode = "disconnect"


class FaultsUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``PUT /_sim/faults``: the knobs to change; the others keep their values.

    ``outage_for_s`` adds a window from now that long: an outage that ends by itself.
    """

    latency_ms: Annotated[int, msgspec.Meta(ge=0, le=600_000)] | msgspec.UnsetType = msgspec.UNSET
    outage: bool | msgspec.UnsetType = msgspec.UNSET
    outages: tuple[OutageWindow, ...] | msgspec.UnsetType = msgspec.UNSET
    outage_for_s: Annotated[float, msgspec.Meta(gt=0)] | msgspec.UnsetType = msgspec.UNSET
    ambiguous_rate: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    ambiguous_next: Annotated[int, msgspec.Meta(ge=0)] | msgspec.UnsetType = msgspec.UNSET
    ambiguous_mode: AmbiguousMode | msgspec.UnsetType = msgspec.UNSET


class FaultsView(FaultKnobs, frozen=True, kw_only=True):
    """``GET /_sim/faults``: the knobs, and whether an outage is on right now."""

    in_outage: bool
    uptime_s: float


class Faults:
    def __init__(
        self,
        knobs: FaultKnobs,
        *,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.knobs = knobs
        self._random = random.Random(seed)
        self._clock = clock
        self._started = clock()

    def uptime_s(self) -> float:
        return self._clock() - self._started

    def in_outage(self) -> bool:
        if self.knobs.outage:
            return True
        uptime = self.uptime_s()
        return any(window.covers(uptime) for window in self.knobs.outages)

    def lose_this_reply(self) -> bool:
        """Whether the reply to the request being answered is lost; consumes ``ambiguous_next``."""
        if self.knobs.ambiguous_next > 0:
            self.knobs = msgspec.structs.replace(
                self.knobs, ambiguous_next=self.knobs.ambiguous_next - 1
            )
            return True
        return self.knobs.ambiguous_rate > 0 and self._random.random() < self.knobs.ambiguous_rate

    def update(self, update: FaultsUpdate) -> None:
        changes = {
            name: value
            for name in FaultKnobs.__struct_fields__
            if (value := getattr(update, name)) is not msgspec.UNSET
        }
        knobs = msgspec.structs.replace(self.knobs, **changes)
        if not isinstance(update.outage_for_s, msgspec.UnsetType):
            now = self.uptime_s()
            # Rounded to the millisecond for the view, the start down: rounded up, it would
            # lie ahead of now, and the outage would begin a moment after it was asked for.
            start = math.floor(now * 1000) / 1000
            window = OutageWindow(start_s=start, end_s=round(now + update.outage_for_s, 3))
            knobs = msgspec.structs.replace(knobs, outages=(*knobs.outages, window))
        self.knobs = knobs

    def view(self) -> FaultsView:
        return FaultsView(
            **msgspec.structs.asdict(self.knobs),
            in_outage=self.in_outage(),
            uptime_s=round(self.uptime_s(), 3),
        )
