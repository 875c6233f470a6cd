"""What crosses between processes: Arrow IPC bytes for batches (no Python object per row),
small tuples for everything else. A batch is a pickled header followed by its payload sent
raw (`send_bytes`): the supervisor passes the payload on without unpickling or pickling it
again (two copies of ~20 MB a batch under the firehose, each holding the GIL the supervisor's
relay and its sender thread share)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.ipc as ipc

# Message kinds on a collector's pipe to the supervisor.
BATCH = "batch"  # (BATCH, worker, table, rows), then the IPC payload
DONE = "done"  # (DONE, worker): the collector handed over its last batches
COLLECTOR_STATS = "collector"  # (kind, worker, [account stats], connect queue, undelivered)

# On the supervisor's pipe to the writer: (BATCH, seq, table), then the payload; seq counting up
# from 1 for the supervisor's life (a restarted writer gets the unacknowledged ones again,
# with the same numbers), and:
END = "end"  # (END,): no collector will send again

# On the writer's pipe to the supervisor.
ACK = "ack"  # (ACK, seq): every batch up to seq is committed, or spooled on disk
# (kind, rows written, last flush seconds, spool files, pending rows, meter.Readings or None)
WRITER_STATS = "writer"
# (kind, healthy, reason, {fault kind: failures}): sent when the store's health changes
STORE_HEALTH = "store"


def to_ipc(batch: pa.RecordBatch) -> pa.Buffer:
    """The batch as an Arrow IPC stream, in a buffer `send_bytes` takes as it is."""
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue()


def from_ipc(data: bytes | pa.Buffer) -> pa.RecordBatch:
    with ipc.open_stream(pa.py_buffer(data)) as reader:
        return reader.read_next_batch()
