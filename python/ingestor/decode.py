"""Bybit V5 private-stream frames to Arrow record batches, decoded in the Rust core."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import pyarrow as pa

from ingestor import _core

#: The tables `decode` fills, in the order the stores create them.
TABLES: tuple[str, ...] = (
    "position_snapshots",
    "wallet_snapshots",
    "execution_events",
    "order_events",
    "rejects",
)

#: Frames longer than this are rejected unread unless `max_frame_bytes` says otherwise.
DEFAULT_MAX_FRAME_BYTES: int = _core.DEFAULT_MAX_FRAME_BYTES


def epoch_us(instant: datetime) -> int:
    """Microseconds since the Unix epoch of a timezone-aware instant."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(
            "received_at must be timezone-aware (for example datetime.now(UTC)); "
            "a naive datetime has no defined instant"
        )
    delta = instant - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def decode(
    frames: Iterable[bytes | str],
    *,
    account_id: str,
    received_at: datetime | None = None,
    keep_raw: bool = True,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
) -> dict[str, pa.RecordBatch]:
    """Decode raw private-stream frames of one account into Arrow record batches.

    Returns exactly the keys of `TABLES` (`position_snapshots`, `wallet_snapshots`,
    `execution_events`, `order_events` and `rejects`), each a `pyarrow.RecordBatch` (empty
    when nothing matched). Control frames (auth, subscribe,
    pong answers) produce no rows. A frame or element that cannot be decoded exactly becomes
    a row of `rejects` with its reason; it never raises and never disturbs the other frames.

    `received_at` (default: now) is stored as every row's `local_ts`; `keep_raw=False`
    leaves `raw_json` empty.
    """
    if not account_id:
        raise ValueError("account_id must be a non-empty string")
    if max_frame_bytes <= 0:
        raise ValueError("max_frame_bytes must be positive")
    local_us = epoch_us(received_at if received_at is not None else datetime.now(UTC))
    return _core.decode(
        frames,
        account_id=account_id,
        received_at_us=local_us,
        keep_raw=keep_raw,
        max_frame_bytes=max_frame_bytes,
    )


def schemas() -> dict[str, pa.Schema]:
    """The Arrow schema of every table, as the Rust core defines it."""
    return _core.schemas()
