"""Stock kept in Redis beside the catalog streams: the live catalog entry of every SKU."""
