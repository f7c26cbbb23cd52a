"""Driving ``POST /events`` and ``POST /orders`` with wrk, every request new to the service.

The order service deduplicates events on ``source`` + ``id`` and orders on their
``Idempotency-Key``, so a load generator that repeats one request measures the duplicate path
(a read in Redis and nothing written). The Lua script below builds each event id or key in
``request()`` from a run prefix, the wrk thread's number and a per-thread counter, and reports
wrk's summary as one JSON line from ``done()``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Mode = Literal["single", "batch", "orders"]

CONTENT_TYPES: dict[Mode, str] = {
    "single": "application/cloudevents+json",
    "batch": "application/cloudevents-batch+json",
    "orders": "application/json",
}

_RESULT_MARKER = "WRK_RESULT "

# Arguments after `--`: mode, events per request, content type, token, id prefix.
LUA_SCRIPT = r"""
local threads = {}

-- Runs in wrk's main Lua state once per thread; thread:set() makes `thread_number` a global
-- of that thread's own state before its init() runs.
function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

local counter = 0
local mode, per_request, headers, prefix

function init(args)
  mode = args[1]
  per_request = tonumber(args[2])
  headers = {["Content-Type"] = args[3], ["Authorization"] = "Bearer " .. args[4]}
  prefix = args[5]
end

local template = '{"specversion":"1.0","id":"%s-%d-%d","source":"/bench/wrk",'
  .. '"type":"orderly.StockReceived.v1","time":"2026-01-01T00:00:00Z","subject":"%s",'
  .. '"datacontenttype":"application/json",'
  .. '"data":{"sku":"%s","quantity":1,"warehouse":"bench"}}'

local function next_event()
  counter = counter + 1
  -- A thousand SKUs spread the events over every partition, as real stock updates would.
  local sku = "SKU-" .. (counter % 1000)
  return string.format(template, prefix, thread_number, counter, sku, sku)
end

-- One item of one of the thousand SKUs that the benchmark puts in the catalog first.
local order_template = '{"customer_id":"c-%d","items":[{"sku":"SKU-%d","quantity":1}],'
  .. '"payment_token":"tok_bench"}'

local function next_order()
  counter = counter + 1
  headers["Idempotency-Key"] = string.format("%s-%d-%d", prefix, thread_number, counter)
  local n = counter % 1000
  return wrk.format("POST", "/orders", headers, string.format(order_template, n, n))
end

function request()
  if mode == "orders" then
    return next_order()
  end
  local body
  if mode == "single" then
    body = next_event()
  else
    local events = {}
    for i = 1, per_request do
      events[i] = next_event()
    end
    body = "[" .. table.concat(events, ",") .. "]"
  end
  return wrk.format("POST", "/events", headers, body)
end

function done(summary, latency, requests)
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"error_statuses":%d,'
      .. '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,'
      .. '"latency_p50_us":%d,"latency_p99_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, summary.errors.status,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


class WrkFailed(RuntimeError):
    """wrk is missing, exited with an error, or printed no summary."""


@dataclass(frozen=True)
class WrkSettings:
    duration_s: int
    connections: int
    threads: int


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_us: int
    bytes: int
    # Responses with a status >= 400: what wrk prints as "Non-2xx or 3xx responses".
    error_statuses: int
    connect_errors: int
    read_errors: int
    write_errors: int
    timeouts: int
    latency_p50_us: int
    latency_p99_us: int

    @property
    def requests_per_s(self) -> float:
        return self.requests / (self.duration_us / 1e6)

    @property
    def accepted(self) -> int:
        """Completed requests without an error status (the services only answer 202 or 4xx/5xx)."""
        return self.requests - self.error_statuses

    @property
    def socket_errors(self) -> int:
        return self.connect_errors + self.read_errors + self.write_errors + self.timeouts


def find_wrk() -> str:
    path = shutil.which("wrk")
    if not path:
        raise WrkFailed("wrk was not found on PATH: run tools/install-system-packages")
    return path


def write_script(directory: Path) -> Path:
    path = directory / "post_events.lua"
    path.write_text(LUA_SCRIPT)
    return path


async def run_wrk(
    url: str,
    script: Path,
    settings: WrkSettings,
    *,
    mode: Mode,
    events_per_request: int,
    token: str,
    id_prefix: str,
) -> WrkResult:
    argv = [
        find_wrk(),
        f"--threads={settings.threads}",
        f"--connections={settings.connections}",
        f"--duration={settings.duration_s}s",
        "--timeout=10s",
        f"--script={script}",
        url,
        "--",
        mode,
        str(events_per_request),
        CONTENT_TYPES[mode],
        token,
        id_prefix,
    ]
    stdout = await _run(argv)
    return parse_result(stdout)


async def _run(argv: list[str]) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await process.communicate()
    finally:
        if process.returncode is None:  # cancelled (Ctrl-C): do not leave wrk running
            process.kill()
            await process.wait()
    if process.returncode != 0:
        raise WrkFailed(f"wrk exited with {process.returncode}: {err.decode(errors='replace')}")
    return out.decode(errors="replace")


def parse_result(stdout: str) -> WrkResult:
    for line in stdout.splitlines():
        if line.startswith(_RESULT_MARKER):
            return WrkResult(**json.loads(line[len(_RESULT_MARKER) :]))
    raise WrkFailed(f"wrk printed no summary line; its output was:\n{stdout}")
