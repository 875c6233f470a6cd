"""What the writer measures of the batches it commits, with Arrow compute on whole columns
(no Python work per row): rows per account and table, the exchange→arrival lag of every push,
the newest arrival per account and table, gaps opened and closed (from `connection_events`),
and how long each flush took. The supervisor gets the changes once a second (`take`)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

#: Upper bounds (seconds) of the exchange→arrival lag buckets; the last bucket is +Inf.
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
#: Upper bounds (seconds) of the writer's flush duration buckets.
FLUSH_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Upper bounds (seconds) of the creation→commit delay buckets: fine around one flush interval,
#: where most pushes land.
COMMIT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2,
                  1.3, 1.5, 1.75, 2.0, 2.5, 3.0, 5.0, 10.0, 30.0)  # fmt: skip
_COMMIT_BOUNDS_US = [round(b * 1_000_000) for b in COMMIT_BUCKETS]
#: Tables whose rows are pushes with the envelope's `creationTime` (`creation_ts`).
PUSH_TABLES = frozenset(
    {"position_snapshots", "wallet_snapshots", "execution_events", "order_events"}
)
TAKE_EVERY_S = 1.0

_LAG_BOUNDS_US = [round(b * 1_000_000) for b in LAG_BUCKETS]


@dataclass
class Histogram:
    """Bucket counts (not cumulative; the last is +Inf) and the sum of what was observed."""

    counts: list[int]
    total: float = 0.0

    @classmethod
    def empty(cls, bounds: tuple[float, ...]) -> Histogram:
        return cls([0] * (len(bounds) + 1))

    def add(self, other: Histogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.total += other.total


@dataclass
class Readings:
    """Changes since the last `take`; everything in it is small and picklable."""

    #: (account, table) -> rows handed to a flush that completed (committed or spooled).
    rows: Counter = field(default_factory=Counter)
    #: (account, table) -> lag of each push (its first row), exchange creation → arrival.
    lag: dict[tuple[str, str], Histogram] = field(default_factory=dict)
    #: (account, table) -> newest `local_ts` (µs since the epoch) of a pushed row.
    last_arrival_us: dict[tuple[str, str], int] = field(default_factory=dict)
    #: account -> True while a gap is open (disconnected after subscribed), False once closed.
    gap_open: dict[str, bool] = field(default_factory=dict)
    #: account -> gaps opened.
    gaps: Counter = field(default_factory=Counter)
    flush: Histogram = field(default_factory=lambda: Histogram.empty(FLUSH_BUCKETS))
    #: Per push, the exchange's creationTime to the commit that stored it (the whole box).
    commit_delay: Histogram = field(default_factory=lambda: Histogram.empty(COMMIT_BUCKETS))
    flushes: int = 0
    committed: int = 0


def _bucket_index(values: pa.Array, bounds: list[int]) -> pa.Array:
    """Per value, the first bucket whose upper bound it does not exceed (len(bounds): +Inf)."""
    index = pa.array([0] * len(values), pa.int8()) if len(values) else pa.array([], pa.int8())
    for bound in bounds:
        index = pc.add(index, pc.cast(pc.greater(values, bound), pa.int8()))
    return index


class Meter:
    def __init__(self) -> None:
        self.readings = Readings()
        #: Rows waiting in the writer, by (account, table); they count once their flush is done.
        self._pending: Counter = Counter()
        #: Accounts subscribed at least once, and whose gap is open (for `connection_events`).
        self._subscribed: set[str] = set()
        self._open: set[str] = set()
        self._next_take = 0.0
        #: creation_ts (µs) of each push waiting for a commit.
        self._uncommitted: list[pa.Array] = []

    def batch(self, table: str, batch: pa.RecordBatch) -> None:
        """Measures a batch as it reaches the writer."""
        if not batch.num_rows:
            return
        counts = pc.value_counts(batch.column("account_id"))
        for item in counts.to_pylist():
            self._pending[(item["values"], table)] += item["counts"]
        if table in PUSH_TABLES:
            self._pushes(table, batch)
        elif table == "connection_events":
            self._events(batch)

    def _pushes(self, table: str, batch: pa.RecordBatch) -> None:
        ws = batch.filter(pc.equal(batch.column("source"), "ws"))
        if not ws.num_rows:
            return
        accounts, messages = ws.column("account_id"), ws.column("message_id")
        # A push of n elements is n rows: its lag counts once, at its first row.
        if ws.num_rows > 1:
            same = pc.and_kleene(
                pc.equal(accounts[1:], accounts[:-1]), pc.equal(messages[1:], messages[:-1])
            )
            first = pa.concat_arrays([pa.array([True]), pc.invert(pc.fill_null(same, False))])
            ws = ws.filter(first)
        local = pc.cast(ws.column("local_ts"), pa.int64())
        created = pc.cast(ws.column("creation_ts"), pa.int64())
        self._uncommitted.append(created)
        lag_us = pc.subtract(local, created)
        measured = pa.table(
            {
                "account_id": ws.column("account_id"),
                "bucket": _bucket_index(lag_us, _LAG_BOUNDS_US),
                "lag_us": lag_us,
                "local_us": local,
            }
        ).filter(pc.is_valid(lag_us))
        grouped = measured.group_by(["account_id", "bucket"]).aggregate(
            [("lag_us", "count"), ("lag_us", "sum"), ("local_us", "max")]
        )
        for row in grouped.to_pylist():
            key = (row["account_id"], table)
            histogram = self.readings.lag.get(key)
            if histogram is None:
                histogram = self.readings.lag[key] = Histogram.empty(LAG_BUCKETS)
            histogram.counts[row["bucket"]] += row["lag_us_count"]
            histogram.total += row["lag_us_sum"] / 1_000_000
            newest = row["local_us_max"]
            if newest > self.readings.last_arrival_us.get(key, 0):
                self.readings.last_arrival_us[key] = newest

    def _events(self, batch: pa.RecordBatch) -> None:
        # A few rows per reconnect: a plain loop is cheap here. Same rule as the `gaps` view:
        # a gap opens at the first `disconnected` after a `subscribed`, closes at the next.
        for account, event in zip(
            batch.column("account_id").to_pylist(), batch.column("event").to_pylist(), strict=True
        ):
            if event == "subscribed":
                self._subscribed.add(account)
                if account in self._open:
                    self._open.discard(account)
                    self.readings.gap_open[account] = False
            elif (
                event == "disconnected"
                and account in self._subscribed
                and account not in self._open
            ):
                self._open.add(account)
                self.readings.gaps[account] += 1
                self.readings.gap_open[account] = True

    def flushed(self, seconds: float, committed: int) -> None:
        """A flush of everything pending completed in `seconds`, committing `committed` rows."""
        self.readings.rows.update(self._pending)
        self._pending.clear()
        bucket = next((i for i, b in enumerate(FLUSH_BUCKETS) if seconds <= b), len(FLUSH_BUCKETS))
        self.readings.flush.counts[bucket] += 1
        self.readings.flush.total += seconds
        self.readings.flushes += 1
        self.readings.committed += committed
        if committed and self._uncommitted:
            # Spooled pushes (a reader held the file) wait here for the commit that drains them.
            self._commit_delays(pa.chunked_array(self._uncommitted, pa.int64()))
            self._uncommitted = []

    def _commit_delays(self, created_us: pa.ChunkedArray) -> None:
        delay_us = pc.subtract(round(time.time() * 1_000_000), created_us.combine_chunks())
        delay_us = delay_us.filter(pc.is_valid(delay_us))
        if not len(delay_us):
            return
        buckets = pc.value_counts(_bucket_index(delay_us, _COMMIT_BOUNDS_US))
        histogram = self.readings.commit_delay
        for item in buckets.to_pylist():
            histogram.counts[item["values"]] += item["counts"]
        histogram.total += pc.sum(delay_us).as_py() / 1_000_000

    def take(self, force: bool = False) -> Readings | None:
        """The changes since the last take, at most once a second (unless `force`)."""
        now = time.monotonic()
        if not force and now < self._next_take:
            return None
        self._next_take = now + TAKE_EVERY_S
        readings, self.readings = self.readings, Readings()
        return readings


@dataclass
class Totals:
    """The running sums of every `Readings` (kept by the supervisor)."""

    rows: Counter = field(default_factory=Counter)
    lag: dict[tuple[str, str], Histogram] = field(default_factory=dict)
    last_arrival_us: dict[tuple[str, str], int] = field(default_factory=dict)
    gap_open: dict[str, bool] = field(default_factory=dict)
    gaps: Counter = field(default_factory=Counter)
    flush: Histogram = field(default_factory=lambda: Histogram.empty(FLUSH_BUCKETS))
    commit_delay: Histogram = field(default_factory=lambda: Histogram.empty(COMMIT_BUCKETS))
    flushes: int = 0
    committed: int = 0

    def add(self, readings: Readings) -> None:
        self.rows.update(readings.rows)
        for key, histogram in readings.lag.items():
            self.lag.setdefault(key, Histogram.empty(LAG_BUCKETS)).add(histogram)
        for key, us in readings.last_arrival_us.items():
            if us > self.last_arrival_us.get(key, 0):
                self.last_arrival_us[key] = us
        self.gap_open.update(readings.gap_open)
        self.gaps.update(readings.gaps)
        self.flush.add(readings.flush)
        self.commit_delay.add(readings.commit_delay)
        self.flushes += readings.flushes
        self.committed += readings.committed
