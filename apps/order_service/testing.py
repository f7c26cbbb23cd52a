"""What the order service's tests share: the API token their services run with."""

from __future__ import annotations

TOKEN = "order-service-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
