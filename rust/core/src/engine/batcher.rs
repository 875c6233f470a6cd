//! The collector's tables: one decoder shared by every connection, cut into batches by size
//! or age, queued for `next_batches`, with a bound on rows decoded but not yet taken.

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
    /// `undelivered() >= max_pending_rows`, kept up to date under the lock.
    full: AtomicBool,
}

struct Inner {
    decoder: Decoder,
    /// When the oldest row still in each table's builders arrived.
    oldest: [Option<Instant>; Table::ALL.len()],
    queue: VecDeque<(Table, RecordBatch)>,
    queued_rows: usize,
}

impl Inner {
    fn undelivered(&self) -> usize {
        let pending: usize = Table::ALL.iter().map(|&t| self.decoder.pending(t)).sum();
        pending + self.queued_rows
    }
}

impl Batcher {
    pub fn new(
        decoder: Decoder,
        batch_size: usize,
        flush_interval: Duration,
        max_pending_rows: usize,
    ) -> Self {
        Batcher {
            inner: Mutex::new(Inner {
                decoder,
                oldest: [None; Table::ALL.len()],
                queue: VecDeque::new(),
                queued_rows: 0,
            }),
            ready: Condvar::new(),
            room: Notify::new(),
            batch_size: batch_size.max(1),
            flush_interval,
            max_pending_rows,
            full: AtomicBool::new(false),
        }
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
        self.full.store(
            inner.undelivered() >= self.max_pending_rows,
            Ordering::Relaxed,
        );
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
            inner.queued_rows += batch.num_rows();
            inner.queue.push_back((table, batch));
        }
    }

    /// Cuts every table whose oldest row has waited `flush_interval`.
    pub fn flush_due(&self) {
        let mut inner = self.lock();
        let now = Instant::now();
        let mut cut_any = false;
        for (i, table) in Table::ALL.into_iter().enumerate() {
            if inner.oldest[i].is_some_and(|t| now.duration_since(t) >= self.flush_interval) {
                Self::cut(&mut inner, i, table);
                cut_any = true;
            }
        }
        drop(inner);
        if cut_any {
            self.ready.notify_all();
        }
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

    /// Whether undelivered rows have reached `max_pending_rows`, as of the last change (read
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
        self.full.store(
            inner.undelivered() >= self.max_pending_rows,
            Ordering::Relaxed,
        );
        drop(inner);
        self.room.notify_waiters();
        batches
    }
}
