"""What a projection is: a name, the tables it owns, and how it writes a batch into them.

A projection's writer is given its tables rather than importing them, so the same code fills
the live tables and, during a blue/green rebuild, fresh copies of them in another schema.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from projections.recorded import Recorded

# Writes a batch (in stream order per partition, none applied before) on an open transaction.
Apply = Callable[[AsyncConnection, list[Recorded]], Awaitable[None]]


@dataclass(frozen=True)
class Projection:
    # Also the name of its consumer group and of its checkpoint rows.
    name: str
    # Its tables, in the order the writer takes them.
    tables: tuple[sa.Table, ...]
    writer: Callable[..., Apply]
    # False for a projection that is the source of replays (the archive): nothing to rebuild from.
    rebuildable: bool = True
    # The names of the events whose data (not just attributes) the writer reads. A replay
    # fetches the payloads of only these from the archive: most events of a replay are
    # timeline steps, and their bytes are a good part of what a replay moves.
    decodes: frozenset[str] = frozenset()
    apply: Apply = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "apply", self.writer(*self.tables))

    def apply_to(self, tables: tuple[sa.Table, ...]) -> Apply:
        """The writer bound to other copies of this projection's tables (same order)."""
        return self.writer(*tables)
