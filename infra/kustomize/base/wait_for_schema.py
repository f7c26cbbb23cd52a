"""Wait until the database schema is at the newest revision this image ships, then exit 0.

The init container of every app that uses Postgres runs it (from the orderly image, whose
migrations are the release's), so an app never starts against a schema older than its code: the
orderly-migrate Job brings the schema there, and the apps start once it has. Reads
ORDERLY_POSTGRES_URL; waits through an unreachable database too. Run as a script:
``python wait_for_schema.py [--interval SECONDS] [--timeout SECONDS]`` (timeout 0: forever).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

import asyncpg

import migrations


async def schema_revision(url: str) -> str | None:
    """The database's revision, or None when it cannot be read (unreachable, not migrated)."""
    try:
        return await migrations.current_revision(url)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"wait-for-schema: database not readable yet: {exc}", file=sys.stderr)
        return None


async def wait_for_schema(url: str, *, interval_s: float, timeout_s: float) -> bool:
    """True once the database is at the head revision; False when ``timeout_s`` passed first."""
    head = migrations.head_revision()
    deadline = time.monotonic() + timeout_s if timeout_s > 0 else None
    while True:
        current = await schema_revision(url)
        if current == head:
            print(f"wait-for-schema: the database is at {head}", file=sys.stderr)
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        print(
            f"wait-for-schema: at {current or 'no revision'}, waiting for {head}", file=sys.stderr
        )
        await asyncio.sleep(interval_s)  # polling a database that has no event to wait for


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between checks")
    parser.add_argument("--timeout", type=float, default=0.0, help="give up after; 0: never")
    flags = parser.parse_args(argv)
    url = os.environ.get("ORDERLY_POSTGRES_URL")
    if not url:
        print("wait-for-schema: ORDERLY_POSTGRES_URL is not set", file=sys.stderr)
        return 2
    done = asyncio.run(wait_for_schema(url, interval_s=flags.interval, timeout_s=flags.timeout))
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
