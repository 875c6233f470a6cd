//! The collector's tables: one decoder shared by every connection, cut into batches by size
//! or age, queued for `next_batches`, with a bound on rows and on bytes decoded but not yet
//! taken.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use tokio::sync::Notify;

use crate::decoder::{Decoder, Table};

pub struct Batcher {
    inner: Mutex<Inner>,
    /// Wakes a `next_batches` caller (a plain thread, not a task: Python waits here with the
    /// GIL released).
    ready: Condvar,
    /// Wakes connections paused for want of room.
    room: Notify,
    batch_size: usize,
    flush_interval: Duration,
    max_pending_rows: usize,
    /// The same bound in bytes: rows with raw JSON are 1-3 KiB, without it ~0.5, so a bound
    /// in rows alone let a collector's memory swing 6x with the stream.
    max_pending_bytes: usize,
    /// Either bound reached, kept up to date under the lock.
    full: AtomicBool,
}

struct Inner {
    decoder: Decoder,
    /// When the oldest row still in each table's builders arrived.
    oldest: [Option<Instant>; Table::ALL.len()],
    queue: VecDeque<(Table, RecordBatch)>,
    queued_rows: usize,
    /// Arrow memory of the queued batches.
    queued_bytes: usize,
    /// Per table, the bytes a row took in its last cut batch: what the rows still in the
    /// builders are counted at (asking every builder its size on every frame would cost more
    /// than the estimate is worth).
    row_bytes: [usize; Table::ALL.len()],
}

impl Inner {
    fn undelivered(&self) -> usize {
        let pending: usize = Table::ALL.iter().map(|&t| self.decoder.pending(t)).sum();
        pending + self.queued_rows
    }

    fn undelivered_bytes(&self) -> usize {
        let pending: usize = Table::ALL
            .iter()
            .zip(self.row_bytes)
            .map(|(&t, bytes)| self.decoder.pending(t) * bytes)
            .sum();
        pending + self.queued_bytes
    }
}

impl Batcher {
    pub fn new(
        decoder: Decoder,
        batch_size: usize,
        flush_interval: Duration,
        max_pending_rows: usize,
        max_pending_bytes: usize,
    ) -> Self {
        Batcher {
            inner: Mutex::new(Inner {
                decoder,
                oldest: [None; Table::ALL.len()],
                queue: VecDeque::new(),
                queued_rows: 0,
                queued_bytes: 0,
                row_bytes: [0; Table::ALL.len()],
            }),
            ready: Condvar::new(),
            room: Notify::new(),
            batch_size: batch_size.max(1),
            flush_interval,
            max_pending_rows,
            max_pending_bytes,
            full: AtomicBool::new(false),
        }
    }

    fn update_full(&self, inner: &Inner) {
        let full = inner.undelivered() >= self.max_pending_rows
            || inner.undelivered_bytes() >= self.max_pending_bytes;
        self.full.store(full, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves builders that are still whole
        // (rows are validated before any column is touched), so the data stays usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the shared decoder, then cuts every table that reached `batch_size`.
    pub fn with_decoder<R>(&self, f: impl FnOnce(&mut Decoder) -> R) -> R {
        let mut inner = self.lock();
        let result = f(&mut inner.decoder);
        // The clock is read only when a table gets its first row since its last cut.
        let mut now = None;
        let mut cut_any = false;
        for (i, table) in Table::ALL.into_iter().enumerate() {
            let pending = inner.decoder.pending(table);
            if pending == 0 {
                continue;
            }
            if inner.oldest[i].is_none() {
                inner.oldest[i] = Some(*now.get_or_insert_with(Instant::now));
            }
            if pending >= self.batch_size {
                Self::cut(&mut inner, i, table);
                cut_any = true;
            }
        }
        self.update_full(&inner);
        drop(inner);
        if cut_any {
            self.ready.notify_all();
        }
        result
    }

    fn cut(inner: &mut Inner, index: usize, table: Table) {
        let batch = inner.decoder.cut(table);
        inner.oldest[index] = None;
        if batch.num_rows() > 0 {
            let bytes = batch.get_array_memory_size();
            inner.row_bytes[index] = bytes.div_ceil(batch.num_rows());
            inner.queued_rows += batch.num_rows();
            inner.queued_bytes += bytes;
            inner.queue.push_back((table, batch));
        }
    }

    /// Cuts every table whose oldest row has waited `flush_interval`; returns when the next
    /// table is due (None: every table is empty). A table that gets its first row after this
    /// call is due a whole `flush_interval` later.
    pub fn flush_due(&self) -> Option<Instant> {
        let mut inner = self.lock();
        let now = Instant::now();
        let mut cut_any = false;
        let mut next: Option<Instant> = None;
        for (i, table) in Table::ALL.into_iter().enumerate() {
            let Some(oldest) = inner.oldest[i] else {
                continue;
            };
            let due = oldest + self.flush_interval;
            if due <= now {
                Self::cut(&mut inner, i, table);
                cut_any = true;
            } else {
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        drop(inner);
        if cut_any {
            self.ready.notify_all();
        }
        next
    }

    /// Cuts everything now (on close).
    pub fn flush_all(&self) {
        let mut inner = self.lock();
        for (i, table) in Table::ALL.into_iter().enumerate() {
            Self::cut(&mut inner, i, table);
        }
        drop(inner);
        self.ready.notify_all();
    }

    /// Decoded rows not yet handed out.
    pub fn undelivered(&self) -> usize {
        self.lock().undelivered()
    }

    /// Bytes of decoded rows not yet handed out (the builders' rows estimated, see
    /// `Inner::row_bytes`).
    pub fn undelivered_bytes(&self) -> usize {
        self.lock().undelivered_bytes()
    }

    /// Whether undelivered rows have reached either bound, as of the last change (read
    /// before every frame, so without the lock).
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// Waits until there is room for more rows.
    pub async fn wait_for_room(&self) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.is_full() {
                return;
            }
            notified.await;
        }
    }

    /// Finished batches, waiting up to `timeout` for the first one.
    pub fn next_batches(&self, timeout: Duration) -> Vec<(Table, RecordBatch)> {
        let deadline = Instant::now() + timeout;
        let mut inner = self.lock();
        while inner.queue.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Vec::new();
            }
            inner = self
                .ready
                .wait_timeout(inner, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        let batches: Vec<_> = inner.queue.drain(..).collect();
        inner.queued_rows = 0;
        inner.queued_bytes = 0;
        self.update_full(&inner);
        drop(inner);
        self.room.notify_waiters();
        batches
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::DecoderConfig;

    const PUSH: &str = include_str!("../../../../tests/fixtures/position_push.json");

    fn batcher(max_rows: usize, max_bytes: usize) -> Batcher {
        let decoder = Decoder::new(DecoderConfig::default());
        Batcher::new(decoder, 10, Duration::from_secs(60), max_rows, max_bytes)
    }

    fn push(batcher: &Batcher, frames: usize) {
        for i in 0..frames {
            batcher.with_decoder(|d| d.decode_frame("a", PUSH.as_bytes(), i as i64));
        }
    }

    #[test]
    fn undelivered_bytes_stop_the_reading_as_rows_do() {
        let probe = batcher(usize::MAX, usize::MAX);
        push(&probe, 10); // one cut batch of 10 rows, with raw JSON
        let batch_bytes = probe.undelivered_bytes();
        assert!(batch_bytes > 10 * PUSH.len(), "{batch_bytes}");
        // Rows alone would never fill it: only the bytes can.
        let bound = 3 * batch_bytes;
        let b = batcher(usize::MAX, bound);
        push(&b, 10);
        assert!(!b.is_full());
        push(&b, 5);
        // Rows still in the builders count at the last batch's bytes per row.
        let half = b.undelivered_bytes() - batch_bytes;
        assert!(
            half >= batch_bytes / 2 - 10 && half <= batch_bytes / 2 + 10,
            "{half}"
        );
        while !b.is_full() {
            push(&b, 1);
        }
        assert!(b.undelivered_bytes() >= bound);
        assert!(!b.next_batches(Duration::ZERO).is_empty());
        assert!(!b.is_full(), "taking the batches makes room");
        assert!(b.undelivered_bytes() < bound);
    }

    #[test]
    fn the_row_bound_still_holds() {
        let b = batcher(25, usize::MAX);
        push(&b, 24);
        assert!(!b.is_full());
        push(&b, 1);
        assert!(b.is_full());
        assert_eq!(b.undelivered(), 25);
    }
}
