//! `ingestor._core`: Python bindings over `ingestor-core`. No logic lives here beyond turning
//! Python arguments into core calls and core results into pyarrow objects.

mod collector;

use arrow_pyarrow::ToPyArrow;
use ingestor_core::{Decoder, DecoderConfig, Table, DEFAULT_MAX_FRAME_BYTES};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyString};

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
    let mut decoder = Decoder::new(DecoderConfig {
        keep_raw,
        max_frame_bytes,
    });
    for item in frames.try_iter()? {
        let item = item?;
        if let Ok(bytes) = item.cast::<PyBytes>() {
            decoder.decode_frame(account_id, bytes.as_bytes(), received_at_us);
        } else if let Ok(text) = item.cast::<PyString>() {
            match text.to_str() {
                Ok(text) => decoder.decode_frame(account_id, text.as_bytes(), received_at_us),
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
    Ok(out)
}

/// The Arrow schema of every table, as pyarrow schemas (the stores' DDL mirrors these).
#[pyfunction]
fn schemas(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let out = PyDict::new(py);
    for table in Table::ALL {
        out.set_item(table.name(), table.schema().as_ref().to_pyarrow(py)?)?;
    }
    Ok(out)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("DEFAULT_MAX_FRAME_BYTES", DEFAULT_MAX_FRAME_BYTES)?;
    m.add_function(wrap_pyfunction!(decode, m)?)?;
    m.add_function(wrap_pyfunction!(schemas, m)?)?;
    m.add_class::<collector::PyCollector>()?;
    Ok(())
}
