"""What crosses between processes: Arrow IPC bytes for batches (no Python object per row),
small tuples for everything else."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.ipc as ipc

# Message kinds on the collectors -> writer queue.
BATCH = "batch"  # (BATCH, worker, table, ipc bytes)
DONE = "done"  # (DONE, worker): the collector handed over its last batches
END = "end"  # (END,): the supervisor says no collector will send again

# Message kinds on the -> supervisor stats queue.
COLLECTOR_STATS = "collector"  # (kind, worker, [account stats], connect queue, undelivered)
# (kind, rows written, last flush seconds, spool files, queue lag, meter.Readings or None)
WRITER_STATS = "writer"


def to_ipc(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def from_ipc(data: bytes) -> pa.RecordBatch:
    with ipc.open_stream(pa.py_buffer(data)) as reader:
        return reader.read_next_batch()
