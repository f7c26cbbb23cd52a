"""Run the projector: ``python -m projector`` (settings from ORDERLY_*)."""

from __future__ import annotations

from orderly_platform.http import run_service
from projector.app import create_app


def main() -> None:
    run_service("projector", create_app)
