"""Type stubs for the Rust extension `ingestor._core` (see rust/py)."""

from collections.abc import Iterable

import pyarrow as pa

__version__: str
DEFAULT_MAX_FRAME_BYTES: int

def decode(
    frames: Iterable[bytes | bytearray | str],
    *,
    account_id: str,
    received_at_us: int,
    keep_raw: bool = True,
    max_frame_bytes: int = ...,
) -> dict[str, pa.RecordBatch]: ...
def decode_rest(
    body: bytes,
    *,
    endpoint: str,
    account_id: str,
    received_at_us: int,
    keep_raw: bool = True,
) -> dict[str, pa.RecordBatch]:
    """One REST page into the tables `decode` returns, rows with `source = 'rest'`.

    `endpoint`: /v5/position/list, /v5/account/wallet-balance, /v5/execution/list,
    /v5/order/history or /v5/order/realtime (anything else raises ValueError).
    """

def schemas() -> dict[str, pa.Schema]: ...

class Collector:
    """Holds the private streams of many accounts; hands out decoded Arrow batches.

    Each account is a dict: id, ws_url, api_key, api_secret (required), rest_url (enables the
    REST resync and the ledger backfill), topics (default ["position", "wallet", "execution",
    "order"]), categories (default linear, inverse, option), account_types (default
    ["UNIFIED"]), open_positions (the store's, for the first resync) and ledger_complete_ms
    (up to when the store holds the ledger: where the first backfill starts; None reads
    `backfill_depth` seconds back).
    """

    def __init__(
        self,
        accounts: Iterable[dict[str, object]],
        *,
        batch_size: int = 10_000,
        flush_interval: float = 1.0,
        max_pending_rows: int = 1_000_000,
        max_pending_bytes: int = ...,
        ping_interval: float = 20.0,
        pong_timeout: float = 10.0,
        handshake_timeout: float = 10.0,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        stable_after: float = 30.0,
        connect_budget: int = 500,
        connect_window: float = 300.0,
        connect_burst: int = 25,
        rest_timeout: float = 10.0,
        rest_attempts: int = 3,
        rest_budget: int = 500,
        rest_window: float = 5.0,
        backfill_depth: float = 604_800.0,
        keep_raw: bool = True,
        max_frame_bytes: int = ...,
        ca_file: str | None = None,
        worker_threads: int = 1,
    ) -> None: ...
    def next_batches(self, timeout: float = 1.0) -> list[tuple[str, pa.RecordBatch]]: ...
    def add_account(self, account: dict[str, object]) -> None: ...
    def remove_account(self, account_id: str) -> bool: ...
    def stats(self) -> list[dict[str, object]]: ...
    def connect_queue(self) -> int: ...
    def undelivered_rows(self) -> int: ...
    def undelivered_bytes(self) -> int: ...
    def close(self) -> list[tuple[str, pa.RecordBatch]]: ...
