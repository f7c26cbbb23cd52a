"""Postgres read models built from the event streams, exactly once per projection."""
