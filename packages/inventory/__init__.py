"""Stock kept in Redis beside the catalog streams: the live catalog entry of every SKU, and
the inventory service that reserves, commits and releases it for orders."""
