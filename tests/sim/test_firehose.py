"""Firehose mode: every subscribed connection gets the pre-encoded pushes, all counted."""

from __future__ import annotations

import asyncio
import json
import time

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
        now_ms = time.time() * 1000
        for frames in received:
            assert {f["topic"] for f in frames} == {"position", "wallet"}
            assert all(isinstance(f["creationTime"], int) and f["data"] for f in frames)
            # Fresh pushes every round: a store that drops replays keeps them all, and the
            # creation time is when it was written (for latency), not when the ring was built.
            assert all(now_ms - 10_000 < f["creationTime"] <= now_ms for f in frames)
            # A position's updatedTime is its push's: each round's rows are newer.
            updated = [int(f["data"][0]["updatedTime"]) for f in frames if f["topic"] == "position"]
            created = [f["creationTime"] for f in frames if f["topic"] == "position"]
            assert updated == created
        ids = [f["id"] for frames in received for f in frames]
        assert len(set(ids)) == len(ids) == 2 * FRAMES

    asyncio.run(main())


def test_a_paced_firehose_keeps_to_its_rate() -> None:
    rate, frames = 200.0, 100

    async def main() -> float:
        async with (
            Exchange(
                accounts=1, seed=2, firehose=True, firehose_frames=frames, firehose_rate=rate
            ) as ex,
            connect(ex.ws_url) as ws,
        ):
            await auth(ws, ex.accounts[0])
            await request(ws, {"op": "subscribe", "args": ["position", "wallet"]})
            times = []
            for _ in range(frames):
                json.loads(await asyncio.wait_for(ws.recv(), 5))
                times.append(time.perf_counter())
        return times[-1] - times[0]

    # 100 frames at 200/s take about half a second; unpaced they take milliseconds.
    assert asyncio.run(main()) >= 0.8 * (frames - 10) / rate
