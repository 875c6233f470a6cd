"""Firehose mode: realistic pushes to every subscribed connection, as fast as it reads (or at a
set rate per connection).

A capture benchmark must show that the exchange is not its bottleneck, so this mode does almost
no per-message work: each connection gets a ring of realistic `position` and `wallet` pushes,
encoded and framed once as a byte template, and a task that writes the ring in a tight loop,
waiting only when the socket's buffer is full. Each round fills in a fresh message id and the
current `creationTime` with one `%` on the whole ring (the frames keep their length, so their
WebSocket headers stay valid): a store that drops replayed pushes keeps them all, and the time
from a push's creation to its commit can be measured. Messages are counted when written to the
connection's buffer; the server-side count divided by wall time is the simulator's ceiling,
reported with the CPU time it cost.
"""

from __future__ import annotations

import asyncio
import struct
import time
from dataclasses import dataclass
from typing import Any

import orjson

from ingestor.sim import protocol as p
from ingestor.sim.market import INSTRUMENTS, Account, Market, Position
from ingestor.sim.server import Session, now_ms

RING = 64
#: Placeholders of a ring's template: the round (in each message id) and the creation time.
ROUND_DIGITS = 12
TIME_DIGITS = 13
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

    def __init__(
        self, market: Market, frames_per_connection: int | None, rate: float | None = None
    ) -> None:
        """rate: messages per second per connection; None writes as fast as clients read."""
        self._market = market
        self._limit = frames_per_connection
        self._rate = rate
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
        templates = [template(frame, self._connections, n) for n, frame in enumerate(frames)]
        task = asyncio.create_task(self._pump(session, templates), name="firehose")
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
                frames.append(self._encode("wallet", element))
            elif position_topic:
                pos = self._position(account, n, created)
                element = p.position_push_element(pos, self._market.prices[inst.symbol])
                frames.append(self._encode(position_topic, element))
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
            # Filled in by each round with its creation time, as a real push carries the
            # update that caused it: a ring built once with fixed updatedTimes sent rows that
            # every later checkpoint is newer than, which no exchange does (each was folded
            # into every checkpoint made since, the write path's slowest case).
            updated_ms=TIME_MARK,
            seq=1_000_000 + n,
            ever_open=True,
        )

    @staticmethod
    def _encode(topic: str, element: dict[str, Any]) -> bytes:
        # The id and creation time are placeholders that each round fills in.
        return orjson.dumps(p.envelope(ID_MARK, topic, TIME_MARK, [element]))

    async def _pump(self, session: Session, templates: list[bytes]) -> None:
        """Write the ring round and round until stopped, the limit, or the client leaves.

        Unpaced, the ring is written as one blob per round (a server's frames are not masked,
        so only the two placeholders change), which keeps the per-message cost out of Python.
        Paced, a slice of the ring is written every tick so the connection's average rate is
        `rate`. Backpressure: above HIGH_WATER bytes buffered, wait until the socket takes
        them; every write yields to the loop so new connections and pings are served.
        """
        transport = session.request.transport
        if transport is None:
            return
        per_write = len(templates)
        tick = 0.0
        if self._rate:
            # Slices of a few frames, at most ~20 writes a second per connection.
            per_write = max(1, min(len(templates), round(self._rate / 20)))
            tick = per_write / self._rate
        slices = [
            b"".join(templates[i : i + per_write]) for i in range(0, len(templates), per_write)
        ]
        sizes = [min(per_write, len(templates) - i) for i in range(0, len(templates), per_write)]
        limit = self._limit
        sent = rounds = 0
        started = time.perf_counter()
        self._active += 1
        try:
            while (
                not self._stopped and (limit is None or sent < limit) and not transport.is_closing()
            ):
                for piece, count in zip(slices, sizes, strict=True):
                    if limit is not None and sent + count > limit:
                        count = limit - sent
                        piece = b"".join(templates[:count]) if count else b""
                    if not count:
                        break
                    blob = piece % {b"r": b"%012x" % rounds, b"t": b"%d" % now_ms()}
                    transport.write(blob)
                    self._count(count, len(blob))
                    sent += count
                    if tick:
                        delay = started + sent / self._rate - time.perf_counter()
                        await asyncio.sleep(max(0.0, delay))
                    if self._stopped or transport.is_closing():
                        break
                rounds += 1
                await asyncio.sleep(0)
                while transport.get_write_buffer_size() > HIGH_WATER and not transport.is_closing():
                    await asyncio.sleep(DRAIN_POLL_S)
        finally:
            self._active -= 1
            self._last_sent = time.perf_counter()

    def _count(self, messages: int, size: int) -> None:
        self._messages += messages
        self._bytes += size


#: Stand-ins in the encoded frame for the parts a round fills in.
ID_MARK = "@firehose-id@"
TIME_MARK = 1_111_111_111_111


def template(frame: bytes, connection: int, index: int) -> bytes:
    """The framed push as a `%`-template: `%(r)b` the round, `%(t)b` the creation time (and
    a position's updatedTime).

    The id is `<round>-<connection>-<index>`, unique in the run; both placeholders are filled
    with fixed-width values, so the WebSocket header computed here stays right."""
    message_id = b"%%(r)b-%06x-%03x" % (connection, index)
    time_mark = b'"creationTime":%d' % TIME_MARK
    assert frame.count(time_mark) == 1, "the envelope carries one creationTime"
    payload = (
        frame.replace(b"%", b"%%")
        .replace(f'"{ID_MARK}"'.encode(), b'"' + message_id + b'"')
        .replace(time_mark, b'"creationTime":%(t)b')
        .replace(b'"updatedTime":"%d"' % TIME_MARK, b'"updatedTime":"%(t)b"')
    )
    sample = payload % {b"r": b"0" * ROUND_DIGITS, b"t": b"0" * TIME_DIGITS}
    header = ws_frame(sample)[: -len(sample)]
    return header.replace(b"%", b"%%") + payload


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
