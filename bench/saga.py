"""End-to-end order throughput and latency through the whole saga, against bare Temporal.

``./pants run bench/saga.py -- [--orders 600] [--concurrency 48] [--duration 20] [--smoke]
[--json PATH]`` starts the whole platform with ``orderly up`` (embedded Redis, Postgres and
Temporal, every service its own process) in a temporary data dir, then, in one run:

1. ceiling: a bare workflow shaped like OrderSaga's confirmed path, on the same Temporal
   server: four activities that do nothing (OrderSaga's three emits and its capture) and two
   signals sent by this process (the two inventory answers). ``--orders`` of them at
   ``--concurrency``, start to completion: workflows/s;
2. saga maximum: ``--orders`` orders (``POST /orders`` against a SKU with ample stock) at the
   same concurrency, each from POST until CONFIRMED in the orders read model: orders/s,
   and the ratio to (1);
3. at 50% of (2), open loop for ``--duration`` seconds: accept latency (POST answered) and
   end-to-end latency (POST sent to CONFIRMED visible in Postgres), p50 and p99.

The read model is watched with one query for every order in flight, every 10 ms while
latency is measured (the end-to-end figures carry up to 10 ms of polling), every 25 ms while
the maximum is. Targets (from the issue): saga throughput
at least 0.6x the bare ceiling; accept p99 under 50 ms at 50% load; PASS/FAIL is printed, the
exit status is 0 either way (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from temporalio.client import Client
from temporalio.worker import Worker

from bench.bare_order import BareOrder, noop
from bench.projection_lag import CoresMeter, children_of, process_tree_cpu_s
from bench.running import BenchmarkFailed, run_and_report
from orderly_platform.logs import configure_logging
from orderly_platform.percentiles import percentile

TARGET_RATIO = 0.6
TARGET_ACCEPT_P99_MS = 50.0
# How often the read model is polled: every 10 ms while latency is measured; every 25 ms
# while the maximum is (a poll costs the benchmark and Postgres CPU that the saga then lacks,
# and with 48 orders in flight a few ms more before each is seen does not slow the next).
LATENCY_POLL_S = 0.01
THROUGHPUT_POLL_S = 0.025
SKU = "bench-widget"


def child_env(tmp: Path) -> dict[str, str]:
    """The environment of the processes this benchmark starts: this one's imports, and a
    bytecode cache. `pants run` turns bytecode writing off, so without one each saga's sandbox
    would compile the workflow's module from source again (the bare workflow's too), where
    `./orderly` and the images (compiled when built) load it compiled."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "PYTHONPYCACHEPREFIX": str(tmp / "pycache"),
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


async def start_stack(
    data_dir: Path, env: dict[str, str]
) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    env = {**env, "ORDERLY_LOG_LEVEL": "WARNING"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "up", "--data-dir", str(data_dir), "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=(data_dir.parent / "up.stderr").open("wb"),
        env=env,
    )  # fmt: skip
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 300)
    if not line:
        await process.wait()
        tail = (data_dir.parent / "up.stderr").read_text()[-2000:]
        raise BenchmarkFailed(f"orderly up exited with {process.returncode}: {tail}")
    return process, json.loads(line)


async def bare_ceiling(temporal: str, orders: int, concurrency: int) -> float:
    client = await Client.connect(temporal)
    queue = f"bench-bare-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[BareOrder],
        activities=[noop],
        max_concurrent_activities=200,
        max_concurrent_workflow_tasks=200,
    ):
        slots = asyncio.Semaphore(concurrency)

        async def one(n: int | str) -> None:
            async with slots:
                handle = await client.start_workflow(
                    BareOrder.run, id=f"{queue}-{n}", task_queue=queue
                )
                await handle.signal(BareOrder.answer)
                await handle.signal(BareOrder.answer)
                await handle.result()

        # Warm-up, as for the saga: the worker's first workflow tasks load its sandbox.
        await asyncio.gather(*(one(f"warm-{n}") for n in range(min(50, orders))))
        started = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(orders)))
        return orders / (time.perf_counter() - started)


class Stack:
    """The running platform as this benchmark uses it: the HTTP API and the read model."""

    def __init__(self, endpoints: dict[str, str], session: aiohttp.ClientSession) -> None:
        self.api = endpoints["order-service"]
        self.headers = {"Authorization": f"Bearer {endpoints['api-token']}"}
        self.postgres = endpoints["postgres"]
        self.session = session
        # Each order in flight: resolved with the time it showed CONFIRMED, or failed.
        self.watching: dict[str, asyncio.Future[float]] = {}
        self.poll_s = LATENCY_POLL_S

    async def stock(self, on_hand: int) -> None:
        body = {"price": 500, "currency": "EUR", "on_hand": on_hand}
        async with self.session.put(
            f"{self.api}/catalog/{SKU}", json=body, headers=self.headers
        ) as response:
            if response.status != 202:
                raise BenchmarkFailed(f"PUT /catalog: {response.status} {await response.text()}")

    async def place(self) -> tuple[str, float, float]:
        """(order id, when sent, accept latency in s)."""
        body = {
            "customer_id": f"bench-{uuid.uuid4().hex[:6]}",
            "items": [{"sku": SKU, "quantity": 1}],
            "payment_token": "tok_visa",
        }
        sent = time.perf_counter()
        async with self.session.post(f"{self.api}/orders", json=body, headers=self.headers) as r:
            if r.status != 202:
                raise BenchmarkFailed(f"POST /orders: {r.status} {await r.text()}")
            order_id = (await r.json())["order_id"]
        return order_id, sent, time.perf_counter() - sent

    async def watch(self, stop: asyncio.Event) -> None:
        """Record when each watched order shows CONFIRMED (or fails) in the read model."""
        connection = await asyncpg.connect(self.postgres, ssl=False)  # the local server
        try:
            while not stop.is_set() or self.watching:
                if self.watching:
                    rows = await connection.fetch(
                        "SELECT order_id, status, reason FROM orders"
                        " WHERE order_id = ANY($1) AND status <> 'PENDING'",
                        list(self.watching),
                    )
                    now = time.perf_counter()
                    for order_id, status, reason in rows:
                        seen = self.watching.pop(order_id)
                        if status == "CONFIRMED":
                            seen.set_result(now)
                        else:
                            failure = f"order {order_id} ended {status}: {reason}"
                            seen.set_exception(BenchmarkFailed(failure))
                await asyncio.sleep(self.poll_s)
        finally:
            for seen in self.watching.values():  # the watch failed: nobody waits forever
                if not seen.done():
                    seen.set_exception(BenchmarkFailed("the read model's watch ended"))
            await connection.close()

    async def until_confirmed(self, order_id: str) -> float:
        seen: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.watching[order_id] = seen
        return await seen


async def saga_maximum(stack: Stack, orders: int, concurrency: int) -> float:
    slots = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with slots:
            order_id, _, _ = await stack.place()
            await stack.until_confirmed(order_id)

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(orders)))
    return orders / (time.perf_counter() - started)


async def at_rate(stack: Stack, rate: float, duration: float) -> dict[str, Any]:
    accepts: list[float] = []
    ends: list[float] = []
    tasks = []

    async def one() -> None:
        order_id, sent, accept = await stack.place()
        accepts.append(accept)
        ends.append(await stack.until_confirmed(order_id) - sent)

    started = time.perf_counter()
    n = 0
    while (elapsed := time.perf_counter() - started) < duration:
        due = n / rate
        if due > elapsed:
            await asyncio.sleep(due - elapsed)
        tasks.append(asyncio.create_task(one()))
        n += 1
    await asyncio.gather(*tasks)
    return {
        "rate": rate,
        "orders": n,
        "achieved_rate": n / duration,
        "accept_ms": {q: percentile(accepts, p) * 1000 for q, p in (("p50", 0.5), ("p99", 0.99))},
        "end_to_end_ms": {q: percentile(ends, p) * 1000 for q, p in (("p50", 0.5), ("p99", 0.99))},
        "end_to_end_mean_ms": statistics.fmean(ends) * 1000 if ends else float("nan"),
    }


def label_of(pid: int) -> str:
    """A process of the stack by what it runs: a service's module, or the server's program."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    if "-m" in argv[:-1]:
        return argv[argv.index("-m") + 1]
    # redis-server rewrites its argv[0] as "redis-server HOST:PORT".
    return Path(argv[0].split(" ")[0]).name.removesuffix("-server")  # redis, postgres, temporal


def stack_cores_meter(up_pid: int) -> CoresMeter:
    """Cores each process of the stack (and this benchmark, and its bare-workflow child)
    keeps busy: where an order's CPU goes, beside the bare workflow's."""
    readers: dict[str, Callable[[], float]] = {"bench": partial(process_tree_cpu_s, os.getpid())}
    for pid in children_of(up_pid):
        readers[label_of(pid)] = partial(process_tree_cpu_s, pid)
    return CoresMeter(readers)


async def run(options: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(
        prefix="orderly-bench-saga-", ignore_cleanup_errors=True
    ) as tmp:
        env = child_env(Path(tmp))
        process, endpoints = await start_stack(Path(tmp) / "stack", env)
        try:
            meter = stack_cores_meter(process.pid)
            return await measure(options, endpoints, meter, env)
        finally:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 120)


async def bare_ceiling_in_a_process(
    temporal: str, orders: int, concurrency: int, env: dict[str, str]
) -> float:
    """``bare_ceiling`` in a child process. Its worker would otherwise share this process: an
    asyncpg connection opened here after a Temporal worker had run and shut down crashed the
    interpreter (a segfault, seen on this machine)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.saga", "--bare-ceiling", temporal,
        "--orders", str(orders), "--concurrency", str(concurrency),
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )  # fmt: skip
    out, _ = await child.communicate()
    if child.returncode != 0:
        raise BenchmarkFailed(f"the bare workflow run exited with {child.returncode}")
    return float(out.decode().strip().splitlines()[-1])


async def measure(
    options: argparse.Namespace,
    endpoints: dict[str, str],
    meter: CoresMeter,
    env: dict[str, str],
) -> dict[str, Any]:
    print(f"bare workflow ceiling: {options.orders} workflows at {options.concurrency}", flush=True)
    meter.start()
    ceiling = await bare_ceiling_in_a_process(
        endpoints["temporal"], options.orders, options.concurrency, env
    )
    bare_cores = meter.cores()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        stack = Stack(endpoints, session)
        total = options.orders * 2 + int(options.duration * ceiling) + 1000
        await stack.stock(total)
        stop = asyncio.Event()
        watcher = asyncio.create_task(stack.watch(stop))
        try:
            print(f"saga maximum: {options.orders} orders at {options.concurrency}", flush=True)
            stack.poll_s = THROUGHPUT_POLL_S
            await saga_maximum(stack, min(50, options.orders), options.concurrency)  # warm-up
            meter.start()
            maximum = await saga_maximum(stack, options.orders, options.concurrency)
            saga_cores = meter.cores()
            half = maximum / 2
            print(f"open loop at {half:.1f} orders/s for {options.duration:.0f} s", flush=True)
            stack.poll_s = LATENCY_POLL_S
            loaded = await at_rate(stack, half, options.duration)
        finally:
            stop.set()
            await watcher
    return {
        "orders": options.orders,
        "concurrency": options.concurrency,
        "bare_workflows_per_s": ceiling,
        "saga_orders_per_s": maximum,
        "ratio_to_bare": maximum / ceiling,
        # Cores busy per process during each phase (the bare run includes its warm-up).
        "bare_cores": bare_cores,
        "saga_cores": saga_cores,
        "at_half_load": loaded,
    }


def render_report(report: dict[str, Any]) -> str:
    loaded = report["at_half_load"]
    ratio_ok = report["ratio_to_bare"] >= TARGET_RATIO
    accept_ok = loaded["accept_ms"]["p99"] < TARGET_ACCEPT_P99_MS
    return "\n".join(
        [
            f"bare workflow (4 activities, 2 signals): {report['bare_workflows_per_s']:.1f} /s"
            f" at concurrency {report['concurrency']}",
            f"order saga, POST to CONFIRMED in the read model: {report['saga_orders_per_s']:.1f}"
            f" orders/s ({report['orders']} orders)",
            f"ratio saga / bare: {report['ratio_to_bare']:.2f}x",
            f"  cores busy, bare: {_cores(report['bare_cores'])}",
            f"  cores busy, saga: {_cores(report['saga_cores'])}",
            "  CPU ms per order: "
            + _cores(
                {k: v * 1000 / report["saga_orders_per_s"] for k, v in report["saga_cores"].items()}
            ),
            f"at 50% load ({loaded['rate']:.1f}/s asked, {loaded['achieved_rate']:.1f}/s sent,"
            f" {loaded['orders']} orders):",
            f"  accept       p50 {loaded['accept_ms']['p50']:.1f} ms, p99"
            f" {loaded['accept_ms']['p99']:.1f} ms",
            f"  end to end   p50 {loaded['end_to_end_ms']['p50']:.1f} ms, p99"
            f" {loaded['end_to_end_ms']['p99']:.1f} ms",
            f"target saga >= {TARGET_RATIO}x bare: {report['ratio_to_bare']:.2f}x"
            f" {'PASS' if ratio_ok else 'FAIL'}",
            f"target accept p99 < {TARGET_ACCEPT_P99_MS:.0f} ms:"
            f" {loaded['accept_ms']['p99']:.1f} ms {'PASS' if accept_ok else 'FAIL'}",
        ]
    )


def _cores(cores: dict[str, float]) -> str:
    ranked = sorted(cores.items(), key=lambda item: -item[1])
    return ", ".join(f"{name} {value:.2f}" for name, value in ranked) or "(run too short)"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds at 50% load")
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.add_argument("--bare-ceiling", metavar="TEMPORAL", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.smoke:
        options.orders, options.concurrency, options.duration = 20, 4, 2.0
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(sys.argv[1:] if argv is None else argv)
    configure_logging(os.environ.get("ORDERLY_LOG_LEVEL", "WARNING"), "console")
    if options.bare_ceiling:  # the child process of bare_ceiling_in_a_process
        rate = asyncio.run(bare_ceiling(options.bare_ceiling, options.orders, options.concurrency))
        print(rate, flush=True)
        # Without the interpreter's finalization, which the Temporal client's native threads
        # can abort (SIGABRT, sdk-python#300), as the CLI does.
        os._exit(0)
    return run_and_report(lambda: run(options), render_report, options.json)


if __name__ == "__main__":
    sys.exit(main())
