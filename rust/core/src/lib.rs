//! The pure-Rust core of `ingestor`: Bybit V5 private-stream frames decoded straight into
//! Apache Arrow record batches, with no Python in sight (the `ingestor._core` extension is a
//! thin binding over this crate).

pub mod columns;
pub mod decimal;
pub mod decoder;
pub mod engine;
pub mod events;
pub mod execution;
pub mod fields;
pub mod flat;
pub mod ledger_gap;
pub mod order;
pub mod position;
pub mod protocol;
pub mod reject;
pub mod row;
pub mod sign;
pub mod store_commits;
pub mod wallet;

pub use decoder::{
    Decoder, DecoderConfig, FrameOutcome, RestEndpoint, RestError, RestPage, Table,
    DEFAULT_MAX_FRAME_BYTES,
};
pub use protocol::{ControlFrame, PushKind};
pub use row::Source;
