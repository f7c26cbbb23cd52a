"""Every projection by name; the name is also its consumer group and checkpoint key."""

from __future__ import annotations

from projections.archive import ARCHIVE
from projections.inventory import INVENTORY
from projections.orders import ORDERS_PROJECTION
from projections.projection import Projection

PROJECTIONS: dict[str, Projection] = {
    projection.name: projection for projection in (ARCHIVE, INVENTORY, ORDERS_PROJECTION)
}
