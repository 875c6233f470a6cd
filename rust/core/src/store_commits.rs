//! `store_commits`: the writer's record of its own commits, one row per table per flush it
//! committed (python/ingestor/service/writer.py writes it). The decoder never fills it; it is
//! declared here, beside the tables it describes, so `ingestor.schemas()` gives every table
//! the stores create from one place and the stores create, migrate, deduplicate and partition
//! it through the same generic path as the others. It is not one of the decoder's `tables!`:
//! that would give every collector's engine builders (and batches to cut) for rows it never
//! makes.

use crate::table;

table! {
    /// Builders of `store_commits` (the writer builds its rows in Python; only the schema is
    /// used).
    StoreCommitColumns = "store_commits" {
        /// When the rows became readable: the wall clock just after the store's write
        /// returned. Named `local_ts` like every table's own instant, so the Parquet tree
        /// partitions it by day as it does `rejects` and `connection_events`.
        local_ts: TimestampUs [required],
        /// The table whose rows the flush committed.
        table_name: Utf8 [required],
        /// Rows of that table committed now: after the store's dedup where the store tells
        /// it (a lake), else the rows handed to it.
        rows: Int64 [required],
        /// The flush's oldest and newest `local_ts` (when the collector received the frames):
        /// `local_ts - oldest_local_ts` is the longest any row of the flush waited.
        oldest_local_ts: TimestampUs [required],
        newest_local_ts: TimestampUs [required],
        /// The writer process, and its flush number since it started (1, 2, ...): the rows of
        /// one flush share both, and `(writer_pid, local_ts, table_name)` is the row's key.
        writer_pid: Int64 [required],
        flush_seq: Int64 [required],
        /// How long the store's write took, µs.
        write_us: Int64 [required],
    }
}

#[cfg(test)]
mod tests {
    use super::StoreCommitColumns;

    #[test]
    fn its_schema_names_the_commit_instant_local_ts() {
        let schema = StoreCommitColumns::schema();
        assert_eq!(StoreCommitColumns::NAME, "store_commits");
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names[..2], ["local_ts", "table_name"]);
        assert!(schema.fields().iter().all(|f| !f.is_nullable()));
    }
}
