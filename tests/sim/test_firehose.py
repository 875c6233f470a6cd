"""Firehose mode: every subscribed connection gets the pre-encoded pushes, all counted."""

from __future__ import annotations

import asyncio
import json

from ingestor.sim import Exchange
from tests.sim.helpers import auth, connect, request

FRAMES = 500


def test_firehose_sends_the_configured_count_of_valid_pushes() -> None:
    async def read(ex: Exchange, index: int) -> list[dict]:
        async with connect(ex.ws_url) as ws:
            await auth(ws, ex.accounts[index])
            answer = await request(ws, {"op": "subscribe", "args": ["position", "wallet"]})
            assert answer["success"]
            return [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(FRAMES)]

    async def main() -> None:
        async with Exchange(accounts=2, seed=1, firehose=True, firehose_frames=FRAMES) as ex:
            received = await asyncio.gather(read(ex, 0), read(ex, 1))
            stats = ex.firehose_stats()
        assert stats.connections == 2 and stats.messages == 2 * FRAMES
        assert stats.bytes > 0 and stats.msgs_per_s > 0
        for frames in received:
            assert {f["topic"] for f in frames} == {"position", "wallet"}
            assert all(isinstance(f["creationTime"], int) and f["data"] for f in frames)

    asyncio.run(main())
