"""Every fault kind: injected as configured, seen by a plain client, and counted."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.exceptions import ConnectionClosed

from ingestor.sim import FAULT_KINDS, Exchange, FaultConfig
from tests.sim.helpers import auth, connect, eventually, recv_json, request

ONLY_1 = frozenset({"sim-0001"})


async def subscribed(ex: Exchange, url: str, index: int = 0):  # type: ignore[no-untyped-def]
    ws = await connect(url)
    assert (await auth(ws, ex.accounts[index]))["success"]
    topics = ["position", "wallet", "execution", "order"]
    assert (await request(ws, {"op": "subscribe", "args": topics}))["success"]
    return ws


def test_counters_list_every_kind_even_when_zero() -> None:
    async def main() -> None:
        async with Exchange(accounts=1, market=False) as ex:
            assert set(ex.fault_counts()) == set(FAULT_KINDS)
            assert all(v == {} for v in ex.fault_counts().values())

    asyncio.run(main())


def test_drop_per_push_aborts_without_close_frame() -> None:
    async def main() -> None:
        faults = FaultConfig(accounts=ONLY_1, drop_per_push=1.0)
        async with Exchange(accounts=2, seed=3, market=False, trade_rate=20, faults=faults) as ex:
            ws = await subscribed(ex, ex.ws_url)
            other = await subscribed(ex, ex.ws_url, 1)
            await ex.advance(20)
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await recv_json(ws)
            assert closed.value.rcvd is None  # TCP cut, no close frame
            await recv_json(other)  # the other account is untouched
            await other.close()
            assert ex.fault_counts()["drop"] == {"sim-0001": 1}
            assert "sim-0001" not in ex.push_counts()

    asyncio.run(main())


def test_drop_per_second_and_manual_drop() -> None:
    async def main() -> None:
        faults = FaultConfig(accounts=ONLY_1, drop_per_s=20.0)
        async with Exchange(accounts=2, seed=3, market=False, faults=faults) as ex:
            ws = await subscribed(ex, ex.ws_url)
            with pytest.raises(ConnectionClosed):
                await recv_json(ws, timeout=10)
            assert ex.fault_counts()["drop"] == {"sim-0001": 1}
            other = await subscribed(ex, ex.ws_url, 1)
            assert ex.drop_connections("sim-0002") == 1
            with pytest.raises(ConnectionClosed):
                await recv_json(other)
            assert ex.fault_counts()["drop"] == {"sim-0001": 1, "sim-0002": 1}

    asyncio.run(main())


def test_refused_auth_only_for_configured_accounts() -> None:
    async def main() -> None:
        faults = FaultConfig(accounts=ONLY_1, refuse_auth=1.0)
        async with Exchange(accounts=2, seed=3, market=False, faults=faults) as ex:
            async with connect(ex.ws_url) as ws:
                answer = await auth(ws, ex.accounts[0])
                assert (answer["success"], answer["ret_msg"]) == (False, "Request not authorized")
                assert (await auth(ws, ex.accounts[1]))["success"] is True
            assert ex.fault_counts()["refuse_auth"] == {"sim-0001": 1}
            await ex.stop_market()
            async with connect(ex.ws_url) as ws:
                assert (await auth(ws, ex.accounts[0]))["success"] is True

    asyncio.run(main())


def test_broken_unknown_and_duplicate_frames_are_extra_and_counted() -> None:
    async def main() -> None:
        faults = FaultConfig(broken_frame_rate=0.3, unknown_topic_rate=0.3, duplicate_rate=0.3)
        async with Exchange(accounts=1, seed=5, market=False, trade_rate=20, faults=faults) as ex:
            ws = await subscribed(ex, ex.ws_url)
            await ex.advance(40)
            await ws.send(json.dumps({"req_id": "end", "op": "ping"}))
            broken = unknown = duplicates = 0
            # An order push and its execution push share their id, as on Bybit: a duplicate
            # is the same topic and id twice.
            ids: set[tuple[str, str]] = set()
            while True:
                raw = await asyncio.wait_for(ws.recv(), 5)
                try:
                    frame = json.loads(raw)
                except json.JSONDecodeError:
                    broken += 1
                    continue
                if frame.get("op") == "pong":
                    break
                if frame["topic"] == "sim.unknown":
                    unknown += 1
                elif (frame["topic"], frame["id"]) in ids:
                    duplicates += 1
                else:
                    ids.add((frame["topic"], frame["id"]))
            await ws.close()
            counts = ex.fault_counts()
            assert broken == counts["broken_frame"]["sim-0001"] > 0
            assert unknown == counts["unknown_topic"]["sim-0001"] > 0
            assert duplicates == counts["duplicate"]["sim-0001"] > 0
            assert len(ids) == sum(ex.push_counts()["sim-0001"].values())

    asyncio.run(main())


def test_ping_silence_makes_a_zombie_connection() -> None:
    async def main() -> None:
        faults = FaultConfig(ping_silence_after=0.05)
        async with Exchange(accounts=1, seed=5, market=False, trade_rate=20, faults=faults) as ex:
            ws = await subscribed(ex, ex.ws_url)
            await eventually(lambda: ex.fault_counts()["ping_silence"] == {"sim-0001": 1})
            await ex.advance(20)
            await ws.send(json.dumps({"req_id": "z", "op": "ping"}))
            with pytest.raises(TimeoutError):
                await recv_json(ws, timeout=0.3)
            waiter = await ws.ping()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(waiter, 0.3)
            await ws.close()
            assert "sim-0001" not in ex.push_counts()

    asyncio.run(main())


def test_slow_send_delays_frames_and_counts_them() -> None:
    async def main() -> None:
        faults = FaultConfig(slow_send_s=0.02)
        async with Exchange(accounts=1, seed=5, market=False, faults=faults) as ex:
            async with connect(ex.ws_url) as ws:
                await auth(ws, ex.accounts[0])
                for n in range(3):
                    assert (await request(ws, {"req_id": str(n), "op": "ping"}))["op"] == "pong"
            # The auth answer is written after auth succeeded, so it is delayed too.
            assert ex.fault_counts()["slow_send"] == {"sim-0001": 4}

    asyncio.run(main())
