"""Firehose mode: pre-encoded pushes to every subscribed connection, as fast as it reads.

A capture benchmark must show that the exchange is not its bottleneck, so this mode does no
per-message work at all: each connection gets a ring of realistic `position` and `wallet`
pushes, encoded and framed once, and a task that writes the ring in a tight loop, waiting
only when the socket's buffer is full. Messages are counted when written to the connection's
buffer; the server-side count divided by wall time is the simulator's ceiling, reported with
the CPU time it cost.
"""

from __future__ import annotations

import asyncio
import struct
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from ingestor.sim import protocol as p
from ingestor.sim.market import INSTRUMENTS, Account, Market, Position
from ingestor.sim.server import Session, now_ms

RING = 64
#: Bytes buffered per connection before the pump waits for the socket.
HIGH_WATER = 1 << 20
DRAIN_POLL_S = 0.0005


@dataclass
class FirehoseStats:
    """Server-side totals of a firehose run."""

    connections: int
    messages: int
    bytes: int
    seconds: float
    cpu_seconds: float

    @property
    def msgs_per_s(self) -> float:
        """The sustained rate, from the server's own count and wall time."""
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """For JSON output."""
        return {
            "connections": self.connections,
            "messages": self.messages,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 6),
            "cpu_seconds": round(self.cpu_seconds, 6),
            "msgs_per_s": round(self.msgs_per_s, 1),
        }


class Firehose:
    """Starts a pump per subscribed connection and keeps the totals."""

    def __init__(self, market: Market, frames_per_connection: int | None) -> None:
        self._market = market
        self._limit = frames_per_connection
        self._stopped = False
        self._connections = 0
        self._messages = 0
        self._bytes = 0
        self._started: float | None = None
        self._cpu_started = 0.0
        self._last_sent = 0.0
        self._active = 0

    def on_subscribed(self, session: Session) -> None:
        """Start pumping on the first successful subscription of a connection."""
        if self._stopped or any(t.get_name() == "firehose" for t in session.tasks):
            return
        frames = self._ring(session)
        if not frames:
            return
        if self._started is None:
            self._started = time.perf_counter()
            self._cpu_started = time.process_time()
        self._connections += 1
        task = asyncio.create_task(self._pump(session, frames), name="firehose")
        session.tasks.add(task)

    def stop(self) -> None:
        """Stop every pump after its current frame."""
        self._stopped = True

    def stats(self) -> FirehoseStats:
        """Totals so far; the clock stops when the last pump ends."""
        if self._started is None:
            return FirehoseStats(0, 0, 0, 0.0, 0.0)
        end = time.perf_counter() if self._active else self._last_sent
        return FirehoseStats(
            connections=self._connections,
            messages=self._messages,
            bytes=self._bytes,
            seconds=end - self._started,
            cpu_seconds=time.process_time() - self._cpu_started,
        )

    def _ring(self, session: Session) -> list[bytes]:
        """Pushes for the session's account and topics, encoded once."""
        account = session.account
        assert account is not None
        topics = session.topics
        frames: list[bytes] = []
        created = now_ms()
        for n in range(RING):
            inst = INSTRUMENTS[n % len(INSTRUMENTS)]
            position_topic = next(
                (t for t in ("position", f"position.{inst.category}") if t in topics), None
            )
            if n % 4 == 3 and "wallet" in topics:
                element = p.wallet_element(self._market, account)
                frames.append(self._encode("wallet", created + n, element))
            elif position_topic:
                pos = self._position(account, n, created)
                element = p.position_push_element(pos, self._market.prices[inst.symbol])
                frames.append(self._encode(position_topic, created + n, element))
        return frames

    def _position(self, account: Account, n: int, created: int) -> Position:
        """A plausible open position that changes a little from frame to frame."""
        inst = INSTRUMENTS[n % len(INSTRUMENTS)]
        idx = account.slots(inst)[n % len(account.slots(inst))]
        price = self._market.prices[inst.symbol] + inst.tick * (n % 17)
        return Position(
            inst,
            idx,
            created_ms=created,
            side="Buy" if idx != 2 else "Sell",
            size=inst.qty_step * (1 + n),
            entry=price,
            updated_ms=created + n,
            seq=1_000_000 + n,
            ever_open=True,
        )

    @staticmethod
    def _encode(topic: str, created: int, element: dict[str, Any]) -> bytes:
        return orjson.dumps(p.envelope(str(uuid.uuid4()), topic, created, [element]))

    async def _pump(self, session: Session, frames: list[bytes]) -> None:
        """Write the ring round and round until stopped, the limit, or the client leaves.

        The ring is written as one pre-framed blob per round (a server's frames are not
        masked, so header + payload is a constant), which moves the per-message cost out of
        Python. Backpressure: above HIGH_WATER bytes buffered, wait until the socket takes
        them; every round yields to the loop so new connections and pings are served.
        """
        transport = session.request.transport
        if transport is None:
            return
        framed = [ws_frame(f) for f in frames]
        blob = b"".join(framed)
        limit = self._limit
        sent = 0
        self._active += 1
        try:
            while (
                not self._stopped and (limit is None or sent < limit) and not transport.is_closing()
            ):
                if limit is not None and limit - sent < len(framed):
                    part = framed[: limit - sent]
                    transport.write(b"".join(part))
                    self._count(len(part), sum(map(len, part)))
                    sent = limit
                else:
                    transport.write(blob)
                    self._count(len(framed), len(blob))
                    sent += len(framed)
                await asyncio.sleep(0)
                while transport.get_write_buffer_size() > HIGH_WATER and not transport.is_closing():
                    await asyncio.sleep(DRAIN_POLL_S)
        finally:
            self._active -= 1
            self._last_sent = time.perf_counter()

    def _count(self, messages: int, size: int) -> None:
        self._messages += messages
        self._bytes += size


def ws_frame(payload: bytes) -> bytes:
    """An unmasked, final text frame (RFC 6455 §5.2) around `payload`."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return header + payload
