"""Set-based writes: a whole batch's rows go to Postgres as one JSON parameter.

One statement per batch instead of one per event is what lets a replay keep up with a
million events; ``jsonb_to_recordset`` turns the parameter back into typed rows to join on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.selectable import TableValuedAlias

ROWS = "rows"
_encoder = msgspec.json.Encoder()


def recordset(*columns: sa.ColumnClause[Any], name: str = "d") -> TableValuedAlias:
    """``jsonb_to_recordset(:rows) AS d(col type, ...)``, to select, join or update from."""
    rows = sa.cast(sa.bindparam(ROWS, type_=sa.Text), JSONB)
    return (
        sa.func.jsonb_to_recordset(rows)
        .table_valued(*columns)
        .render_derived(name=name, with_types=True)
    )


def rows_parameter(rows: Sequence[Any]) -> dict[str, str]:
    """The statement parameters carrying ``rows`` (dicts or msgspec Structs; datetimes ok)."""
    return {ROWS: _encoder.encode(rows).decode()}
