"""Helpers for the simulator's tests: a signed WebSocket session and signed REST calls.

These helpers sign requests the way Bybit documents it, written out here rather than
imported from the simulator, so the tests check the simulator against the spec and not
against itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import websockets

from ingestor.sim import Account

TIMEOUT = 5.0


def now_ms() -> int:
    return int(time.time() * 1000)


def ws_sign(secret: str, expires: int) -> str:
    return hmac.new(secret.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256).hexdigest()


async def request(ws: websockets.ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
    """Send one op and return the next frame (answers come in order on a quiet connection)."""
    await ws.send(json.dumps(message))
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


async def auth(
    ws: websockets.ClientConnection, account: Account, *, secret: str | None = None
) -> dict[str, Any]:
    expires = now_ms() + 1000
    signature = ws_sign(secret or account.api_secret, expires)
    return await request(
        ws, {"req_id": "auth-1", "op": "auth", "args": [account.api_key, expires, signature]}
    )


async def recv_json(ws: websockets.ClientConnection, timeout: float = TIMEOUT) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(
    ws: websockets.ClientConnection,
    predicate: Callable[[dict[str, Any]], bool],
    timeout: float = TIMEOUT,
) -> dict[str, Any]:
    """The first JSON frame matching `predicate`, skipping others."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        frame = await recv_json(ws, max(0.01, deadline - loop.time()))
        if predicate(frame):
            return frame


async def rest_get(
    session: aiohttp.ClientSession,
    base: str,
    path: str,
    query: str,
    account: Account,
    *,
    secret: str | None = None,
    timestamp: int | None = None,
    recv_window: str = "5000",
) -> tuple[dict[str, Any], dict[str, str]]:
    """A signed GET; returns the JSON answer and the response headers."""
    ts = str(timestamp if timestamp is not None else now_ms())
    payload = f"{ts}{account.api_key}{recv_window}{query}"
    sign = hmac.new((secret or account.api_secret).encode(), payload.encode(), hashlib.sha256)
    headers = {
        "X-BAPI-API-KEY": account.api_key,
        "X-BAPI-TIMESTAMP": ts,
        "X-BAPI-RECV-WINDOW": recv_window,
        "X-BAPI-SIGN": sign.hexdigest(),
    }
    url = f"{base}{path}?{query}" if query else f"{base}{path}"
    async with session.get(url, headers=headers) as response:
        return await response.json(), dict(response.headers)


async def eventually(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll until `condition()` holds; fail the test after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def connect(url: str, **kwargs: Any) -> websockets.connect:
    """A plain `websockets` client that buffers without limit.

    With the library's default `max_queue=16`, a test that leaves pushes unread stops the
    client reading its socket, so it never sees the server's close frame and waits out its
    10 s close timeout on exit.
    """
    kwargs.setdefault("max_queue", None)
    return websockets.connect(url, **kwargs)
