"""Every projection by name; the name is also its consumer group and checkpoint key."""

from __future__ import annotations

from projections.archive import ARCHIVE, archive_entries
from projections.checkpointed import Apply
from projections.inventory import INVENTORY, apply_inventory
from projections.orders import ORDERS_PROJECTION, apply_orders

PROJECTIONS: dict[str, Apply] = {
    ARCHIVE: archive_entries,
    INVENTORY: apply_inventory,
    ORDERS_PROJECTION: apply_orders,
}
