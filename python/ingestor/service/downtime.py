"""The service's own downtime, in the record.

A service stopped cleanly leaves, per account, a `disconnected` event (the engine's "closed by
client"), and the `gaps` view shows the window from it to the next run's `subscribed`. A
service killed (SIGKILL, OOM, a crash, the box losing power) writes nothing: its downtime was
invisible. So every start asks the store, per account of the run, for the latest instant it
holds; unless that is a clean stop, the start records a `disconnected` event at that instant
(`queries.DOWNTIME_REASON`), committed before any new row, and the run's first `subscribed`
closes the gap it opens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from ingestor import queries, sinks
from ingestor.decode import schemas

log = logging.getLogger(__name__)

#: The reason of the `disconnected` event the engine writes when its collector closes with the
#: connection up (rust/core/src/engine/session.rs, `Session::close`).
CLEAN_STOP_REASON = "closed by client"

#: Last records that need no downtime record after them: a clean stop, or a downtime record
#: already made by a start that was itself killed before anything new was committed.
CLOSED_REASONS = frozenset({CLEAN_STOP_REASON, queries.DOWNTIME_REASON})

#: How long a store locked by another process (a writer of the previous run still dying, an
#: analyst's read-write connection) is tried again before the start goes on without the record.
LOCK_WAIT_S = 2.0


def downtime_events(
    kind: str, path: str | Path, account_ids: Sequence[str], now_us: int
) -> pa.RecordBatch | None:
    """`connection_events` rows recording the downtime before this start, one `disconnected`
    per account of `account_ids` whose latest record in the store is not a clean stop, at
    that record's `local_ts` (never later than `now_us`, the start's instant).

    None when there is nothing to record: the store does not exist yet, no such account is in
    it, or the store cannot be read (logged; the start must never fail for this)."""
    try:
        if not sinks.store_exists(kind, path):
            return None
        last = _last_records(kind, path)
    except Exception as e:  # any store, any fault: the capture matters more than this record
        log.warning("could not read the last records from %s: %s; no downtime recorded", path, e)
        return None
    rows = []
    for account in dict.fromkeys(account_ids):  # in order, once each
        found = last.get(account)
        if found is None:
            continue  # never seen: nothing of it is missing
        last_us, disconnected_us, reason = found
        if disconnected_us is not None and disconnected_us >= last_us and reason in CLOSED_REASONS:
            continue
        if last_us > now_us:
            # The store holds a later instant than now (the clock stepped back, or another
            # box's clock wrote it): at `last_us` the record would sort after this run's
            # `subscribed` and its gap would never close.
            log.warning(
                "account %s: the store's last record is %.3f s in the future; "
                "its downtime is recorded from now",
                account,
                (last_us - now_us) / 1e6,
            )
            last_us = now_us
        rows.append(
            {
                "account_id": account,
                "local_ts": last_us,
                "event": "disconnected",
                "reason": queries.DOWNTIME_REASON,
                "backoff_ms": None,
                "conn_id": None,
            }
        )
    if not rows:
        return None
    return pa.RecordBatch.from_pylist(rows, schema=schemas()["connection_events"])


def _last_records(kind: str, path: str | Path) -> dict[str, tuple[int, int | None, str | None]]:
    """{account: (latest µs, latest `disconnected` µs, its reason)}; raises what the store
    raises once a lock has been waited for."""
    import duckdb

    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            with sinks.open_reader(kind, path) as con:
                present = {table for (table,) in con.execute(queries.RELATIONS).fetchall()}
                rows = con.execute(queries.last_records(present)).fetchall()
            break
        except duckdb.Error as e:
            if "lock" in str(e).lower() and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            raise
    return {account: (last, disconnected, reason) for account, last, disconnected, reason in rows}
