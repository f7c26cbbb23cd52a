"""How every benchmark script ends: run it, print its report, map failures to exit codes."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any


class BenchmarkFailed(Exception):
    """An error the figures must not hide (a refused event, a service that exited...)."""


def run_and_report(
    measure: Callable[[], Coroutine[Any, Any, dict[str, Any]]],
    render: Callable[[dict[str, Any]], str],
    json_path: Path | None,
) -> int:
    """0 with a report (whether targets pass or not), 1 when the run failed, 130/143 when
    interrupted or terminated (every server is stopped either way)."""
    try:
        report = asyncio.run(measure())
    except KeyboardInterrupt:
        print("interrupted; every server was stopped", file=sys.stderr)
        return 130
    except asyncio.CancelledError:
        print("terminated; every server was stopped", file=sys.stderr)
        return 143
    except BenchmarkFailed as exc:
        print(f"BENCHMARK FAILED: {exc}", file=sys.stderr)
        return 1
    print(render(report))
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"\nreport written to {json_path}")
    return 0
