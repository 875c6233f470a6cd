"""What both pure-Python pipelines share: the accounts, Bybit's auth and subscribe requests over
the `websockets` library, the run loop with its flush clock, and the report they print.

A pipeline is a class with `on_frame(account_id, text)` (called for every frame received) and
`flush()` (commits what it holds and returns, per committed push row, its creationTime in ms).
The harness measures its CPU time, wall time, messages and the delay from each push's
creationTime to the commit that stored it, and prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import websockets

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))

from ingestor import config  # noqa: E402

SUBSCRIBE = json.dumps({"op": "subscribe", "args": ["position", "wallet"]})


class Pipeline(Protocol):
    def on_frame(self, account_id: str, text: str | bytes) -> None: ...

    def flush(self) -> list[int]: ...


def auth_request(api_key: str, api_secret: str) -> str:
    expires = int(time.time() * 1000) + 10_000
    signature = hmac.new(
        api_secret.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256
    ).hexdigest()
    return json.dumps({"op": "auth", "args": [api_key, expires, signature]})


def load_accounts(path: Path, env_file: Path) -> list[config.Account]:
    env = {}
    for line in env_file.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            name, value = line.split("=", 1)
            env[name] = value
    return list(config.load(path, env=env).accounts)


class Counter:
    def __init__(self) -> None:
        self.frames = 0


async def read_account(
    account: config.Account, pipeline: Pipeline, counter: Counter, stop: asyncio.Event
) -> None:
    """One connection: auth, subscribe, then every frame into the pipeline until stopped."""
    async with websockets.connect(
        account.ws_url, max_queue=None, compression=None, ping_interval=20
    ) as ws:
        await ws.send(auth_request(account.api_key.reveal(), account.api_secret.reveal()))
        await ws.send(SUBSCRIBE)
        on_frame, account_id = pipeline.on_frame, account.id
        try:
            while not stop.is_set():
                on_frame(account_id, await ws.recv())
                counter.frames += 1
        except websockets.ConnectionClosed:
            pass


async def flush_every(
    pipeline: Pipeline, interval: float, delays_ms: list[float], stop: asyncio.Event
) -> None:
    while not stop.is_set():
        await asyncio.sleep(interval)
        record_delays(pipeline, delays_ms)


def record_delays(pipeline: Pipeline, delays_ms: list[float]) -> None:
    created = pipeline.flush()
    committed_ms = time.time() * 1000
    delays_ms.extend(committed_ms - c for c in created)


async def run(pipeline: Pipeline, accounts: list[config.Account], args: argparse.Namespace) -> dict:
    stop = asyncio.Event()
    counter = Counter()
    delays_ms: list[float] = []
    readers = [asyncio.create_task(read_account(a, pipeline, counter, stop)) for a in accounts]
    flusher = asyncio.create_task(flush_every(pipeline, args.flush_interval, delays_ms, stop))
    # Warm up (connections, the first frames), then measure a window of steady state.
    await asyncio.sleep(args.warmup)
    failed = [t.exception() for t in readers if t.done() and t.exception()]
    if failed:
        raise SystemExit(f"{len(failed)} of {len(readers)} connections failed: {failed[0]!r}")
    frames0, delays0 = counter.frames, len(delays_ms)
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(args.seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    frames = counter.frames - frames0
    window = sorted(delays_ms[delays0:])
    stop.set()
    flusher.cancel()
    await asyncio.wait(readers, timeout=5)
    return {
        "messages": frames,
        "seconds": wall,
        "cpu_seconds": cpu,
        "delays_ms": quantiles(window),
        "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def quantiles(sorted_values: list[float]) -> dict[str, float | None]:
    def at(q: float) -> float | None:
        if not sorted_values:
            return None
        return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]

    return {"p50": at(0.50), "p99": at(0.99), "count": len(sorted_values)}


def main(make_pipeline: Callable[[Path], Pipeline], description: str) -> None:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--accounts", type=Path, required=True, help="the simulator's YAML")
    parser.add_argument("--store", type=Path, required=True, help="the database file")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--flush-interval", type=float, default=1.0)
    args = parser.parse_args()
    accounts = load_accounts(args.accounts, args.accounts.with_suffix(".env"))
    pipeline = make_pipeline(args.store)
    print(json.dumps(asyncio.run(run(pipeline, accounts, args))), flush=True)
