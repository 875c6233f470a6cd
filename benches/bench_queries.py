"""Query benchmark: what the store's shipped queries cost against the plain SQL an analyst would
write over the raw history, on stores of 10 and 100 million position rows.

Run with `make bench-queries` (`--sizes 1M` for a quick check; `--cache DIR` and `--out-dir DIR`
keep a check's stores and results away from benches/). Per size, a DuckDB store is built
THROUGH THE STORE'S WRITE PATH (`open_store("duckdb")`, `create()`, `write()`), from rows
generated with numpy/pyarrow in the decoder's exact Arrow schemas (`ingestor.schemas()`),
decimals exact, "" stored as NULL where the decoder stores it so. Each commit is one slice of
a month and holds every table's rows that arrived (`local_ts`) in it, about the writer's
`COMMIT_ROWS` in all:

- positions: 1,000 accounts × 20 symbols (16 linear, 4 inverse), position_idx 0, a month at a
  steady rate, one row per push (message id a counter, seq increasing); 1% are REST resync
  rows (source 'rest', message id `rest:…`) whose exchange_ts (Bybit's `updatedTime`) is 1 h
  to 3 days (log-uniform) older than the commit's other rows, their creation_ts the resync's
  own time, as the decoder sets it;
- wallets: a fifth as many rows, 1,000 UNIFIED accounts × 5 coins, one push per account
  carrying its 5 coins; 1% REST rows. The decoder gives a wallet row exchange_ts =
  creation_ts (the push's or the answer's time), so wallet rows are never late.
- creation_ts = exchange_ts + 1-5 ms, local_ts = creation_ts + 1-10 ms, raw_json NULL.
- execution_events: a Trade fill per 4 position rows, from orders on the same keys (below):
  exec_id a unique UUID, the order's id, link id (40% of orders; NULL otherwise), side, price
  and type; execQty a split of the order's quantity, execValue qty × price (inverse: qty /
  price, 8 decimals), execFee execValue × the maker (0.0002) or taker (0.00055) rate, rounded
  half-even to 8 decimals; 40% of orders close their key's position: their fills' execPnl
  (closed qty × (price − entry), inverse 1/entry − 1/price) is nonzero, closedSize their qty;
  the others' execPnl 0. Funding every 8 h (00:00, 08:00, 16:00 UTC) on each position key
  open then (92%): execQty the position's size, execPrice the mark, feeRate the symbol's
  rate (−300..500 millionths) from the position's side, execFee = execValue × feeRate
  (positive paid), orderId `<instant s>-<symbol>-<round>-<side>`, pushed 10 ms to 3 s after
  the instant. 12 BustTrades over the month (an exchange's Market order at the bust price).
  exchange_ts = execTime (ms).
- order_events: every version of those orders: 78% filled (1 + Poisson(2) fills: New, a
  PartiallyFilled per fill but the last, Filled), 20% cancelled unfilled (New, Cancelled 1 s
  to 2 h later), 2% still working at the month's end (New; or New and PartiallyFilled); a
  fill 1-30 ms (Market) or 50 ms to 20 min (Limit) after New, the next 5 ms to 5 min after;
  exchange_ts = updatedTime strictly increasing per order, cum_exec_qty/value/fee and
  leaves_qty/value those of the fills so far, ~1.5 versions per fill. 1% of orders (and of
  funding rows) are REST backfilled: source 'rest', arriving 2 s to 2 h after their last
  event, an order as one row, its final state (as /v5/order/history lists it), with its
  fills, lacking what Bybit's REST items lack (createType, isLeverage, closedPnl, the rpi
  fields). What would arrive after the month's end is not captured (its order stays open).
- store_commits: a writer flushing every second of the month (a new pid each day, flush_seq
  counting its flushes that wrote anything): per flush a row for each of positions,
  wallets, executions and orders it wrote, rows Poisson at the table's rate (wallets in
  pushes of 5; an instant's funding rows over the 3 flushes after it); local_ts the commit
  instant (the second + a log-normal 1-40 ms write_us), oldest_local_ts the commit delay
  before it (log-normal, median 280 ms, 50-1,500 ms), newest_local_ts after the oldest and
  before the write. A synthetic record: the rows it counts add up to about the tables' rows
  (within 0.3% at 1M), not second by second to the generated rows' local_ts.

Volumes (`plan()`): 10M positions → 2,000,000 wallet rows, ~4.16 M executions (2.5 M fills +
1.66 M funding, which follows the keys, not the pushes), ~3.74 M order versions, ~6.5 M
store_commits rows, ~26.4 M rows in ~108 commits; 100M → 20 M, ~26.7 M, ~37.4 M, ~9.8 M,
~194 M rows in ~790 commits. Every generated row must be in the store after the build (none
taken for a duplicate by `queries.DEDUP`, none left in the hot tier by a failed move), or the
build fails.

Stores are cached under `--cache`, keyed by size, the generator's version and a digest of the
store's code (queries.py, sinks/*.py, the schemas, DuckDB's version): a store built by other
code would not hold what today's code maintains at commit. Each query is then timed against
its plain counterpart on one read-only connection (`open_reader("duckdb")`): one warm-up each,
then `--runs` runs alternating shipped / plain, median wall time and process CPU. Before the
timings count, each pair must agree on row count and a checksum over key + exchange_ts, and
on one over every column, or the benchmark fails. The ledger's: `latest_orders`,
`open_orders` and `open_orders_asof` (mid-month, near the end; a state with checkpoints, so
issue 17's goals apply to them), `fills` and `funding` of one account over the
month, `pnl_daily` of every account over the month, `ledger_tieout` from the second day to
the end, each against the plain SQL over execution_events / order_events /
wallet_snapshots; the report's
commit delay (`queries.report_commit_delay`, per table and per table and hour, with the
report's parameters) is SQL over the raw table already and is timed alone. `--report` times
`ingestor report` on the cached stores (every section: the ledger and the commit delay too).
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import platform
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ingestor  # noqa: E402
from ingestor import queries  # noqa: E402
from ingestor.service.writer import COMMIT_ROWS  # noqa: E402
from ingestor.sinks import (  # noqa: E402
    duckdb_store,
    open_reader,
    open_store,
)
from ingestor.sinks.duckdb_store import DuckDBStore  # noqa: E402

#: Where the store's own limit starts, before `--writer-memory-mb` changes it for the builds.
STORE_MEMORY_LIMIT = f"{duckdb_store.WRITER_MEMORY_MB} MB"

#: Bump when the generated rows change: cached stores of another version are rebuilt.
GEN_VERSION = "2"

ACCOUNTS = 1_000
#: (symbol, category, price, price decimals, quantity decimals, lot)
SYMBOLS = [
    ("BTCUSDT", "linear", 65_000.0, 1, 3, 0.001),
    ("ETHUSDT", "linear", 3_400.0, 2, 2, 0.01),
    ("SOLUSDT", "linear", 150.0, 3, 1, 0.1),
    ("XRPUSDT", "linear", 0.52, 4, 0, 1.0),
    ("DOGEUSDT", "linear", 0.12, 5, 0, 1.0),
    ("ADAUSDT", "linear", 0.45, 4, 0, 1.0),
    ("AVAXUSDT", "linear", 28.0, 3, 1, 0.1),
    ("LINKUSDT", "linear", 14.0, 3, 1, 0.1),
    ("DOTUSDT", "linear", 6.2, 3, 1, 0.1),
    ("LTCUSDT", "linear", 72.0, 2, 1, 0.1),
    ("BNBUSDT", "linear", 580.0, 2, 2, 0.01),
    ("TRXUSDT", "linear", 0.16, 5, 0, 1.0),
    ("ATOMUSDT", "linear", 6.8, 3, 1, 0.1),
    ("NEARUSDT", "linear", 5.1, 3, 1, 0.1),
    ("APTUSDT", "linear", 8.9, 4, 2, 0.01),
    ("SUIUSDT", "linear", 1.9, 4, 1, 0.1),
    ("BTCUSD", "inverse", 65_000.0, 1, 0, 1.0),
    ("ETHUSD", "inverse", 3_400.0, 2, 0, 1.0),
    ("XRPUSD", "inverse", 0.52, 4, 0, 1.0),
    ("SOLUSD", "inverse", 150.0, 3, 0, 1.0),
]
#: (coin, USD price, typical balance)
COINS = [
    ("USDT", 1.0, 20_000.0),
    ("USDC", 1.0, 5_000.0),
    ("BTC", 65_000.0, 0.3),
    ("ETH", 3_400.0, 4.0),
    ("SOL", 150.0, 60.0),
]
LEVERAGES = np.array([1, 2, 3, 5, 10, 20, 25, 50, 100], np.int64)

MONTH_START = datetime(2026, 11, 1, tzinfo=UTC)
MONTH = timedelta(days=30)
US = 1_000_000
HOUR_US = 3_600 * US
T0_US = int(MONTH_START.timestamp()) * US
MONTH_US = int(MONTH.total_seconds()) * US
#: Share of REST resync rows; a position's REST row is 1 h to 3 days older than its commit.
REST_SHARE = 0.01
LATE_MIN_US, LATE_MAX_US = HOUR_US, 72 * HOUR_US
SEQ0 = 8_000_000_000

#: A commit carries positions and wallets in the ratio of the whole store (5:1), 245,760 rows.
POSITIONS_PER_COMMIT = COMMIT_ROWS * 5 // 6
WALLET_PUSHES_PER_COMMIT = COMMIT_ROWS // 6 // len(COINS)

SCHEMAS = ingestor.schemas()
POSITIONS = SCHEMAS["position_snapshots"]
WALLETS = SCHEMAS["wallet_snapshots"]
DEC = pa.decimal128(38, 18)
TS = pa.timestamp("us", tz="UTC")

# --- Generated rows --------------------------------------------------------------------------


def _per_key() -> dict[str, np.ndarray]:
    """What stays with a position or a wallet coin for the month (a fixed seed)."""
    rng = np.random.default_rng(17)
    keys = ACCOUNTS * len(SYMBOLS)
    wallet_keys = ACCOUNTS * len(COINS)
    return {
        "buy": rng.random(keys) < 0.55,
        "lev": LEVERAGES[rng.integers(0, len(LEVERAGES), keys)],
        "entry": 1 + 0.04 * rng.standard_normal(keys),
        "lots": rng.lognormal(4.0, 1.2, keys).astype(np.int64) + 1,
        "created": T0_US - rng.integers(1, 400 * 24 * HOUR_US, keys),
        "opened": T0_US - rng.integers(1, 30 * 24 * HOUR_US, keys),
        "cum_pnl": 2_000 * rng.standard_normal(keys),
        "tp": rng.random(keys) < 0.2,
        "sl": rng.random(keys) < 0.25,
        "balance": rng.lognormal(0.0, 1.0, wallet_keys),
        "phase": rng.random(len(SYMBOLS) + len(COINS)),
    }


KEY = _per_key()
ACCOUNT_NAMES = pa.array([f"acct-{i:04d}" for i in range(ACCOUNTS)], pa.string())
SYMBOL_NAMES = pa.array([s[0] for s in SYMBOLS], pa.string())
SYMBOL_CATEGORY = pa.array([s[1] for s in SYMBOLS], pa.string())
SYMBOL_PRICE = np.array([s[2] for s in SYMBOLS])
SYMBOL_PDP = np.array([s[3] for s in SYMBOLS], np.int64)
SYMBOL_LOT = np.array([s[5] for s in SYMBOLS])
INVERSE = np.array([s[1] == "inverse" for s in SYMBOLS])
COIN_NAMES = pa.array([c[0] for c in COINS], pa.string())
COIN_PRICE = np.array([c[1] for c in COINS])
COIN_BALANCE = np.array([c[2] for c in COINS])


M32, U32 = np.uint64(0xFFFF_FFFF), np.uint64(32)
TEN10 = np.uint64(10**10)
TEN10_HIGH, TEN10_LOW = np.uint64(10**10 >> 32), np.uint64(10**10 & 0xFFFF_FFFF)


def scale18(unscaled8: np.ndarray) -> np.ndarray:
    """The 128-bit two's complement words (low, high) of `unscaled8` × 10^10: a value at scale
    8 rescaled to 18 (Arrow's own cast checks each value and was most of the generation).
    The low word is the product modulo 2^64; the high word the upper half of the unsigned
    product, minus 10^10 for a negative value (its sign extension times 10^10)."""
    a = unscaled8.astype(np.int64).view(np.uint64)
    low, high = a & M32, a >> U32
    high_low = high * TEN10_LOW
    mid = (high_low & M32) + low * TEN10_HIGH + ((low * TEN10_LOW) >> U32)
    words = np.empty((len(a), 2), np.uint64)
    words[:, 0] = a * TEN10
    words[:, 1] = high * TEN10_HIGH + (high_low >> U32) + (mid >> U32)
    words[:, 1] -= (unscaled8 < 0).astype(np.uint64) * TEN10
    return words


def dec(values: np.ndarray, decimals: int | np.ndarray = 8, valid: np.ndarray | None = None):
    """A Decimal128(38, 18) array of `values` rounded to `decimals` (at most 8)."""
    scale = np.power(10, np.asarray(decimals, np.int64))
    unscaled = np.rint(values * scale).astype(np.int64) * (10**8 // scale)
    nulls = None
    if valid is not None:
        nulls = pa.array(valid, pa.bool_()).buffers()[1]
    return pa.Array.from_buffers(
        DEC, len(values), [nulls, pa.py_buffer(scale18(unscaled))], null_count=-1
    )


def ts(us: np.ndarray) -> pa.Array:
    return pa.array(us.astype(np.int64), TS)


def const(value, n: int, type_: pa.DataType) -> pa.Array:
    return pa.repeat(pa.scalar(value, type_), n) if value is not None else pa.nulls(n, type_)


def message_ids(prefixes: list[str], which: np.ndarray, counter: np.ndarray) -> pa.Array:
    prefix = pa.array(prefixes, pa.string()).take(pa.array(which.astype(np.int8)))
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(counter), pa.string()), "")


def position_rows(start: int, stop: int, total: int, rng: np.random.Generator) -> pa.RecordBatch:
    """Position rows `start`..`stop` of a month of `total`, one push each."""
    n = stop - start
    index = np.arange(start, stop, dtype=np.int64)
    step = MONTH_US / total
    nominal = T0_US + ((index + rng.random(n)) * step).astype(np.int64)
    rest = rng.random(n) < REST_SHARE
    age = np.exp(rng.uniform(np.log(LATE_MIN_US), np.log(LATE_MAX_US), n)).astype(np.int64)
    exchange = np.where(rest, nominal - age, nominal)
    creation = np.where(rest, nominal, exchange) + rng.integers(1_000, 5_000, n)
    local = creation + rng.integers(1_000, 10_000, n)
    seq = np.where(rest, SEQ0 + ((exchange - T0_US) / step).astype(np.int64), SEQ0 + index)

    account = rng.integers(0, ACCOUNTS, n)
    symbol = rng.integers(0, len(SYMBOLS), n)
    key = account * len(SYMBOLS) + symbol
    inverse = INVERSE[symbol]
    direction = np.where(KEY["buy"][key], 1.0, -1.0)
    month = (exchange - T0_US) / MONTH_US
    wave = 0.08 * np.sin(2 * np.pi * (3 * month + KEY["phase"][symbol]))
    mark = SYMBOL_PRICE[symbol] * (1 + wave + 0.003 * rng.standard_normal(n))
    entry = SYMBOL_PRICE[symbol] * KEY["entry"][key]
    lots = np.where(rng.random(n) < 0.08, 0, rng.integers(1, 2 * KEY["lots"][key] + 1))
    size = lots * SYMBOL_LOT[symbol]
    open_ = lots > 0
    value = np.where(inverse, size / entry, size * entry)
    value_mp = np.where(inverse, size / mark, size * mark)
    lev = KEY["lev"][key].astype(np.float64)
    upnl = direction * np.where(inverse, size * (1 / entry - 1 / mark), size * (mark - entry))
    pdp = SYMBOL_PDP[symbol]
    side_index = np.where(open_, np.where(direction > 0, 0, 1), 2)
    zero = np.zeros(n)
    columns = {
        **traded(account, symbol),
        "position_idx": const(0, n, pa.int32()),
        "side": pa.array(["Buy", "Sell", ""], pa.string()).take(pa.array(side_index)),
        "size": dec(size, 3),
        "entry_price": dec(entry, pdp),
        "break_even_price": dec(entry * (1 + direction * 0.0011), pdp),
        "mark_price": dec(mark, pdp),
        "position_value": dec(value, 8),
        "leverage": dec(lev, 0),
        "position_balance": dec(value / lev * 1.0006, 8),
        "position_im": dec(value / lev, 8),
        "position_im_by_mp": dec(value_mp / lev, 8),
        "position_mm": dec(value * 0.005, 8),
        "position_mm_by_mp": dec(value_mp * 0.005, 8),
        "liq_price": dec(np.where(open_, entry * (1 - direction * 0.95 / lev), 0), pdp),
        "bust_price": dec(np.where(open_, entry * (1 - direction / lev), 0), pdp),
        "take_profit": dec(
            np.where(KEY["tp"][key] & open_, entry * (1 + direction * 0.05), 0), pdp
        ),
        "stop_loss": dec(np.where(KEY["sl"][key] & open_, entry * (1 - direction * 0.03), 0), pdp),
        "trailing_stop": dec(zero, 0),
        "unrealised_pnl": dec(upnl, 8),
        "session_avg_price": pa.nulls(n, DEC),
        "delta": pa.nulls(n, DEC),
        "gamma": pa.nulls(n, DEC),
        "vega": pa.nulls(n, DEC),
        "theta": pa.nulls(n, DEC),
        "cur_realised_pnl": dec(-value * 0.00055 * rng.random(n), 8),
        "cum_realised_pnl": dec(KEY["cum_pnl"][key] * (1 + month), 8),
        "risk_id": pa.array(1 + symbol % 3, pa.int64()),
        "risk_limit_value": dec(np.where(inverse, 150.0, 2_000_000.0), 0),
        "trade_mode": const(0, n, pa.int32()),
        "auto_add_margin": const(0, n, pa.int32()),
        "tpsl_mode": const("Full", n, pa.string()),
        "position_status": const("Normal", n, pa.string()),
        "adl_rank_indicator": pa.array(np.where(open_, 1 + key % 5, 0), pa.int32()),
        "is_reduce_only": const(False, n, pa.bool_()),
        "mmr_sys_updated_ts": pa.nulls(n, TS),
        "leverage_sys_updated_ts": pa.nulls(n, TS),
        "created_ts": ts(KEY["created"][key] // 1_000 * 1_000),
        "open_ts": ts(np.where(open_, KEY["opened"][key] // 1_000 * 1_000, 0)),
        "exchange_ts": ts(exchange // 1_000 * 1_000),  # Bybit's times are ms
        "creation_ts": ts(creation // 1_000 * 1_000),
        "local_ts": ts(local),
        "source": pa.array(["ws", "rest"], pa.string()).take(pa.array(rest.astype(np.int8))),
        "message_id": message_ids(["pos-", "rest:p"], rest, index),
        "seq": pa.array(seq, pa.int64()),
        "raw_json": pa.nulls(n, pa.string()),
    }
    return pa.RecordBatch.from_arrays([columns[f.name] for f in POSITIONS], schema=POSITIONS)


def wallet_rows(start: int, stop: int, total: int, rng: np.random.Generator) -> pa.RecordBatch:
    """Wallet pushes `start`..`stop` of a month of `total`, each one account's 5 coins."""
    pushes = stop - start
    coins = len(COINS)
    n = pushes * coins
    index = np.arange(start, stop, dtype=np.int64)
    step = MONTH_US / total
    creation = T0_US + ((index + rng.random(pushes)) * step).astype(np.int64) // 1_000 * 1_000
    rest = rng.random(pushes) < REST_SHARE
    local = creation + rng.integers(1_000, 10_000, pushes)
    account = rng.integers(0, ACCOUNTS, pushes)

    each = np.repeat  # a push's value on each of its coin rows
    coin = np.tile(np.arange(coins), pushes)
    row_account = each(account, coins)
    month = each((creation - T0_US) / MONTH_US, coins)
    wkey = row_account * coins + coin
    wave = 0.08 * np.sin(2 * np.pi * (3 * month + KEY["phase"][len(SYMBOLS) + coin]))
    price = COIN_PRICE[coin] * np.where(coin < 2, 1.0, 1 + wave)
    balance = COIN_BALANCE[coin] * KEY["balance"][wkey] * (1 + 0.02 * rng.standard_normal(n))
    upnl = np.where(coin == 0, 300 * rng.standard_normal(n), 0.0)
    equity = balance + upnl
    usd = equity * price
    position_im = np.where(coin == 0, np.abs(usd) * 0.1, 0.0)
    position_mm = position_im * 0.05
    by_push = usd.reshape(pushes, coins)
    total_equity = each(by_push.sum(axis=1), coins)
    total_wallet = each((balance * price).reshape(pushes, coins).sum(axis=1), coins)
    total_im = each(position_im.reshape(pushes, coins).sum(axis=1), coins)
    total_mm = total_im * 0.05
    total_upl = each(upnl.reshape(pushes, coins).sum(axis=1), coins)
    im_rate = total_im / np.maximum(total_equity, 1.0)
    zero = np.zeros(n)
    columns = {
        "account_id": ACCOUNT_NAMES.take(pa.array(row_account)),
        "account_type": const("UNIFIED", n, pa.string()),
        "coin": COIN_NAMES.take(pa.array(coin)),
        "equity": dec(equity, 8),
        "usd_value": dec(usd, 8),
        "wallet_balance": dec(balance, 8),
        "free": pa.nulls(n, DEC),
        "locked": dec(zero, 0),
        "spot_hedging_qty": dec(zero, 0),
        "borrow_amount": dec(zero, 0),
        "available_to_borrow": pa.nulls(n, DEC),
        "available_to_withdraw": pa.nulls(n, DEC),
        "accrued_interest": dec(zero, 0),
        "total_order_im": dec(zero, 0),
        "total_position_im": dec(position_im, 8),
        "total_position_mm": dec(position_mm, 8),
        "unrealised_pnl": dec(upnl, 8),
        "cum_realised_pnl": dec(upnl * 3.1, 8),
        "bonus": dec(zero, 0),
        "collateral_switch": const(True, n, pa.bool_()),
        "margin_collateral": const(True, n, pa.bool_()),
        "col_res": const(0, n, pa.int32()),
        "spot_borrow": dec(zero, 0),
        "account_im_rate": dec(im_rate, 4),
        "account_mm_rate": dec(im_rate * 0.05, 4),
        "account_im_rate_by_mp": dec(im_rate, 4),
        "account_mm_rate_by_mp": dec(im_rate * 0.05, 4),
        "account_ltv": pa.nulls(n, DEC),
        "total_equity": dec(total_equity, 8),
        "total_wallet_balance": dec(total_wallet, 8),
        "total_margin_balance": dec(total_equity, 8),
        "total_available_balance": dec(total_equity - total_im, 8),
        "total_perp_upl": dec(total_upl, 8),
        "total_initial_margin": dec(total_im, 8),
        "total_initial_margin_by_mp": dec(total_im, 8),
        "total_maintenance_margin": dec(total_mm, 8),
        "total_maintenance_margin_by_mp": dec(total_mm, 8),
        # The decoder: a wallet row's exchange_ts is its push's (or answer's) creation time.
        "exchange_ts": ts(each(creation, coins)),
        "creation_ts": ts(each(creation, coins)),
        "local_ts": ts(each(local, coins)),
        "source": pa.array(["ws", "rest"], pa.string()).take(
            pa.array(each(rest, coins), pa.int8())
        ),
        "message_id": message_ids(["wal-", "rest:w"], each(rest, coins), each(index, coins)),
        "raw_json": pa.nulls(n, pa.string()),
    }
    return pa.RecordBatch.from_arrays([columns[f.name] for f in WALLETS], schema=WALLETS)


# --- The ledger's rows and the writer's record of its flushes --------------------------------

EXECUTIONS = SCHEMAS["execution_events"]
ORDERS = SCHEMAS["order_events"]
COMMITS = SCHEMAS[queries.STORE_COMMITS]
MS = 1_000
T_END_US = T0_US + MONTH_US
P10 = 10 ** np.arange(19, dtype=np.int64)
SYMBOL_QDP = np.array([s[4] for s in SYMBOLS], np.int64)
#: The coin a symbol settles in (its executions' fee currency): USDT, or an inverse's base.
SYMBOL_COIN = pa.array(
    ["USDT" if s[1] == "linear" else s[0].removesuffix("USD") for s in SYMBOLS], pa.string()
)
SIDES = pa.array(["Buy", "Sell"], pa.string())
SOURCES = pa.array(["ws", "rest"], pa.string())

#: Trade fills per position row (a fill is what makes most position pushes).
FILLS_PER_POSITION = 0.25
#: What becomes of an order: filled (1 + Poisson(2) fills; versions New, PartiallyFilled for
#: each fill but the last, Filled), cancelled unfilled (New, Cancelled), or still working at
#: the month's end (New only; or New and 1 + Poisson(1) fills, each a PartiallyFilled).
ORDER_KIND_SHARE = (0.78, 0.20, 0.01, 0.01)
FILLED, CANCELLED, OPEN, OPEN_PARTIAL = range(4)
FILLED_EXTRA_FILLS, PARTIAL_EXTRA_FILLS = 2.0, 1.0
#: Filled orders that are Limit (maker fills); the rest are Market (taker). Cancelled and open
#: orders are Limit.
LIMIT_SHARE = 0.6
#: Orders against their key's position: their fills close it and realise PnL (nonzero).
CLOSING_SHARE = 0.4
#: Orders with a client orderLinkId (the rest send "", stored NULL).
LINK_ID_SHARE = 0.4
#: Fee rates per 100,000: maker 0.0002, taker 0.00055.
MAKER_RATE, TAKER_RATE = 20, 55
MAX_LOTS = 100_000
#: Funding every 8 h (00:00, 08:00, 16:00 UTC) on each position key open then (92%: the
#: position rows are flat 8% of the time), at a rate per symbol and instant in millionths;
#: an account's funding push 10 ms to 3 s after the instant.
FUNDING_EVERY_US = 8 * HOUR_US
FUNDING_OPEN_SHARE = 0.92
FUNDING_RATE_MICROS = (-300, 500)
#: Liquidations over the month: a Market order of the exchange's (New, Filled) closing the
#: key's position at its bust price in one BustTrade.
BUST_TRADES = 12
#: A REST-backfilled order (`REST_SHARE`) arrives 2 s to 2 h (log-uniform) after its last
#: event, as one row (its final state, as /v5/order/history lists an order) with its fills;
#: a backfilled funding row that long after its instant.
BACKFILL_MIN_US, BACKFILL_MAX_US = 2 * US, 2 * HOUR_US
SEQ_EXEC0 = 9_000_000_000

#: The writer flushes every second of the month; each flush's commit instant is its write
#: time (log-normal, median 6 ms, 1-40 ms) after the second, and a table's commit delay (the
#: commit instant minus its oldest row's arrival) log-normal, median 280 ms, cut to 50-1,500.
FLUSH_US = US
FLUSHES = MONTH_US // FLUSH_US
WRITE_MEDIAN_US, WRITE_SIGMA, WRITE_MIN_US, WRITE_MAX_US = 6_000, 0.5, 1_000, 40_000
DELAY_MEDIAN_US, DELAY_SIGMA, DELAY_MIN_US, DELAY_MAX_US = 280_000, 0.55, 50_000, 1_500_000
#: A funding instant's rows come in the flushes of the 3 s after it (10 ms to 3 s).
FUNDING_FLUSHES = 3
#: A new writer (another pid) every day: the service restarts daily.
WRITER_PID0 = 41_000
#: The tables a capture's flush writes (store_commits never records itself).
FLUSHED = ("position_snapshots", "wallet_snapshots", "execution_events", "order_events")
LEDGER = ("execution_events", "order_events")


def expected_per_order() -> tuple[float, float]:
    """Fills and stored versions per order, on average (a backfilled order is one row)."""
    filled, cancelled, open_, partial = ORDER_KIND_SHARE
    fills = filled * (1 + FILLED_EXTRA_FILLS) + partial * (1 + PARTIAL_EXTRA_FILLS)
    versions = (
        filled * (2 + FILLED_EXTRA_FILLS)
        + cancelled * 2
        + open_
        + partial * (2 + PARTIAL_EXTRA_FILLS)
    )
    return fills, (1 - REST_SHARE) * versions + REST_SHARE


@dataclass(frozen=True)
class Plan:
    """What a store of `positions` position rows holds, and in how many commits."""

    positions: int
    ledger: bool
    wallet_pushes: int
    orders: int
    commits: int
    #: Expected rows a second of each of `FLUSHED` (wallets: pushes of 5 rows; executions:
    #: fills, the funding rows aside)...
    rates: tuple[float, ...]
    #: ...which come at their instants: the funding rows of one.
    funding: float
    #: Expected rows of each table (for the docstring and the report).
    expected: dict[str, int]

    def bound(self, k: int) -> int:
        """The first instant of commit `k`'s slice of the month (µs)."""
        return T0_US + k * MONTH_US // self.commits


def plan(positions: int, ledger: bool = True) -> Plan:
    wallet_pushes = positions // 5 // len(COINS)
    expected = {"position_snapshots": positions, "wallet_snapshots": wallet_pushes * len(COINS)}
    if not ledger:
        count = -(-positions // POSITIONS_PER_COMMIT)
        return Plan(positions, False, wallet_pushes, 0, count, (), 0.0, expected)
    fills, versions = expected_per_order()
    orders = round(positions * FILLS_PER_POSITION / fills)
    instants = MONTH_US // FUNDING_EVERY_US
    funding = ACCOUNTS * len(SYMBOLS) * FUNDING_OPEN_SHARE
    trades = orders * fills + BUST_TRADES
    expected["execution_events"] = round(trades + instants * funding)
    expected["order_events"] = round(orders * versions + 2 * BUST_TRADES)
    seconds = MONTH_US / US
    rates = (
        positions / seconds,
        wallet_pushes / seconds,
        trades / seconds,
        expected["order_events"] / seconds,
    )
    records = FLUSHES * sum(1 - np.exp(-r) for r in rates)
    records += FUNDING_FLUSHES * instants * np.exp(-rates[2])
    expected[queries.STORE_COMMITS] = round(records)
    count = -(-sum(expected.values()) // COMMIT_ROWS)
    return Plan(positions, True, wallet_pushes, orders, count, rates, funding, expected)


def round_div(a: np.ndarray, d) -> np.ndarray:
    """a / d rounded half to even, in integers (d > 0): Bybit's rounding of an amount."""
    q = np.floor_divide(a, d)
    r = a - q * d
    return q + ((2 * r > d) | ((2 * r == d) & (q % 2 == 1)))


def dec8(units: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """A Decimal128(38, 18) array of exact amounts given as integers of 10^-8."""
    nulls = None if valid is None else pa.array(valid, pa.bool_()).buffers()[1]
    words = scale18(np.asarray(units, np.int64))
    return pa.Array.from_buffers(DEC, len(units), [nulls, pa.py_buffer(words)], null_count=-1)


def units_text(units: np.ndarray) -> pa.Array:
    """Amounts in 10^-8 as Bybit writes them ("0.00123", "2", "0")."""
    text = pc.cast(dec8(units), pa.string())
    text = pc.replace_substring_regex(pc.replace_substring_regex(text, r"0+$", ""), r"\.$", "")
    return pc.if_else(pa.array(units == 0), "0", text)


def unless(mask: np.ndarray, values: pa.Array) -> pa.Array:
    """`values`, NULL where `mask`."""
    return pc.if_else(pa.array(mask), pa.scalar(None, values.type), values)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """A bijection of 64-bit words that looks random."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
UUID_HEX = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


def uuids(counter: np.ndarray, salt: int) -> pa.Array:
    """UUID-shaped ids (36 characters, version 4's layout), one per counter and unique: the
    last 64 bits are a bijection of the counter, the first a hash of it and `salt`."""
    n = len(counter)
    c = counter.astype(np.uint64)
    words = np.empty((n, 2), ">u8")
    words[:, 0] = splitmix64(c ^ np.uint64(salt * 0x5851F42D4C957F2D % 2**64))
    words[:, 1] = splitmix64(c)
    raw = words.view(np.uint8).reshape(n, 16)
    digits = np.empty((n, 32), np.uint8)
    digits[:, 0::2], digits[:, 1::2] = HEX[raw >> 4], HEX[raw & 15]
    digits[:, 12] = ord("4")
    text = np.full((n, 36), ord("-"), np.uint8)
    text[:, UUID_HEX] = digits
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(text.tobytes())]
    )


def loguniform(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n)).astype(np.int64)


def group_cumsum(values: np.ndarray, group_first: np.ndarray) -> np.ndarray:
    """Running sums of `values` within contiguous groups (`group_first`: each row's group's
    first row)."""
    total = np.cumsum(values)
    return total - (total - values)[group_first]


def mark_at(symbol: np.ndarray, at: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The mark price in ticks, as the position rows draw it."""
    month = (at - T0_US) / MONTH_US
    wave = 0.08 * np.sin(2 * np.pi * (3 * month + KEY["phase"][symbol]))
    mark = SYMBOL_PRICE[symbol] * (1 + wave + 0.003 * rng.standard_normal(len(symbol)))
    return np.maximum(1, np.rint(mark * P10[SYMBOL_PDP[symbol]])).astype(np.int64)


def entry_ticks(key: np.ndarray) -> np.ndarray:
    """A position key's entry price in ticks, as the position rows draw it."""
    symbol = key % len(SYMBOLS)
    entry = SYMBOL_PRICE[symbol] * KEY["entry"][key] * P10[SYMBOL_PDP[symbol]]
    return np.maximum(1, np.rint(entry)).astype(np.int64)


def value_units(lots: np.ndarray, price: np.ndarray, symbol: np.ndarray) -> np.ndarray:
    """execValue in 10^-8: qty x price (linear, exact), qty / price rounded (inverse)."""
    pdp, qdp = SYMBOL_PDP[symbol], SYMBOL_QDP[symbol]
    linear = lots * price * P10[8 - pdp - qdp]
    inverse = round_div(lots * P10[8] * P10[pdp], price)
    return np.where(INVERSE[symbol], inverse, linear)


def arrival(at: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A push's creation time (ms, 1-5 ms after `at`) and its arrival (1-10 ms after)."""
    creation = (at // MS + rng.integers(1, 6, len(at))) * MS
    return creation, creation + rng.integers(1_000, 10_000, len(at))


def traded(account: np.ndarray, symbol: np.ndarray) -> dict[str, pa.Array]:
    """The columns naming a row's account and instrument, from their indexes."""
    return {
        "account_id": ACCOUNT_NAMES.take(pa.array(account)),
        "category": SYMBOL_CATEGORY.take(pa.array(symbol)),
        "symbol": SYMBOL_NAMES.take(pa.array(symbol)),
    }


def execution_table(c: dict) -> pa.Table:
    """Execution rows from `c`'s arrays (prices in ticks, quantities in lots, amounts in
    10^-8), with the NULLs the decoder stores for what Bybit sends as "" or leaves out (a
    backfilled row has no createType, isLeverage or marketUnit)."""
    symbol, rest = c["symbol"], c["rest"]
    n = len(symbol)
    pdp, qdp = SYMBOL_PDP[symbol], SYMBOL_QDP[symbol]

    def price(ticks):
        return dec8(ticks * P10[8 - pdp])

    def qty(lots):
        return dec8(lots * P10[8 - qdp])

    string, no_dec = pa.nulls(n, pa.string()), pa.nulls(n, DEC)
    columns = {
        **traded(c["account"], symbol),
        "exec_id": c["exec_id"],
        "order_id": c["order_id"],
        "order_link_id": c["order_link_id"],
        "side": SIDES.take(pa.array(np.where(c["buy"], 0, 1))),
        "exec_type": c["exec_type"],
        "exec_price": price(c["price"]),
        "exec_qty": qty(c["lots"]),
        "exec_value": dec8(c["value"]),
        "exec_fee": dec8(c["fee"]),
        "fee_rate": dec8(c["rate"]),
        "fee_currency": SYMBOL_COIN.take(pa.array(symbol)),
        "extra_fees": string,
        "exec_pnl": dec8(c["pnl"]),
        "is_maker": pa.array(c["maker"], pa.bool_()),
        "leaves_qty": qty(c["leaves"]),
        "closed_size": qty(c["closed"]),
        "mark_price": price(c["mark"]),
        "index_price": no_dec,
        "underlying_price": no_dec,
        "trade_iv": no_dec,
        "mark_iv": no_dec,
        "order_price": price(c["order_price"]),
        "order_qty": qty(c["order_lots"]),
        "order_type": c["order_type"],
        "stop_order_type": const("UNKNOWN", n, pa.string()),
        "create_type": unless(rest, c["create_type"]),
        "block_trade_id": string,
        "market_unit": string,
        "is_leverage": pa.array(np.zeros(n, np.int32), mask=rest),
        "exchange_ts": ts(c["exchange"]),
        "creation_ts": ts(c["creation"]),
        "local_ts": ts(c["local"]),
        "source": SOURCES.take(pa.array(rest.astype(np.int8))),
        "message_id": c["message_id"],
        "seq": pa.array(SEQ_EXEC0 + (c["exchange"] - T0_US) // MS, pa.int64()),
        "raw_json": string,
    }
    return pa.Table.from_arrays([columns[f.name] for f in EXECUTIONS], schema=EXECUTIONS)


ORDER_STATUSES = pa.array(["New", "PartiallyFilled", "Filled", "Cancelled"], pa.string())


def order_table(c: dict) -> pa.Table:
    """Order versions from `c`'s arrays; a backfilled (REST) row lacks closedPnl, feeCurrency
    and the rpi fields, as Bybit's order lists do."""
    symbol, rest, status = c["symbol"], c["rest"], c["status"]
    n = len(symbol)
    pdp, qdp = SYMBOL_PDP[symbol], SYMBOL_QDP[symbol]
    limit = c["limit"]
    cum, leaves = c["cum_lots"], c["leaves"]
    price = dec8(c["price"] * P10[8 - pdp])
    coin = SYMBOL_COIN.take(pa.array(symbol))
    detail = pc.binary_join_element_wise('{"', coin, '":"', units_text(c["cum_fee"]), '"}', "")
    string, no_dec = pa.nulls(n, pa.string()), pa.nulls(n, DEC)
    columns = {
        **traded(c["account"], symbol),
        "order_id": c["order_id"],
        "order_link_id": c["order_link_id"],
        "parent_order_link_id": string,
        "block_trade_id": string,
        "side": SIDES.take(pa.array(np.where(c["buy"], 0, 1))),
        "order_type": pa.array(["Limit", "Market"]).take(pa.array(np.where(limit, 0, 1))),
        "order_status": ORDER_STATUSES.take(pa.array(status)),
        "time_in_force": pa.array(["GTC", "IOC"]).take(pa.array(np.where(limit, 0, 1))),
        "price": price,
        "qty": dec8(c["lots"] * P10[8 - qdp]),
        "avg_price": dec8(c["price"] * P10[8 - pdp], cum > 0),
        "leaves_qty": dec8(leaves * P10[8 - qdp]),
        "leaves_value": dec8(value_units(leaves, c["price"], symbol)),
        "cum_exec_qty": dec8(cum * P10[8 - qdp]),
        "cum_exec_value": dec8(c["cum_value"]),
        "cum_exec_fee": dec8(c["cum_fee"]),
        "cum_fee_detail": pc.if_else(pa.array(cum > 0), detail, "{}"),
        "fee_currency": string,
        "closed_pnl": dec8(c["closed_pnl"], ~rest),
        "position_idx": const(0, n, pa.int32()),
        "reduce_only": pa.array(c["bust"], pa.bool_()),
        "close_on_trigger": const(False, n, pa.bool_()),
        "reject_reason": const("EC_NoError", n, pa.string()),
        "cancel_type": pa.array(["UNKNOWN", "CancelByUser"]).take(
            pa.array((status == 3).astype(np.int8))
        ),
        "create_type": string,
        "place_type": string,
        "stop_order_type": string,
        "trigger_price": no_dec,
        "trigger_by": string,
        "trigger_direction": const(0, n, pa.int32()),
        "take_profit": no_dec,
        "stop_loss": no_dec,
        "tpsl_mode": string,
        "tp_trigger_by": string,
        "sl_trigger_by": string,
        "tp_limit_price": no_dec,
        "sl_limit_price": no_dec,
        "last_price_on_created": price,
        "smp_type": const("None", n, pa.string()),
        "smp_group": const(0, n, pa.int64()),
        "smp_order_id": string,
        "order_iv": no_dec,
        "market_unit": string,
        "is_leverage": pa.nulls(n, pa.int32()),
        "slippage_tolerance": no_dec,
        "slippage_tolerance_type": string,
        "rpi_taker_access": pa.array(np.zeros(n, bool), mask=rest),
        "rpi_matched_qty": dec8(np.zeros(n, np.int64), ~rest),
        "created_ts": ts(c["created"]),
        "exchange_ts": ts(c["exchange"]),
        "creation_ts": ts(c["creation"]),
        "local_ts": ts(c["local"]),
        "source": SOURCES.take(pa.array(rest.astype(np.int8))),
        "message_id": c["message_id"],
        "raw_json": string,
    }
    return pa.Table.from_arrays([columns[f.name] for f in ORDERS], schema=ORDERS)


class Flushes:
    """The writer's flushes over the month (a seed of its own per size): each one's commit
    instant, write time, writer (a pid a day) and flush number (counting, per writer, the
    flushes that wrote anything), and the rows it committed of each of `FLUSHED`: Poisson at
    the table's rate (wallets: pushes of 5 rows), 0 for a table it did not write; the
    funding rows of an instant spread over the flushes of the seconds after it."""

    def __init__(self, p: Plan) -> None:
        rng = np.random.default_rng([int(GEN_VERSION), p.positions, 2])
        second = np.arange(1, FLUSHES + 1, dtype=np.int64)
        write = rng.lognormal(np.log(WRITE_MEDIAN_US), WRITE_SIGMA, FLUSHES)
        self.write_us = np.clip(write, WRITE_MIN_US, WRITE_MAX_US).astype(np.int64)
        self.at = T0_US + second * FLUSH_US + self.write_us
        rows = np.stack([rng.poisson(r, FLUSHES) for r in p.rates], axis=1)
        rows[:, 1] *= len(COINS)
        instants = np.arange(MONTH_US // FUNDING_EVERY_US) * (FUNDING_EVERY_US // FLUSH_US)
        for s in range(FUNDING_FLUSHES):
            rows[instants + s, 2] += rng.poisson(p.funding / FUNDING_FLUSHES, len(instants))
        self.rows = rows.astype(np.int32)
        day = second * FLUSH_US // (24 * HOUR_US)
        self.pid = (WRITER_PID0 + 17 * day).astype(np.int64)
        wrote = (rows > 0).any(axis=1).astype(np.int64)
        total = np.cumsum(wrote)
        self.seq = total - (total - wrote)[np.searchsorted(day, day)]

    def records(self, lo: int, hi: int, rng: np.random.Generator) -> pa.Table:
        """The `store_commits` rows of the flushes committed in [lo, hi)."""
        a, b = np.searchsorted(self.at, [lo, hi])
        flush, table = np.nonzero(self.rows[a:b] > 0)
        flush += a
        n = len(flush)
        at, write, rows = self.at[flush], self.write_us[flush], self.rows[flush, table]
        delay = rng.lognormal(np.log(DELAY_MEDIAN_US), DELAY_SIGMA, n)
        oldest = at - np.clip(delay, DELAY_MIN_US, DELAY_MAX_US).astype(np.int64)
        newest = at - write - rng.integers(1_000, 20_000, n)
        newest = np.where(rows > 1, np.maximum(oldest, newest), oldest)
        columns = {
            "local_ts": ts(at),
            "table_name": pa.array(FLUSHED, pa.string()).take(pa.array(table)),
            "rows": pa.array(rows.astype(np.int64)),
            "oldest_local_ts": ts(oldest),
            "newest_local_ts": ts(newest),
            "writer_pid": pa.array(self.pid[flush]),
            "flush_seq": pa.array(self.seq[flush]),
            "write_us": pa.array(write),
        }
        return pa.Table.from_arrays([columns[f.name] for f in COMMITS], schema=COMMITS)


class Ledger:
    """The ledger's rows commit by commit: the orders created in the commit's slice of the
    month (every version and fill), the fundings at instants in it, its liquidations. A row
    is written in the commit whose slice holds its arrival (`local_ts`), as the writer would:
    an order's later versions and a backfill wait for theirs; what arrives after the month's
    end is not captured (an order whose last fills would: open at the end)."""

    def __init__(self, p: Plan) -> None:
        self.p = p
        self.bounds = np.array([p.bound(k) for k in range(p.commits + 1)], np.int64)
        self.next_order = 0
        self.next_exec = 0
        self.waiting: dict[tuple[int, str], list[pa.Table]] = {}
        self.flushes = Flushes(p)

    def commit(self, k: int) -> list[tuple[str, pa.RecordBatch]]:
        p = self.p
        lo, hi = self.bounds[k], self.bounds[k + 1]
        rng = np.random.default_rng([int(GEN_VERSION), p.positions, k, 1])
        orders = (k + 1) * p.orders // p.commits - k * p.orders // p.commits
        busts = sum((2 * b + 1) * p.commits // (2 * BUST_TRADES) == k for b in range(BUST_TRADES))
        made = self.orders(lo, hi, orders, busts, rng) + self.funding(lo, hi, rng)
        for table, rows in made:
            self.route(k, table, rows)
        out: list[tuple[str, pa.RecordBatch]] = []
        for table in LEDGER:
            parts = self.waiting.pop((k, table), [])
            if parts:
                rows = pa.concat_tables(parts).sort_by("local_ts")
                out += [(table, b) for b in rows.combine_chunks().to_batches()]
        last = k == p.commits - 1
        records = self.flushes.records(lo, 2**62 if last else hi, rng)
        return out + [(queries.STORE_COMMITS, b) for b in records.to_batches()]

    def route(self, k: int, table: str, rows: pa.Table) -> None:
        local = rows.column("local_ts").combine_chunks().cast(pa.int64()).to_numpy()
        dest = np.maximum(np.searchsorted(self.bounds, local, "right") - 1, k)
        for d in np.unique(dest[local < T_END_US]):
            self.waiting.setdefault((int(d), table), []).append(
                rows.filter(pa.array((dest == d) & (local < T_END_US)))
            )

    def ids(self, kind: str, n: int) -> np.ndarray:
        first = getattr(self, f"next_{kind}")
        setattr(self, f"next_{kind}", first + n)
        return np.arange(first, first + n, dtype=np.int64)

    def orders(self, lo: int, hi: int, n: int, busts: int, rng: np.random.Generator):
        """`n` orders created in [lo, hi) and `busts` liquidations: their versions and fills."""
        m = n + busts
        bust = np.arange(m) >= n
        account = rng.integers(0, ACCOUNTS, m)
        symbol = rng.integers(0, len(SYMBOLS), m)
        key = account * len(SYMBOLS) + symbol
        kind = np.where(bust, FILLED, rng.choice(4, m, p=ORDER_KIND_SHARE))
        extra = np.where(
            kind == FILLED,
            rng.poisson(FILLED_EXTRA_FILLS, m),
            rng.poisson(PARTIAL_EXTRA_FILLS, m),
        )
        fills = np.where(bust, 1, np.where((kind == FILLED) | (kind == OPEN_PARTIAL), 1 + extra, 0))
        limit = ((kind != FILLED) | (rng.random(m) < LIMIT_SHARE)) & ~bust
        direction = np.where(KEY["buy"][key], 1, -1)
        closing = (rng.random(m) < CLOSING_SHARE) | bust
        buy = np.where(closing, direction < 0, direction > 0)
        created = (lo + (rng.random(m) * (hi - lo)).astype(np.int64)) // MS * MS
        entry = entry_ticks(key)
        bust_price = np.maximum(1, np.rint(entry * (1 - direction / KEY["lev"][key])))
        price = np.where(bust, bust_price.astype(np.int64), mark_at(symbol, created, rng))
        lots = 1 + (KEY["lots"][key] * rng.lognormal(-1.0, 0.8, m)).astype(np.int64)
        lots = np.maximum(np.minimum(lots, MAX_LOTS), fills + (kind == OPEN_PARTIAL))
        filled_lots = np.where(
            kind == FILLED, lots, np.where(kind == OPEN_PARTIAL, np.maximum(fills, lots // 2), 0)
        )
        rest = rng.random(m) < REST_SHARE
        order_ids = self.ids("order", m)
        order_id = uuids(order_ids, 1)
        link = message_ids(["cl-"], np.zeros(m), order_ids)
        link = unless((rng.random(m) >= LINK_ID_SHARE) | bust, link)

        # Fills: each order's filled lots split at random (at least one lot each), at times
        # after its creation (Market 1-30 ms; Limit 50 ms to 20 min; then 5 ms to 5 min).
        f = int(fills.sum())
        of = np.repeat(np.arange(m), fills)
        first = np.cumsum(fills) - fills
        fo = first[of]
        j = np.arange(f) - fo
        share = rng.random(f) + 1e-6
        share /= np.bincount(of, share, m)[of]
        part = 1 + np.floor(share * (filled_lots - fills)[of]).astype(np.int64)
        short = filled_lots - np.bincount(of, part, m).astype(np.int64)
        ends = (first + fills - 1)[fills > 0]
        part[ends] += short[fills > 0]
        opening = np.where(
            limit, loguniform(rng, 50 * MS, 20 * 60 * US, m), rng.integers(1, 31, m) * MS
        )
        gap = np.where(j == 0, opening[of], loguniform(rng, 5 * MS, 5 * 60 * US, f))
        fill_at = created[of] + group_cumsum(np.maximum(gap // MS, 1) * MS, fo)
        fs = symbol[of]
        value = value_units(part, price[of], fs)
        rate = np.where(limit[of], MAKER_RATE, TAKER_RATE)
        fee = round_div(value * rate, 100_000)
        fdir, fentry, fprice = direction[of], entry[of], price[of]
        pdp, qdp = SYMBOL_PDP[fs], SYMBOL_QDP[fs]
        linear = fdir * (fprice - fentry) * part * P10[8 - pdp - qdp]
        num = part * P10[8] * P10[pdp]
        inverse = fdir * (round_div(num, fentry) - round_div(num, fprice))
        pnl = np.where(INVERSE[fs], inverse, linear)
        # A closing fill realises PnL: never exactly 0 (at the entry price, a loss of 1e-8).
        pnl = np.where(closing[of], np.where(pnl == 0, -1, pnl), 0)
        cum_lots = group_cumsum(part, fo)
        cum_value = group_cumsum(value, fo)
        cum_fee = group_cumsum(fee, fo)
        cum_closed = group_cumsum(np.where(closing[of], pnl - fee, 0), fo)

        # Versions: New, one per fill (PartiallyFilled; the last of a filled order Filled),
        # Cancelled for a cancelled one (1 s to 2 h after New). A backfilled order: its last.
        versions = 1 + fills + (kind == CANCELLED)
        ov = np.repeat(np.arange(m), versions)
        vfirst = np.cumsum(versions) - versions
        jv = np.arange(int(versions.sum())) - vfirst[ov]
        is_fill = (jv >= 1) & (jv <= fills[ov])
        fi = np.where(is_fill, first[ov] + jv - 1, f)  # the fill behind a version (f: none)

        def at_fill(values):
            return np.append(values, 0)[fi]

        cancel_at = created + np.maximum(loguniform(rng, US, 2 * HOUR_US, m) // MS, 1) * MS
        at = np.where(jv == 0, created[ov], np.where(is_fill, at_fill(fill_at), cancel_at[ov]))
        status = np.where(
            jv == 0,
            0,
            np.where(is_fill, np.where((kind[ov] == FILLED) & (jv == fills[ov]), 2, 1), 3),
        )
        cum = at_fill(cum_lots)
        last_at = at[vfirst + versions - 1]
        backfill = (last_at + loguniform(rng, BACKFILL_MIN_US, BACKFILL_MAX_US, m)) // MS * MS
        back_local = backfill + rng.integers(1_000, 10_000, m)
        keep = ~rest[ov] | (jv == versions[ov] - 1)
        vrest = rest[ov]
        creation, local = arrival(at, rng)
        creation = np.where(vrest, backfill[ov], creation)
        local = np.where(vrest, back_local[ov], local)
        version_counter = order_ids[ov] * 16 + jv
        message = message_ids(
            ["ord-", "rest:o"], vrest, np.where(vrest, order_ids[ov], version_counter)
        )
        v = {
            "account": account[ov],
            "symbol": symbol[ov],
            "order_id": order_id.take(pa.array(ov)),
            "order_link_id": link.take(pa.array(ov)),
            "buy": buy[ov],
            "limit": limit[ov],
            "status": status,
            "price": price[ov],
            "lots": lots[ov],
            "cum_lots": cum,
            "leaves": np.where(status >= 2, 0, lots[ov] - cum),
            "cum_value": at_fill(cum_value),
            "cum_fee": at_fill(cum_fee),
            "closed_pnl": at_fill(cum_closed),
            "bust": bust[ov],
            "rest": vrest,
            "created": created[ov],
            "exchange": at,
            "creation": creation,
            "local": local,
            "message_id": message,
        }
        keep_arrow = pa.array(keep)
        version_rows = order_table(v).filter(keep_arrow)

        frest = rest[of]
        fcreation, flocal = arrival(fill_at, rng)
        exec_ids = self.ids("exec", f)
        x = {
            "account": account[of],
            "symbol": fs,
            "exec_id": uuids(exec_ids, 2),
            "order_id": order_id.take(pa.array(of)),
            "order_link_id": link.take(pa.array(of)),
            "buy": buy[of],
            "exec_type": pa.array(["Trade", "BustTrade"]).take(pa.array(bust[of].astype(np.int8))),
            "price": fprice,
            "lots": part,
            "value": value,
            "fee": fee,
            "rate": rate * 1_000,
            "pnl": pnl,
            "maker": limit[of],
            "leaves": lots[of] - cum_lots,
            "closed": np.where(closing[of], part, 0),
            "mark": np.maximum(1, np.rint(fprice * (1 + 0.0005 * rng.standard_normal(f)))).astype(
                np.int64
            ),
            "order_price": fprice,
            "order_lots": lots[of],
            "order_type": pa.array(["Limit", "Market"]).take(pa.array(np.where(limit[of], 0, 1))),
            "create_type": pa.array(["CreateByUser", "CreateByLiq"]).take(
                pa.array(bust[of].astype(np.int8))
            ),
            "rest": frest,
            "exchange": fill_at,
            "creation": np.where(frest, backfill[of], fcreation),
            "local": np.where(frest, back_local[of], flocal),
            "message_id": message_ids(
                ["exe-", "rest:o"], frest, np.where(frest, order_ids[of], exec_ids)
            ),
        }
        return [("order_events", version_rows), ("execution_events", execution_table(x))]

    def funding(self, lo: int, hi: int, rng: np.random.Generator):
        """The funding rows of the 8-hourly instants in [lo, hi)."""
        tables = []
        first = -(-(lo - T0_US) // FUNDING_EVERY_US)
        for i in range(first, MONTH_US // FUNDING_EVERY_US):
            instant = T0_US + i * FUNDING_EVERY_US
            if instant >= hi:
                break
            key = np.nonzero(rng.random(ACCOUNTS * len(SYMBOLS)) < FUNDING_OPEN_SHARE)[0]
            n = len(key)
            account, symbol = key // len(SYMBOLS), key % len(SYMBOLS)
            direction = np.where(KEY["buy"][key], 1, -1)
            low, high = FUNDING_RATE_MICROS
            rate = rng.integers(low, high + 1, len(SYMBOLS))[symbol] * direction
            lots = np.minimum(rng.integers(1, 2 * KEY["lots"][key] + 1), MAX_LOTS)
            mark = mark_at(symbol, np.full(n, instant), rng)
            value = value_units(lots, mark, symbol)
            rest = rng.random(n) < REST_SHARE
            pushed = instant + rng.integers(10, 3_000, ACCOUNTS)[account] * MS
            backfill = (instant + loguniform(rng, BACKFILL_MIN_US, BACKFILL_MAX_US, n)) // MS * MS
            creation = np.where(rest, backfill, pushed)
            exec_ids = self.ids("exec", n)
            side = SIDES.take(pa.array(np.where(direction > 0, 0, 1)))
            order_id = pc.binary_join_element_wise(
                str(instant // US), SYMBOL_NAMES.take(pa.array(symbol)), str(i + 1), side, "-"
            )
            zero = np.zeros(n, np.int64)
            x = {
                "account": account,
                "symbol": symbol,
                "exec_id": uuids(exec_ids, 2),
                "order_id": order_id,
                "order_link_id": pa.nulls(n, pa.string()),
                "buy": direction > 0,
                "exec_type": const("Funding", n, pa.string()),
                "price": mark,
                "lots": lots,
                "value": value,
                "fee": round_div(value * rate, 1_000_000),
                "rate": rate * 100,
                "pnl": zero,
                "maker": np.zeros(n, bool),
                "leaves": zero,
                "closed": zero,
                "mark": mark,
                "order_price": zero,
                "order_lots": zero,
                "order_type": const("UNKNOWN", n, pa.string()),
                "create_type": pa.nulls(n, pa.string()),
                "rest": rest,
                "exchange": np.full(n, instant),
                "creation": creation,
                "local": creation + rng.integers(1_000, 10_000, n),
                "message_id": message_ids(["fund-", "rest:f"], rest, exec_ids),
            }
            tables.append(("execution_events", execution_table(x)))
        return tables


def commits(positions: int, ledger: bool = True):
    """The commits of a store of `positions` position rows, each a list of (table, batch):
    the rows of one slice of the month, in all about `COMMIT_ROWS` (positions and wallets
    only: `POSITIONS_PER_COMMIT` positions and a fifth as many wallet rows)."""
    p = plan(positions, ledger)
    book = Ledger(p) if ledger else None
    for k in range(p.commits):
        rng = np.random.default_rng([int(GEN_VERSION), positions, k])
        p0, p1 = k * positions // p.commits, (k + 1) * positions // p.commits
        w0, w1 = k * p.wallet_pushes // p.commits, (k + 1) * p.wallet_pushes // p.commits
        out = [
            ("position_snapshots", position_rows(p0, p1, positions, rng)),
            ("wallet_snapshots", wallet_rows(w0, w1, p.wallet_pushes, rng)),
        ]
        if book is not None:
            out += book.commit(k)
        yield out


# --- Building stores ---------------------------------------------------------------------------


@dataclass
class Build:
    positions: int
    wallets: int
    commits: int
    write_cpu_s: float
    write_wall_s: float
    generate_s: float
    built_at: str
    bytes: int = 0
    cached: bool = False
    #: Each commit's write CPU µs per row, in order: does a commit cost more as the store grows?
    commit_cpu_us: list[float] = field(default_factory=list)
    executions: int = 0
    orders: int = 0
    store_commits: int = 0
    #: The whole build, generation, writes and the close's last moves.
    total_wall_s: float = 0.0
    #: The writer's DuckDB memory limit the moves ran under.
    writer_memory_limit: str = ""

    @property
    def rows(self) -> int:
        return self.positions + self.wallets + self.executions + self.orders + self.store_commits

    @property
    def cpu_us_per_row(self) -> float:
        return self.write_cpu_s / self.rows * 1e6

    def trend(self) -> str:
        """Median CPU µs a row of the first and the last tenth of the commits (the last
        commit, usually partial, left out)."""
        full = self.commit_cpu_us[:-1]
        if len(full) < 10:
            return "—"
        tenth = len(full) // 10
        first, last = statistics.median(full[:tenth]), statistics.median(full[-tenth:])
        return f"{first:.2f} → {last:.2f}"


def stored_rows(path: Path, tables) -> dict[str, int]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    finally:
        con.close()


def moves_failed(store, where: str) -> None:
    """A move into the file failed (its rows wait in the hot tier, the state is not kept):
    the store would not be what the benchmark measures, so the build stops."""
    failure = store.move_failure
    cause = repr(getattr(failure, "__context__", None) or failure)
    raise AssertionError(
        f"{where}: the store's move failed ({cause[:300]}); the writer's DuckDB memory "
        f"limit started at {duckdb_store.WRITER_MEMORY_MB} MB (a move that runs out doubles "
        "it; --writer-memory-mb sets where it starts)"
    )


def build(
    path: Path,
    positions: int,
    make: Callable[[Path], object] | None = None,
    ledger: bool = True,
) -> Build:
    """A fresh store at `path` written commit by commit; CPU counted around `write()` only.
    Fails unless the store holds every generated row of every table (none taken for a
    duplicate by `queries.DEDUP`)."""
    began = time.perf_counter()
    store = make(path) if make else open_store("duckdb", path)
    store.create()
    cpu = wall = generate = 0.0
    rows = count = 0
    made: dict[str, int] = {}
    each: list[float] = []
    clock = time.perf_counter()
    for batches in commits(positions, ledger):
        generate += time.perf_counter() - clock
        c0, w0 = time.process_time(), time.perf_counter()
        committed = store.write(batches)
        spent = time.process_time() - c0
        # As the service's writer does: no more batches while the moves are behind (the hot
        # tier's cap), or a build outruns its moves and the hot tier holds the whole store
        # (52 GB of 100M's before it filled the disk).
        while getattr(store, "backlogged", lambda: False)():
            time.sleep(0.05)
        rows += committed
        cpu += spent
        each.append(spent / max(committed, 1) * 1e6)
        wall += time.perf_counter() - w0
        for table, batch in batches:
            made[table] = made.get(table, 0) + batch.num_rows
        if getattr(store, "move_failure", None) is not None:
            store.close()
            moves_failed(store, f"{positions:,} positions, commit {count + 1}")
        count += 1
        clock = time.perf_counter()
        if count % 20 == 0:
            print(
                f"  {count} commits, {rows:,} rows, {cpu / rows * 1e6:.2f} µs CPU a row",
                flush=True,
            )
    c0 = time.process_time()
    store.close()
    cpu += time.process_time() - c0
    hot = getattr(store, "hot", None)
    if hot is not None and hot.waiting():
        moves_failed(store, f"{hot.waiting():,} rows stayed in the hot tier")
    kept = stored_rows(path, made)
    if kept != made:
        lost = {t: f"{kept[t]:,} of {made[t]:,}" for t in made if kept[t] != made[t]}
        raise AssertionError(f"the store kept {lost} rows")
    return Build(
        positions,
        made["wallet_snapshots"],
        count,
        cpu,
        wall,
        generate,
        datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        path.stat().st_size,
        commit_cpu_us=each,
        executions=made.get("execution_events", 0),
        orders=made.get("order_events", 0),
        store_commits=made.get(queries.STORE_COMMITS, 0),
        total_wall_s=time.perf_counter() - began,
        writer_memory_limit=f"{getattr(getattr(store, 'file', None), 'memory_mb', '?')} MB",
    )


def code_digest() -> str:
    """What the stored rows depend on besides the generator: the code of the DuckDB store's
    write path (every `ingestor.queries` / `ingestor.sinks` module imported so far: the lake
    and Parquet stores are imported only when used), the schemas and DuckDB's version."""
    digest = hashlib.sha256()
    names = sorted(
        n for n in sys.modules if n == "ingestor.queries" or n.startswith("ingestor.sinks")
    )
    for name in names:
        file = getattr(sys.modules[name], "__file__", None)
        if file:
            digest.update(name.encode() + b"\0" + Path(file).read_bytes())
    digest.update(str(SCHEMAS).encode() + duckdb.__version__.encode())
    return digest.hexdigest()[:10]


def code_version() -> str:
    """The commit the store's code is at, and whether python/ has changes not committed."""
    import subprocess

    def git(*argv: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *argv], capture_output=True, text=True)
        return done.stdout.strip()

    dirty = " + uncommitted changes to python/" if git("status", "--porcelain", "python") else ""
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return f"{head}{dirty} (digest {CODE} of {', '.join(CODE_FILES)})"


def cached_store(cache: Path, label: str, positions: int) -> tuple[Path, Build]:
    key = f"{label}-g{GEN_VERSION}-{CODE}"
    folder = cache / key
    meta = folder / "build.json"
    if meta.exists():
        result = Build(**{**json.loads(meta.read_text()), "cached": True})
        result.bytes = (folder / "store.duckdb").stat().st_size
        print(f"{label}: cached store {folder} (built {result.built_at})", flush=True)
        return folder / "store.duckdb", result
    for stale in cache.glob(f"{label}-g*"):
        print(f"{label}: removing {stale}, made by other code or another generator", flush=True)
        shutil.rmtree(stale)
    building = cache / f"{key}.building"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    print(f"{label}: building {positions:,} position rows in {building}", flush=True)
    result = build(building / "store.duckdb", positions)
    (building / "build.json").write_text(json.dumps(asdict(result), indent=1))
    building.rename(folder)
    return folder / "store.duckdb", result


def state_cost(cache: Path, positions: int, rounds: int) -> dict | None:
    """Write CPU per row with and without the store's state maintenance, alternating fresh
    stores (`DuckDBStore(path, state=False)`); None when this build has no such keyword.
    The moves run inside `write()` (`mover=False`), so every move's CPU is counted: on the
    mover thread, a move that ran while the next commit was generated was not (1 M rows:
    10.9 against 4.9 µs a row counted that way, 15.4 against 6.7 inline)."""
    if "state" not in inspect.signature(DuckDBStore).parameters:
        return None
    folder = cache / "state-ab"
    runs: dict[str, list[float]] = {"with": [], "without": []}
    for r in range(rounds):
        for name, state in (("with", True), ("without", False)):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            result = build(
                folder / "store.duckdb",
                positions,
                lambda p, s=state: DuckDBStore(p, state=s, mover=False),
                ledger=False,
            )
            runs[name].append(result.cpu_us_per_row)
            print(f"state {name} (round {r + 1}): {result.cpu_us_per_row:.2f} µs CPU a row")
    shutil.rmtree(folder, ignore_errors=True)
    with_, without = statistics.median(runs["with"]), statistics.median(runs["without"])
    return {
        "positions": positions,
        "runs": runs,
        "with": with_,
        "without": without,
        "ratio": with_ / without,
    }


#: Computed at start, from the code this process imported.
CODE = code_digest()
CODE_FILES = sorted(
    n.removeprefix("ingestor.")
    for n in sys.modules
    if n == "ingestor.queries" or n.startswith("ingestor.sinks")
)

# --- Queries ---------------------------------------------------------------------------------

POSITION_CHECK = f"{queries.POSITION_KEY}, exchange_ts"
WALLET_CHECK = f"{queries.WALLET_KEY}, exchange_ts"
# The plain order, the views' (`queries.POSITION_ORDER` / `WALLET_ORDER`) as arg_max sees it:
# a NULL seq sorts below every seq. The plain query takes the whole row (`h`, a struct) by
# arg_max and unnests it: `arg_max(COLUMNS(*), order)` evaluates the order once per column
# and took 5× as long (3.1 s against 0.6 s at 1M rows), and plain `arg_max` per column skips
# NULL values, so a column NULL in the newest row would come from an older row (a row struct
# is never NULL).
POSITION_PLAIN_ORDER = "(exchange_ts, coalesce(seq, -1), local_ts)"
WALLET_PLAIN_ORDER = "(exchange_ts, local_ts)"


def sql_instant(us: int) -> str:
    moment = datetime.fromtimestamp(us / US, UTC)
    return f"TIMESTAMPTZ '{moment.strftime('%Y-%m-%d %H:%M:%S.%f')}+00'"


def plain_latest(table: str, key: str, order: str, instant: int | None = None) -> str:
    where = f"WHERE exchange_ts <= {sql_instant(instant)}" if instant is not None else ""
    return f"SELECT unnest(arg_max(h, {order})) FROM {table} h {where} GROUP BY {key}"


@dataclass
class Query:
    name: str
    shipped: str
    #: None: no plain counterpart (the shipped SQL is itself a query over the raw table);
    #: the shipped side is timed alone.
    plain: str | None
    #: The columns the two must agree on, row for row (as a count and a checksum)...
    check: str
    #: ...and every column of the answer (no two rows tie in the views' order, so the two
    #: answers must be the same rows).
    whole: str
    goal_ms: float | None = None
    #: Named parameters of the shipped SQL (the report's `$start`, `$stop`, `$step`).
    params: dict | None = None
    runs: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    rows: int = 0
    #: Why a side has no timings (it ran out of memory or time), if so.
    failed: dict[str, str] = field(default_factory=dict)


def has_relation(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
    ).fetchone()[0]
    return found > 0


def has_macro(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    found = con.execute(
        "SELECT count(*) FROM duckdb_functions() WHERE function_name = ?", [name]
    ).fetchone()[0]
    return found > 0


def every_instant(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    """The name of a `wallets_every` answer's instant: its column the table does not have."""
    table = {
        c for (c,) in con.execute("SELECT column_name FROM (DESCRIBE wallet_snapshots)").fetchall()
    }
    extra = [name for name, *_ in con.execute(f"DESCRIBE {sql}").fetchall() if name not in table]
    if len(extra) != 1:
        raise AssertionError(f"wallets_every answers {extra} besides the table's columns")
    return extra[0]


def query_set(con: duckdb.DuckDBPyConnection) -> tuple[list[Query], list[str]]:
    mid = T0_US + 15 * 24 * HOUR_US + 12 * HOUR_US + 34 * 60 * US + 56_789_000
    end = T0_US + MONTH_US - 3 * HOUR_US - 42 * 60 * US - 31_250_000
    pk, wk = queries.POSITION_KEY, queries.WALLET_KEY
    position_columns = ", ".join(f.name for f in POSITIONS)
    wallet_columns = ", ".join(f.name for f in WALLETS)
    found = [
        Query(
            "latest_positions",
            "SELECT * FROM latest_positions",
            plain_latest("position_snapshots", pk, POSITION_PLAIN_ORDER),
            check=POSITION_CHECK,
            whole=position_columns,
            goal_ms=50,
        ),
        Query(
            "latest_wallets",
            "SELECT * FROM latest_wallets",
            plain_latest("wallet_snapshots", wk, WALLET_PLAIN_ORDER),
            check=WALLET_CHECK,
            whole=wallet_columns,
            goal_ms=50,
        ),
    ]
    for label, instant in (("mid-month", mid), ("near the end", end)):
        found.append(
            Query(
                f"positions_asof ({label})",
                f"SELECT * FROM positions_asof({sql_instant(instant)})",
                plain_latest("position_snapshots", pk, POSITION_PLAIN_ORDER, instant),
                check=POSITION_CHECK,
                whole=position_columns,
                goal_ms=500,
            )
        )
        found.append(
            Query(
                f"wallets_asof ({label})",
                f"SELECT * FROM wallets_asof({sql_instant(instant)})",
                plain_latest("wallet_snapshots", wk, WALLET_PLAIN_ORDER, instant),
                check=WALLET_CHECK,
                whole=wallet_columns,
                goal_ms=500,
            )
        )
    notes = []
    if has_macro(con, "wallets_every"):
        day = T0_US + 14 * 24 * HOUR_US
        for label, start, stop, step in (
            ("a day at 1 min", day, day + 24 * HOUR_US, "INTERVAL 1 MINUTE"),
            ("the month at 1 h", T0_US, T0_US + MONTH_US, "INTERVAL 1 HOUR"),
        ):
            args = f"{sql_instant(start)}, {sql_instant(stop)}, {step}"
            shipped = f"SELECT * FROM wallets_every({args})"
            instant = every_instant(con, shipped)
            plain = f"""
                WITH grid AS (SELECT unnest(generate_series({args})) AS {instant}),
                keys AS (SELECT DISTINCT {wk} FROM wallet_snapshots)
                SELECT g.{instant}, w.* FROM grid g CROSS JOIN keys k
                ASOF JOIN wallet_snapshots w
                  ON w.account_id = k.account_id AND w.account_type = k.account_type
                 AND w.coin = k.coin AND w.exchange_ts <= g.{instant}
            """
            found.append(
                Query(
                    f"wallets_every ({label})",
                    shipped,
                    plain,
                    check=f"{instant}, {WALLET_CHECK}",
                    whole=f"{instant}, {wallet_columns}",
                )
            )
    else:
        notes.append("`wallets_every` is not in this store yet: skipped.")
    if all(has_relation(con, t) for t in (*LEDGER, queries.STORE_COMMITS)):
        found += ledger_queries(mid, end)
    else:
        notes.append("The store has no ledger tables or store_commits: their queries skipped.")
    return found, notes


#: The plain newest version of each order: the window an analyst writes (newest by the
#: exchange's updated time, then our arrival); the view's tie-breaks (cum_exec_qty, a final
#: status) never decide in these rows, whose versions have distinct times.
PLAIN_ORDER_WINDOW = (
    "row_number() OVER (PARTITION BY account_id, order_id ORDER BY exchange_ts DESC, "
    "local_ts DESC) = 1"
)
#: Where `ledger_tieout` starts: the second day.
TIEOUT_START_US = T0_US + 24 * HOUR_US
#: The account the one-account queries read.
ONE_ACCOUNT = "acct-0421"


def plain_ledger_sums(where: str, by: str) -> str:
    """Realised PnL, fees, funding and fills of execution_events, as an analyst sums them:
    the coin from fee_currency (every generated row carries it; the views derive it from
    the symbol, `queries.SETTLE_COIN`)."""
    return f"""
        SELECT {by},
               coalesce(sum(exec_pnl) FILTER (WHERE exec_type <> 'Funding'), 0) AS realised_pnl,
               coalesce(sum(exec_fee) FILTER (WHERE exec_type <> 'Funding'), 0) AS fees,
               coalesce(sum(exec_fee) FILTER (WHERE exec_type = 'Funding'), 0) AS funding,
               realised_pnl - fees - funding AS net_pnl,
               coalesce(sum(exec_value) FILTER (WHERE exec_type <> 'Funding'), 0) AS volume,
               count(*) FILTER (WHERE exec_type <> 'Funding') AS fills,
               count(*) AS executions
        FROM execution_events
        WHERE {where}
        GROUP BY ALL
    """


def ledger_queries(mid: int, end: int) -> list[Query]:
    """The ledger's views and macros and the report's commit delay, on the month."""
    start, stop = sql_instant(T0_US), sql_instant(T_END_US)
    # The tie-out from the second day: the stores' wallet rows begin at the month's start,
    # so a balance at the first instant would be none (an empty side of the join).
    tie_start = sql_instant(TIEOUT_START_US)
    order_columns = ", ".join(f.name for f in ORDERS)
    execution_columns = ", ".join(f.name for f in EXECUTIONS)
    order_check = "account_id, order_id, exchange_ts"
    execution_check = "account_id, exec_id, exchange_ts"
    found = [
        Query(
            "latest_orders",
            "SELECT * FROM latest_orders",
            f"SELECT * FROM order_events QUALIFY {PLAIN_ORDER_WINDOW}",
            check=order_check,
            whole=order_columns,
        ),
        # The open orders are a state with checkpoints (issue 18: issue 17's goals apply).
        Query(
            "open_orders",
            "SELECT * FROM open_orders",
            f"""SELECT * FROM (SELECT * FROM order_events QUALIFY {PLAIN_ORDER_WINDOW})
                WHERE order_status IN ('New', 'PartiallyFilled')""",
            check=order_check,
            whole=order_columns,
            goal_ms=50,
        ),
    ]
    for label, instant in (("mid-month", mid), ("near the end", end)):
        at = sql_instant(instant)
        found.append(
            Query(
                f"open_orders_asof ({label})",
                f"SELECT * FROM open_orders_asof({at})",
                f"""SELECT * FROM (
                    SELECT * FROM order_events WHERE exchange_ts <= {at}
                    QUALIFY {PLAIN_ORDER_WINDOW}
                ) WHERE order_status IN ('New', 'PartiallyFilled')""",
                check=order_check,
                whole=order_columns,
                goal_ms=500,
            )
        )
    month = f"exchange_ts >= {start} AND exchange_ts < {stop}"
    one = f"account_id = '{ONE_ACCOUNT}' AND {month}"
    for view, types in (
        ("fills", "exec_type IN ('Trade', 'AdlTrade', 'BustTrade')"),
        ("funding", "exec_type = 'Funding'"),
    ):
        found.append(
            Query(
                f"{view} (one account, the month)",
                f"SELECT * FROM {view} WHERE {one}",
                f"SELECT * FROM execution_events WHERE {one} AND {types}",
                check=execution_check,
                whole=execution_columns,
            )
        )
    daily = "account_id, category, symbol, coin, day"
    sums = "realised_pnl, fees, funding, net_pnl, volume, fills"
    found.append(
        Query(
            "pnl_daily (every account, the month)",
            "SELECT * FROM pnl_daily WHERE day >= DATE '2026-11-01' AND day < DATE '2026-12-01'",
            f"""SELECT * EXCLUDE (executions) FROM ({
                plain_ledger_sums(
                    month,
                    "account_id, category, symbol, fee_currency AS coin, "
                    "(exchange_ts AT TIME ZONE 'UTC')::DATE AS day",
                )
            }) ORDER BY account_id, day, category, symbol""",
            check=daily,
            whole=f"{daily}, {sums}",
        )
    )
    w0, w1 = (
        "SELECT account_id, account_type, coin, wallet_balance FROM ("
        + plain_latest("wallet_snapshots", queries.WALLET_KEY, WALLET_PLAIN_ORDER, instant)
        + ")"
        for instant in (TIEOUT_START_US, T_END_US)
    )
    moved = plain_ledger_sums(
        f"exchange_ts > {tie_start} AND exchange_ts <= {stop}", "account_id, fee_currency AS coin"
    )
    found.append(
        Query(
            "ledger_tieout (Nov 2 to the end)",
            f"SELECT * FROM ledger_tieout({tie_start}, {stop})",
            f"""
            WITH w0 AS ({w0}), w1 AS ({w1}), x AS ({moved})
            SELECT *, balance_change - (realised_pnl - fees - funding) AS difference FROM (
                SELECT w1.account_id, w1.account_type, w1.coin,
                       w0.wallet_balance AS start_balance, w1.wallet_balance AS stop_balance,
                       w1.wallet_balance - coalesce(w0.wallet_balance, 0) AS balance_change,
                       coalesce(x.realised_pnl, 0) AS realised_pnl, coalesce(x.fees, 0) AS fees,
                       coalesce(x.funding, 0) AS funding,
                       coalesce(x.executions, 0) AS executions
                FROM w1
                LEFT JOIN w0 USING (account_id, account_type, coin)
                LEFT JOIN x ON x.account_id = w1.account_id AND x.coin = w1.coin
            )
            ORDER BY account_id, account_type, coin
            """,
            check=queries.WALLET_KEY,
            whole=(
                f"{queries.WALLET_KEY}, start_balance, stop_balance, balance_change, "
                "realised_pnl, fees, funding, executions, difference"
            ),
        )
    )
    # The report's own query, with the report's parameters for the month (its step there).
    params = {
        "start": MONTH_START,
        "stop": MONTH_START + MONTH,
        "step": timedelta(hours=1),
    }
    for label, over_time in (("per table", False), ("per table and hour", True)):
        found.append(
            Query(
                f"commit delay ({label}, the month)",
                queries.report_commit_delay(over_time),
                None,
                check="table_name, bucket",
                whole="table_name, bucket, p50_us, p99_us, max_us, flushes, rows",
                params=params,
            )
        )
    return found


def used(sql: str, params: dict | None) -> dict:
    """The named parameters `sql` uses (DuckDB refuses others)."""
    return {k: v for k, v in (params or {}).items() if f"${k}" in sql}


def run_once(
    con: duckdb.DuckDBPyConnection, sql: str, params: dict | None = None
) -> tuple[float, float, int]:
    """Wall and process CPU seconds to run `sql` and take every row of its answer."""
    c0, w0 = time.process_time(), time.perf_counter()
    reader = con.execute(sql, used(sql, params)).fetch_record_batch(1_000_000)
    rows = sum(batch.num_rows for batch in reader)
    return time.perf_counter() - w0, time.process_time() - c0, rows


def checksum(con: duckdb.DuckDBPyConnection, q: Query, sql: str) -> tuple[int, int, int]:
    """Rows, a checksum over `q.check` and one over every column of `sql`'s answer. This is
    also the warm-up: it runs the query and reads all of its answer."""
    query = f"SELECT count(*), sum(hash({q.check})), sum(hash({q.whole})) FROM ({sql})"
    count, keyed, every = con.execute(query, used(sql, q.params)).fetchone()
    return count, int(keyed or 0), int(every or 0)


#: What stops one query without stopping the benchmark: DuckDB out of memory or temp space,
#: or the watchdog's interrupt at `--timeout`.
GIVE_UP = (duckdb.OutOfMemoryException, duckdb.InterruptException)


def guarded(con: duckdb.DuckDBPyConnection, timeout_s: float, run: Callable, *args):
    watchdog = threading.Timer(timeout_s, con.interrupt)
    watchdog.start()
    try:
        return run(*args)
    finally:
        watchdog.cancel()


def give_up(q: Query, which: str, label: str, started: float, error: Exception) -> None:
    first = str(error).splitlines()[0]
    q.failed[which] = f"gave up after {time.perf_counter() - started:,.0f} s: {first}"
    print(f"{label:>5} {q.name} {which}: {q.failed[which]}", flush=True)


def time_queries(
    path: Path, label: str, runs: int, timeout_s: float, temp_limit: str
) -> tuple[list[Query], list[str]]:
    con = open_reader("duckdb", path)
    # A plan gone wrong spills until the disk is full: capped, it fails instead.
    con.execute(f"SET max_temp_directory_size = '{temp_limit}'")
    try:
        found, notes = query_set(con)
        for q in found:
            if q.name.startswith("wallets_every"):
                plan = con.execute(f"EXPLAIN {q.shipped}").fetchall()[0][1]
                if "ASOF_JOIN" not in plan and "NESTED_LOOP_JOIN" in plan:
                    note = (
                        "DuckDB plans `wallets_every`'s ASOF JOIN as a NESTED_LOOP_JOIN and an "
                        "arg_max aggregate: the grid of instants is estimated at a few rows, "
                        "under `asof_loop_join_threshold` (64), so the loop join is chosen for "
                        "millions of rows (`SET asof_loop_join_threshold = 0` gives the "
                        "ASOF_JOIN; measured at 1M rows: 14 s and 7 s)."
                    )
                    if note not in notes:
                        notes.append(note)
            answers = {}
            for which in [w for w in ("shipped", "plain") if getattr(q, w) is not None]:
                started = time.perf_counter()
                try:
                    answers[which] = guarded(con, timeout_s, checksum, con, q, getattr(q, which))
                except GIVE_UP as e:
                    give_up(q, which, label, started, e)
            if len(answers) == 2:
                shipped, plain = answers["shipped"], answers["plain"]
                if shipped[:2] != plain[:2]:
                    raise AssertionError(
                        f"{label} {q.name}: shipped and plain disagree: {shipped[0]:,} rows, "
                        f"checksum {shipped[1]} against {plain[0]:,} rows, checksum {plain[1]}"
                    )
                if shipped[2] != plain[2]:
                    raise AssertionError(
                        f"{label} {q.name}: the same keys and exchange_ts, but other values in "
                        f"some column (checksums {shipped[2]} and {plain[2]})"
                    )
            q.runs = {"shipped": [], "plain": []}
            for _ in range(runs):
                for which in [w for w in answers if w not in q.failed]:
                    started = time.perf_counter()
                    try:
                        wall, cpu, q.rows = guarded(
                            con, timeout_s, run_once, con, getattr(q, which), q.params
                        )
                    except GIVE_UP as e:
                        give_up(q, which, label, started, e)
                        continue
                    q.runs[which].append((wall, cpu))
            print(
                f"{label:>5} {q.name:<32} shipped {shown_ms(q, 'shipped'):>12}  "
                f"plain {shown_ms(q, 'plain'):>12}  ({q.rows:,} rows)",
                flush=True,
            )
    finally:
        con.close()
        shutil.rmtree(path.with_name(path.name + ".tmp"), ignore_errors=True)
    return found, notes


def shown_ms(q: Query, which: str) -> str:
    if which in q.failed:
        return "failed"
    if getattr(q, which) is None:
        return "—"
    return f"{median_ms(q, which):,.1f} ms"


def median_ms(q: Query, which: str, cpu: bool = False) -> float | None:
    if which in q.failed or not q.runs.get(which):
        return None
    return statistics.median(r[1 if cpu else 0] for r in q.runs[which]) * 1e3


def ratio(q: Query) -> float | None:
    shipped, plain = median_ms(q, "shipped"), median_ms(q, "plain")
    return plain / shipped if shipped and plain else None


def cell(q: Query, which: str) -> str:
    if which in q.failed:
        return "failed (see below)"
    if getattr(q, which) is None:
        return "— (none)"
    return f"{median_ms(q, which):,.1f} ({median_ms(q, which, True):,.0f})"


# --- Report ----------------------------------------------------------------------------------


def parse_size(text: str) -> int:
    text = text.strip().upper()
    factor = {"K": 1_000, "M": 1_000_000, "G": 1_000_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("KMG")) * factor)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def report(args, builds, results, notes, state, took, version) -> str:
    today = time.strftime("%Y-%m-%d", time.gmtime())
    lines = [
        "## Query benchmark",
        "",
        f"`make bench-queries` on {os.cpu_count()} shared cores ({cpu_model()}), "
        f"{today}, DuckDB {duckdb.__version__}, Python {platform.python_version()}: the shipped "
        f"queries against the plain SQL over the raw history, on one read-only connection "
        f"(`open_reader`, DuckDB's default threads, temp space capped at {args.temp_limit}), "
        f"{args.runs} runs each after a warm-up, alternating; median wall time (CPU in "
        "parentheses: process CPU, all threads). Every answer is read whole (Arrow batches). "
        f"A run is given up after {args.timeout:,.0f} s or when DuckDB runs out of memory or "
        "temp space.",
        "",
        f"Code measured: {version}. Wall times depend on what else the shared box runs; CPU "
        "is the steadier figure (equal to wall when DuckDB got one core's worth).",
        "",
        "Stores (generator version "
        f"{GEN_VERSION}): written through `open_store('duckdb').write()` in commits of about "
        f"{COMMIT_ROWS:,} rows, each one slice of a month from {MONTH_START:%Y-%m-%d} with "
        "every table's rows of that slice (by arrival); 1,000 accounts × 20 symbols (16 "
        "linear, 4 inverse, position_idx 0) and 1,000 UNIFIED accounts × 5 coins. Positions at "
        "a steady rate and a fifth as many wallet rows; 1% REST rows, a position's 1 h to 3 "
        "days older than its commit (wallet rows take their push's time, as the decoder gives "
        "them, so none is late). The ledger: a Trade fill per 4 position rows, from orders "
        "(78% filled in 1 + Poisson(2) fills, 20% cancelled unfilled, 2% still working at the "
        "month's end; versions New → PartiallyFilled… → Filled / Cancelled, ~1.5 per fill; 40% "
        "of fills closing, with nonzero execPnl), funding every 8 h on 92% of the 20,000 "
        f"position keys, {BUST_TRADES} BustTrades; 1% of orders and funding rows REST "
        "backfilled 2 s to 2 h after their last event (an order as one row, its final state). "
        "store_commits: a writer flushing every second of the month (a new pid each day), per "
        "flush one row per table it wrote (Poisson at the table's rate; funding in the 3 s "
        "after its instant), commit delay log-normal (median 280 ms, 50–1,500 ms). Every "
        "generated row is in the store (checked after the build). raw_json NULL (a store with "
        "raw JSON is larger and slower to write; the queries here do not read it unless they "
        "select it).",
        "",
        "### Building (the store's write path)",
        "",
        "| size | position rows | wallet rows | execution rows | order rows "
        "| store_commits rows | commits | write wall | write CPU µs / row "
        "| first → last tenth of the commits | generating | whole build | store on disk "
        "| built |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for label, b in builds.items():
        lines.append(
            f"| {label} | {b.positions:,} | {b.wallets:,} | {b.executions:,} | {b.orders:,} | "
            f"{b.store_commits:,} | {b.commits:,} | "
            f"{b.write_wall_s:,.0f} s | {b.cpu_us_per_row:.2f} | {b.trend()} | "
            f"{b.generate_s:,.0f} s | {b.total_wall_s:,.0f} s | "
            f"{gib(b.bytes)} | {b.built_at}{' (cached)' if b.cached else ''} |"
        )
    limits = ", ".join(f"{k} {b.writer_memory_limit or '?'}" for k, b in builds.items())
    lines += [
        "",
        f"The moves ran under the writer's DuckDB memory limit of: {limits} (the store's own: "
        f"{STORE_MEMORY_LIMIT} at the start, doubled by a move that runs out; "
        "`--writer-memory-mb` sets the start for the builds). "
        "Write wall is the `write()` calls (the hot tier's files); the moves run on the "
        "store's mover thread meanwhile and the last ones in `close()`, which the whole "
        "build's wall time includes.",
    ]
    lines += ["", "### Cost of keeping the state", ""]
    if state is None:
        lines.append("State maintenance not in this build (`DuckDBStore` has no `state` keyword).")
    else:
        lines.append(
            f"{state['positions']:,} position rows (and a fifth as many wallet rows) into fresh "
            f"stores, alternating, {len(state['runs']['with'])} each, the moves inside "
            "`write()` (`mover=False`: all of their CPU counted): "
            f"{state['with']:.2f} µs CPU a row with the state, {state['without']:.2f} without "
            f"(`state=False`): **{state['ratio']:.2f}×** (goal ≤ 1.10×)."
        )
    lines += [
        "",
        "### Queries",
        "",
        "| query | size | rows | shipped ms | plain ms | plain ÷ shipped |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for label, found in results.items():
        for q in found:
            r = ratio(q)
            lines.append(
                f"| {q.name} | {label} | {q.rows:,} | {cell(q, 'shipped')} | {cell(q, 'plain')} "
                f"| {f'{r:.2f}×' if r else '—'} |"
            )
            notes += [f"{label} {q.name}, {which}: {why}" for which, why in q.failed.items()]
    lines += [
        "",
        "Plain queries: `SELECT unnest(arg_max(h, (exchange_ts, coalesce(seq, -1), "
        "local_ts))) FROM position_snapshots h [WHERE exchange_ts <= T] GROUP BY account_id, "
        "category, symbol, position_idx` (wallets: `(exchange_ts, local_ts)` by account_id, "
        "account_type, coin); `wallets_every` against an ASOF JOIN of `generate_series` × the "
        "wallet keys with wallet_snapshots. The whole row as one struct: "
        "`arg_max_null(COLUMNS(*), (...))` evaluates the order once per column and took 5× as "
        "long at 1M rows (3.1 s against 0.6 s), and `arg_max(COLUMNS(*), ...)` is wrong, since "
        "`arg_max` skips NULL values: a column NULL in the newest row (session_avg_price, the "
        "greeks) would come from an older row. The warm-up is the check: each pair must agree "
        "on row count and a checksum over key + exchange_ts (and the instant), and on one "
        "over every column (the rows have no ties in the views' order), or the run stops.",
        "",
        "The ledger's plain queries: `latest_orders`, `open_orders` and `open_orders_asof(T)` "
        "against "
        "`QUALIFY row_number() OVER (PARTITION BY account_id, order_id ORDER BY exchange_ts "
        "DESC, local_ts DESC) = 1` over order_events (`WHERE exchange_ts <= T`, then "
        "`order_status IN ('New', 'PartiallyFilled')`); `fills` / `funding` of "
        f"{ONE_ACCOUNT} over the month against execution_events filtered by account, "
        "exec_type and time; `pnl_daily` of the month against a GROUP BY account, symbol, "
        "fee_currency and UTC day of execution_events; `ledger_tieout` from Nov 2 (the "
        "stores' wallet rows begin at the month's start: a balance at its first instant would "
        "be none) to the end against the same tie-out over `arg_max` balances at both "
        "instants and a GROUP BY of the executions. "
        "`open_orders` and `open_orders_asof` read the open orders' state and checkpoints; "
        "the other views and macros are their definitions over the history (no state kept "
        "for them): the shipped side is expected near 1×, and the numbers say what each "
        "costs at the size. The commit delay is `queries.report_commit_delay`, the report's own "
        "query over store_commits (row-weighted quantiles by a window), run with the report's "
        "parameters for the month (`$step` 1 h); it is SQL over the raw table already, so it "
        "has no plain counterpart and is timed alone.",
        "",
        "### Goals (issue 17)",
        "",
        "| goal | measured | met |",
        "|---|---|---|",
    ]
    big = results.get("100M")
    ten = results.get("10M")
    for shown, goal in (("latest_*", 50), ("*_asof(T)", 500)):
        if big:
            times = [median_ms(q, "shipped") for q in big if q.goal_ms == goal]
            if None in times:
                lines.append(f"| `{shown}` ≤ {goal} ms at 100M | one failed | no |")
                continue
            lines.append(
                f"| `{shown}` ≤ {goal} ms at 100M | slowest {max(times):,.1f} ms "
                f"| {'yes' if max(times) <= goal else 'no'} |"
            )
        else:
            lines.append(f"| `{shown}` ≤ {goal} ms at 100M | not run at 100M | — |")
    if ten:
        for q in ten:
            if q.goal_ms is None:
                continue
            r = ratio(q)
            met = "yes" if r and r >= 10 else "no"
            lines.append(f"| {q.name} ≥ 10× plain at 10M | {f'{r:.2f}×' if r else '—'} | {met} |")
    else:
        lines.append("| each ≥ 10× plain at 10M | not run at 10M | — |")
    lines += ["", *[f"- {n}" for n in notes], f"- The whole run took {took / 60:.1f} min."]
    return "\n".join(lines) + "\n"


def cached_folder(cache: Path, label: str) -> Path | None:
    """The cached store of a size as it is, whatever code built it: `--report` times a
    reader, and must neither rebuild a store nor remove one another run is reading."""
    found = sorted(f for f in cache.glob(f"{label}-g*") if (f / "build.json").exists())
    return found[-1] if found else None


def holds(held: dict[str, int]) -> str:
    """What a cached store holds besides positions and wallets, for report.md."""
    if not held:
        return (
            "The store has no ledger tables and no store_commits (made before them): the "
            "ledger's sections and the commit delay say so."
        )
    parts = ", ".join(f"{n:,} {t} rows" for t, n in held.items())
    missing = [t for t in (*LEDGER, queries.STORE_COMMITS) if t not in held]
    return f"It holds {parts}" + (f"; no {', '.join(missing)}." if missing else ".")


def report_timing(cache: Path, labels: list[str], out: Path) -> None:
    """`--report`: `ingestor report`'s queries and its HTML on the cached stores (1,000
    accounts, a month), each query timed, then the render; one cold run per store (what an
    analyst waits for), the HTML written to a temporary folder. Writes `out`."""
    import tempfile

    from ingestor import report

    lines = [
        "## `ingestor report` on the query benchmark's stores",
        "",
        f"`.venv/bin/python benches/bench_queries.py --report --sizes {','.join(labels)}` on "
        f"{os.cpu_count()} shared cores ({cpu_model()}), "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}, DuckDB {duckdb.__version__}, code "
        f"{code_version()}. The whole range of each store (a month), every account: one run, "
        "cold (a new read-only connection), wall time. The stores are `make bench-queries`' "
        "cached ones, as they are (what each holds is said under it).",
        "",
    ]
    for label in labels:
        folder = cached_folder(cache, label)
        if folder is None:
            lines += [f"{label}: no cached store under {cache} (run `make bench-queries`).", ""]
            continue
        print(f"{label}: report of {folder}", flush=True)
        with open_reader("duckdb", folder / "store.duckdb") as con:
            present = [t for t in (*LEDGER, queries.STORE_COMMITS) if has_relation(con, t)]
        held = stored_rows(folder / "store.duckdb", present)
        began = time.perf_counter()
        with open_reader("duckdb", folder / "store.duckdb") as con:
            answered = report.gather(con)
        queried = time.perf_counter() - began
        with tempfile.TemporaryDirectory() as tmp:
            html = Path(tmp) / "report.html"
            began = time.perf_counter()
            report.write(answered, html)
            rendered = time.perf_counter() - began
            size = html.stat().st_size
        total = queried + rendered
        lines += [
            f"### {label} ({folder.name}): {total:.1f} s in all "
            f"({'under' if total < 60 else 'over'} the minute)",
            "",
            f"{len(answered.accounts):,} accounts, {answered.start:%Y-%m-%d %H:%M} to "
            f"{answered.stop:%Y-%m-%d %H:%M} UTC, equity every "
            f"{report.step_text(answered.step)}; the HTML {size / 2**20:.1f} MiB, rendered in "
            f"{rendered:.1f} s. {holds(held)}",
            "",
            "| query | rows | s |",
            "|---|---:|---:|",
            *(
                f"| {name} | {len(answered.answers[name]):,} | {took:.2f} |"
                for name, took in answered.timings.items()
            ),
            "",
        ]
        print(f"{label}: {queried:.1f} s of queries, {rendered:.1f} s render", flush=True)
    lines.append(
        "equity_series is one `wallets_every` over the whole range at the chosen step (the "
        'month at 1 h), the macro `make bench-queries` times as "wallets_every (the month at '
        '1 h)" (benches/results/queries.md): the report is as fast as that macro. capture_lag '
        "reads every pushed row's local_ts and creation_ts in the range (executions' too where "
        "the store has them); pnl_daily reads the `pnl_daily` view (every execution of the "
        "range, grouped per account, symbol and day); commit_delay and commit_delay_over_time "
        "read every store_commits row of the range (`queries.report_commit_delay`, timed alone "
        'as "commit delay" in benches/results/queries.md).\n'
    )
    text = "\n".join(lines)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10M,100M", help="position rows per store, e.g. 1M")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds before one run of a query is given up"
    )
    parser.add_argument(
        "--temp-limit", default="20GiB", help="DuckDB's spill cap for the reader (a bad plan fails)"
    )
    parser.add_argument("--cache", type=Path, default=ROOT / "benches" / ".cache" / "queries")
    parser.add_argument(
        "--writer-memory-mb",
        type=int,
        help="where the store writer's DuckDB memory limit starts for the builds (default: "
        "the store's own, duckdb_store.WRITER_MEMORY_MB); the rows stored are the same",
    )
    parser.add_argument("--state-size", default="1M", help="the state cost's store (positions)")
    parser.add_argument("--state-rounds", type=int, default=2)
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=ROOT / "benches" / "results",
        help="where queries.md, queries.json and report.md are written",
    )
    parser.add_argument("--out", type=Path, help="queries.md elsewhere (default: in --out-dir)")
    parser.add_argument(
        "--report",
        action="store_true",
        help="time only `ingestor report` on the cached stores; writes report.md in --out-dir",
    )
    args = parser.parse_args()
    args.out = args.out or args.out_dir / "queries.md"
    if args.writer_memory_mb:
        duckdb_store.WRITER_MEMORY_MB = args.writer_memory_mb
    if args.report:
        labels = [s.strip() for s in args.sizes.split(",") if s.strip()]
        report_timing(args.cache, labels, args.out_dir / "report.md")
        return
    started = time.perf_counter()
    labels = [s.strip() for s in args.sizes.split(",") if s.strip()]
    builds: dict[str, Build] = {}
    results: dict[str, list[Query]] = {}
    notes: list[str] = []
    state = state_cost(args.cache, parse_size(args.state_size), args.state_rounds)
    if state:
        print(
            f"state: {state['with']:.2f} vs {state['without']:.2f} µs a row, {state['ratio']:.2f}×"
        )
    for label in labels:
        path, builds[label] = cached_store(args.cache, label, parse_size(label))
        b = builds[label]
        print(
            f"{label}: {b.rows:,} rows in {b.commits} commits, write {b.write_wall_s:.0f} s wall, "
            f"{b.cpu_us_per_row:.2f} µs CPU a row, {gib(b.bytes)} on disk",
            flush=True,
        )
        results[label], size_notes = time_queries(
            path, label, args.runs, args.timeout, args.temp_limit
        )
        notes += [n for n in size_notes if n not in notes]
    took = time.perf_counter() - started
    version = code_version()
    text = report(args, builds, results, notes, state, took, version)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    raw = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "cores": os.cpu_count(),
        "duckdb": duckdb.__version__,
        "code": version,
        "runs": args.runs,
        "took_s": took,
        "builds": {k: {**asdict(b), "cpu_us_per_row": b.cpu_us_per_row} for k, b in builds.items()},
        "state": state,
        "queries": [
            {
                "size": label,
                "query": q.name,
                "rows": q.rows,
                "shipped_sql": q.shipped,
                "plain_sql": q.plain,
                "shipped_ms": median_ms(q, "shipped"),
                "plain_ms": median_ms(q, "plain"),
                "shipped_cpu_ms": median_ms(q, "shipped", True),
                "plain_cpu_ms": median_ms(q, "plain", True),
                "runs": q.runs,
                "failed": q.failed,
            }
            for label, found in results.items()
            for q in found
        ],
        "notes": notes,
    }
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1) + "\n")
    # The report an analyst opens, on the same stores (benches/results/report.md).
    report_timing(args.cache, labels, args.out_dir / "report.md")


if __name__ == "__main__":
    main()
