//! `ingestor._core`: Python bindings over `ingestor-core`. No logic lives here beyond turning
//! Python arguments into core calls and core results into pyarrow objects.

mod collector;

use std::cell::Cell;

use arrow_pyarrow::ToPyArrow;
use ingestor_core::store_commits::StoreCommitColumns;
use ingestor_core::{Decoder, DecoderConfig, RestEndpoint, Table, DEFAULT_MAX_FRAME_BYTES};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyString};

/// Every batch's buffers are allocated here, handed to pyarrow, and freed when Python is done
/// with them. glibc gives large freed blocks back to the kernel at once, so each batch was
/// written into freshly mapped pages: page faults and munmap were a quarter of a collector's
/// CPU under the firehose. mimalloc keeps freed memory for the next batch
/// (`make bench-engine`'s firehose: 2.71-2.85 -> 2.2 µs CPU a message; 1.76 with the engine
/// changes that came after and the collector's default batch size).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Decodes frames of one account into `{table name: pyarrow.RecordBatch}`.
///
/// Batches cross into pyarrow through the Arrow C Data Interface: no copy, no Python object
/// per row.
#[pyfunction]
#[pyo3(signature = (frames, *, account_id, received_at_us, keep_raw = true, max_frame_bytes = DEFAULT_MAX_FRAME_BYTES))]
fn decode<'py>(
    py: Python<'py>,
    frames: &Bound<'py, PyAny>,
    account_id: &str,
    received_at_us: i64,
    keep_raw: bool,
    max_frame_bytes: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let config = DecoderConfig {
        keep_raw,
        max_frame_bytes,
    };
    // The last call's decoder, for its builders' room: a caller decoding chunk after chunk
    // then never grows a buffer (each growth copies all so far). Taken, not borrowed, so a
    // `frames` iterator that calls `decode` itself gets a fresh one; a call that fails drops
    // it with its partial rows.
    let mut decoder = LAST_DECODER
        .with(Cell::take)
        .filter(|d| *d.config() == config)
        .unwrap_or_else(|| Decoder::new(config));
    for item in frames.try_iter()? {
        let item = item?;
        if let Ok(bytes) = item.cast::<PyBytes>() {
            decoder.decode_frame(account_id, bytes.as_bytes(), received_at_us);
        } else if let Ok(text) = item.cast::<PyString>() {
            match text.to_str() {
                Ok(text) => decoder.decode_text(account_id, text, received_at_us),
                // A str with lone surrogates has no UTF-8 form; its lossless bytes go to
                // `rejects` as invalid UTF-8 rather than failing the whole call.
                Err(_) => {
                    let raw = text.call_method1("encode", ("utf-8", "surrogatepass"))?;
                    let raw = raw.cast::<PyBytes>()?;
                    decoder.decode_frame(account_id, raw.as_bytes(), received_at_us)
                }
            };
        } else if let Ok(array) = item.cast::<PyByteArray>() {
            let raw = array.to_vec();
            decoder.decode_frame(account_id, &raw, received_at_us);
        } else {
            return Err(PyTypeError::new_err(format!(
                "frames must be bytes or str, not {}",
                item.get_type().name()?
            )));
        }
    }
    let out = PyDict::new(py);
    for table in Table::FRAME_TABLES {
        out.set_item(table.name(), decoder.cut(table).to_pyarrow(py)?)?;
    }
    LAST_DECODER.with(|last| last.set(Some(decoder)));
    Ok(out)
}

/// Decodes one page of a REST read (`endpoint`: `/v5/position/list`,
/// `/v5/account/wallet-balance`, `/v5/execution/list`, `/v5/order/history` or
/// `/v5/order/realtime`) into `{table name: pyarrow.RecordBatch}`, rows with
/// `source = 'rest'`, as the engine's resync and backfill do. An error answer (`retCode` other than 0)
/// or an unreadable one raises `ValueError` and adds nothing; bad elements of a good answer go
/// to `rejects`. For tests and tools: the engine reads its pages itself.
#[pyfunction]
#[pyo3(signature = (body, *, endpoint, account_id, received_at_us, keep_raw = true))]
fn decode_rest<'py>(
    py: Python<'py>,
    body: &[u8],
    endpoint: &str,
    account_id: &str,
    received_at_us: i64,
    keep_raw: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let endpoint = RestEndpoint::from_path(endpoint)
        .ok_or_else(|| PyValueError::new_err(format!("not a REST read: {endpoint:?}")))?;
    let mut decoder = Decoder::new(DecoderConfig {
        keep_raw,
        ..DecoderConfig::default()
    });
    decoder
        .decode_rest(account_id, endpoint, body, received_at_us)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let out = PyDict::new(py);
    for table in Table::FRAME_TABLES {
        out.set_item(table.name(), decoder.cut(table).to_pyarrow(py)?)?;
    }
    Ok(out)
}

thread_local! {
    static LAST_DECODER: Cell<Option<Decoder>> = const { Cell::new(None) };
}

/// The Arrow schema of every table, as pyarrow schemas (the stores' DDL mirrors these).
#[pyfunction]
fn schemas(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let out = PyDict::new(py);
    for table in Table::ALL {
        out.set_item(table.name(), table.schema().as_ref().to_pyarrow(py)?)?;
    }
    // The writer's record of its commits: no decoder table, but a store table all the same.
    out.set_item(
        StoreCommitColumns::NAME,
        StoreCommitColumns::schema().as_ref().to_pyarrow(py)?,
    )?;
    Ok(out)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("DEFAULT_MAX_FRAME_BYTES", DEFAULT_MAX_FRAME_BYTES)?;
    m.add_function(wrap_pyfunction!(decode, m)?)?;
    m.add_function(wrap_pyfunction!(decode_rest, m)?)?;
    m.add_function(wrap_pyfunction!(schemas, m)?)?;
    m.add_class::<collector::PyCollector>()?;
    Ok(())
}
