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
def schemas() -> dict[str, pa.Schema]: ...
