"""The event bus: appends to partitioned Redis Streams and the consumer-group runtime."""
