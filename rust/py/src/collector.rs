//! `ingestor._core.Collector`: the connection engine's Python face.

use std::time::Duration;

use arrow_pyarrow::ToPyArrow;
use ingestor_core::engine::{AccountSpec, Collector, EngineConfig, EngineError};
use ingestor_core::position::PositionKey;
use ingestor_core::sign::Secret;
use ingestor_core::{DecoderConfig, Table, DEFAULT_MAX_FRAME_BYTES};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

const DEFAULT_TOPICS: &[&str] = &["position", "wallet", "execution", "order"];
const DEFAULT_CATEGORIES: &[&str] = &["linear", "inverse", "option"];
const DEFAULT_ACCOUNT_TYPES: &[&str] = &["UNIFIED"];

/// Holds the private streams of many accounts; hands out decoded Arrow batches.
#[pyclass(name = "Collector", module = "ingestor._core", frozen)]
pub struct PyCollector {
    inner: Collector,
}

fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        PyValueError::new_err(format!("{name} must be a non-negative number of seconds"))
    })
}

fn strings(
    account: &str,
    field: &str,
    value: Option<Bound<'_, PyAny>>,
    default: &[&str],
) -> PyResult<Vec<String>> {
    match value {
        None => Ok(default.iter().map(|s| s.to_string()).collect()),
        Some(v) => v.extract::<Vec<String>>().map_err(|_| {
            PyTypeError::new_err(format!(
                "account {account:?}: {field} must be a list of strings"
            ))
        }),
    }
}

/// Reads one account mapping. Errors name the account and the field, never a value (the
/// value may be a secret).
fn account_spec(mapping: &Bound<'_, PyAny>) -> PyResult<AccountSpec> {
    let mapping = mapping
        .cast::<PyDict>()
        .map_err(|_| PyTypeError::new_err("each account must be a dict"))?;
    let text = |field: &str, id: &str| -> PyResult<Option<String>> {
        match mapping.get_item(field)? {
            None => Ok(None),
            Some(v) if v.is_none() => Ok(None),
            Some(v) => v.extract::<String>().map(Some).map_err(|_| {
                PyTypeError::new_err(format!("account {id:?}: {field} must be a string"))
            }),
        }
    };
    let id = text("id", "?")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| PyValueError::new_err("every account needs a non-empty id"))?;
    let required = |field: &str| -> PyResult<String> {
        text(field, &id)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| PyValueError::new_err(format!("account {id:?}: {field} is required")))
    };
    Ok(AccountSpec {
        ws_url: required("ws_url")?,
        rest_url: text("rest_url", &id)?.filter(|s| !s.is_empty()),
        api_key: required("api_key")?,
        api_secret: Secret::new(required("api_secret")?),
        topics: strings(&id, "topics", mapping.get_item("topics")?, DEFAULT_TOPICS)?,
        categories: strings(
            &id,
            "categories",
            mapping.get_item("categories")?,
            DEFAULT_CATEGORIES,
        )?,
        account_types: strings(
            &id,
            "account_types",
            mapping.get_item("account_types")?,
            DEFAULT_ACCOUNT_TYPES,
        )?,
        open_positions: match mapping.get_item("open_positions")? {
            None => Vec::new(),
            Some(v) => v
                .extract::<Vec<(String, String, i32)>>()
                .map_err(|_| {
                    PyTypeError::new_err(format!(
                        "account {id:?}: open_positions must be a list of (category, symbol, position_idx)"
                    ))
                })?
                .into_iter()
                .map(|(category, symbol, position_idx)| PositionKey {
                    category,
                    symbol,
                    position_idx,
                })
                .collect(),
        },
        ledger_complete_ms: match mapping.get_item("ledger_complete_ms")? {
            None => None,
            Some(v) => v.extract::<Option<i64>>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "account {id:?}: ledger_complete_ms must be an integer of ms or None"
                ))
            })?,
        },
        id,
    })
}

fn batches_to_py<'py>(
    py: Python<'py>,
    batches: Vec<(Table, arrow_array::RecordBatch)>,
) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    for (table, batch) in batches {
        out.append((table.name(), batch.to_pyarrow(py)?))?;
    }
    Ok(out)
}

#[pymethods]
impl PyCollector {
    #[new]
    #[pyo3(signature = (
        accounts, *, batch_size = 10_000, flush_interval = 1.0, max_pending_rows = 1_000_000,
        max_pending_bytes = usize::MAX, ping_interval = 20.0, pong_timeout = 10.0, handshake_timeout = 10.0, backoff_base = 1.0,
        backoff_cap = 60.0, stable_after = 30.0, connect_budget = 500, connect_window = 300.0,
        connect_burst = 25, rest_timeout = 10.0, rest_attempts = 3, rest_budget = 500,
        rest_window = 5.0, backfill_depth = 7.0 * 86_400.0, keep_raw = true,
        max_frame_bytes = DEFAULT_MAX_FRAME_BYTES, ca_file = None, worker_threads = 1
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        accounts: &Bound<'_, PyAny>,
        batch_size: usize,
        flush_interval: f64,
        max_pending_rows: usize,
        max_pending_bytes: usize,
        ping_interval: f64,
        pong_timeout: f64,
        handshake_timeout: f64,
        backoff_base: f64,
        backoff_cap: f64,
        stable_after: f64,
        connect_budget: u32,
        connect_window: f64,
        connect_burst: u32,
        rest_timeout: f64,
        rest_attempts: u32,
        rest_budget: u32,
        rest_window: f64,
        backfill_depth: f64,
        keep_raw: bool,
        max_frame_bytes: usize,
        ca_file: Option<std::path::PathBuf>,
        worker_threads: usize,
    ) -> PyResult<Self> {
        let specs = accounts
            .try_iter()?
            .map(|a| account_spec(&a?))
            .collect::<PyResult<Vec<_>>>()?;
        if batch_size == 0
            || max_pending_rows == 0
            || max_pending_bytes == 0
            || connect_budget == 0
            || rest_budget == 0
        {
            return Err(PyValueError::new_err(
                "batch_size, max_pending_rows, max_pending_bytes, connect_budget and rest_budget \
                 must be positive",
            ));
        }
        let config = EngineConfig {
            batch_size,
            flush_interval: seconds("flush_interval", flush_interval)?,
            max_pending_rows,
            max_pending_bytes,
            ping_interval: seconds("ping_interval", ping_interval)?.max(Duration::from_millis(10)),
            pong_timeout: seconds("pong_timeout", pong_timeout)?,
            handshake_timeout: seconds("handshake_timeout", handshake_timeout)?,
            backoff_base: seconds("backoff_base", backoff_base)?,
            backoff_cap: seconds("backoff_cap", backoff_cap)?,
            stable_after: seconds("stable_after", stable_after)?,
            connect_budget,
            connect_window: seconds("connect_window", connect_window)?,
            connect_burst,
            rest_timeout: seconds("rest_timeout", rest_timeout)?,
            rest_attempts,
            rest_budget,
            rest_window: seconds("rest_window", rest_window)?,
            backfill_depth: seconds("backfill_depth", backfill_depth)?,
            decoder: DecoderConfig {
                keep_raw,
                max_frame_bytes,
            },
            ca_file,
            worker_threads,
        };
        let inner = py
            .detach(|| Collector::new(config, specs))
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(PyCollector { inner })
    }

    /// Finished `(table name, pyarrow.RecordBatch)` pairs; waits up to `timeout` seconds
    /// for the first, with the GIL released.
    #[pyo3(signature = (timeout = 1.0))]
    fn next_batches<'py>(&self, py: Python<'py>, timeout: f64) -> PyResult<Bound<'py, PyList>> {
        let timeout = seconds("timeout", timeout)?;
        let batches = py.detach(|| self.inner.next_batches(timeout));
        batches_to_py(py, batches)
    }

    fn add_account(&self, py: Python<'_>, account: &Bound<'_, PyAny>) -> PyResult<()> {
        let spec = account_spec(account)?;
        py.detach(|| self.inner.add_account(spec))
            .map_err(|e| match e {
                EngineError::Closed => PyRuntimeError::new_err(e.to_string()),
                _ => PyValueError::new_err(e.to_string()),
            })
    }

    fn remove_account(&self, py: Python<'_>, account_id: &str) -> bool {
        py.detach(|| self.inner.remove_account(account_id))
    }

    /// Per-account counters: a list of dicts.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for s in self.inner.stats() {
            let d = PyDict::new(py);
            d.set_item("account_id", s.account_id)?;
            d.set_item("state", s.state)?;
            d.set_item("frames", s.frames)?;
            d.set_item("rows", s.rows)?;
            d.set_item("rejects", s.rejects)?;
            d.set_item("reconnects", s.reconnects)?;
            d.set_item("resyncs", s.resyncs)?;
            d.set_item("last_message_us", s.last_message_us)?;
            d.set_item("last_error", s.last_error)?;
            out.append(d)?;
        }
        Ok(out)
    }

    /// Connects waiting for the box's connection budget.
    fn connect_queue(&self) -> usize {
        self.inner.connect_queue()
    }

    /// Bytes of the rows decoded but not yet taken by `next_batches` (Arrow memory).
    fn undelivered_bytes(&self) -> usize {
        self.inner.undelivered_bytes()
    }

    /// Rows decoded but not yet taken by `next_batches`.
    fn undelivered_rows(&self) -> usize {
        self.inner.undelivered_rows()
    }

    /// Closes every connection and returns every batch not yet taken.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let batches = py.detach(|| self.inner.close());
        batches_to_py(py, batches)
    }

    fn __repr__(&self) -> String {
        format!("Collector(accounts={})", self.inner.stats().len())
    }
}
