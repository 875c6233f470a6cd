"""Query benchmark: what the store's shipped queries cost against the plain SQL an analyst would
write over the raw history, on stores of 10 and 100 million position rows.

Run with `make bench-queries` (`--sizes 1M` for a quick check). Per size, a DuckDB store is
built THROUGH THE STORE'S WRITE PATH (`open_store("duckdb")`, `create()`, `write()` in commits
of the writer's `COMMIT_ROWS`), from rows generated with numpy/pyarrow in the decoder's exact
Arrow schemas:

- positions: 1,000 accounts × 20 symbols (16 linear, 4 inverse), position_idx 0, a month at a
  steady rate, one row per push (message id a counter, seq increasing); 1% are REST resync
  rows (source 'rest', message id `rest:…`) whose exchange_ts (Bybit's `updatedTime`) is 1 h
  to 3 days (log-uniform) older than the commit's other rows, their creation_ts the resync's
  own time, as the decoder sets it;
- wallets: a fifth as many rows, 1,000 UNIFIED accounts × 5 coins, one push per account
  carrying its 5 coins; 1% REST rows. The decoder gives a wallet row exchange_ts =
  creation_ts (the push's or the answer's time), so wallet rows are never late.
- creation_ts = exchange_ts + 1-5 ms, local_ts = creation_ts + 1-10 ms, raw_json NULL.

Stores are cached under `--cache`, keyed by size, the generator's version and a digest of the
store's code (queries.py, sinks/*.py, the schemas, DuckDB's version): a store built by other
code would not hold what today's code maintains at commit. Each query is then timed against
its plain counterpart on one read-only connection (`open_reader("duckdb")`): one warm-up each,
then `--runs` runs alternating shipped / plain, median wall time and process CPU. Before the
timings count, each pair must agree on row count and a checksum over key + exchange_ts, or the
benchmark fails.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ingestor  # noqa: E402
from ingestor import queries  # noqa: E402
from ingestor.service.writer import COMMIT_ROWS  # noqa: E402
from ingestor.sinks import open_reader, open_store  # noqa: E402
from ingestor.sinks.duckdb_store import DuckDBStore  # noqa: E402

#: Bump when the generated rows change: cached stores of another version are rebuilt.
GEN_VERSION = "1"

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
    import pyarrow.compute as pc

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
        "account_id": ACCOUNT_NAMES.take(pa.array(account)),
        "category": SYMBOL_CATEGORY.take(pa.array(symbol)),
        "symbol": SYMBOL_NAMES.take(pa.array(symbol)),
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


def commits(positions: int):
    """The commits of a store of `positions` rows: (position batch, wallet batch) each."""
    wallet_pushes = positions // 5 // len(COINS)
    count = -(-positions // POSITIONS_PER_COMMIT)
    for k in range(count):
        rng = np.random.default_rng([int(GEN_VERSION), positions, k])
        p = position_rows(
            k * POSITIONS_PER_COMMIT,
            min((k + 1) * POSITIONS_PER_COMMIT, positions),
            positions,
            rng,
        )
        w0 = k * WALLET_PUSHES_PER_COMMIT
        w1 = wallet_pushes if k == count - 1 else min(w0 + WALLET_PUSHES_PER_COMMIT, wallet_pushes)
        w = wallet_rows(w0, w1, wallet_pushes, rng)
        yield p, w


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

    @property
    def rows(self) -> int:
        return self.positions + self.wallets

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


def build(path: Path, positions: int, make: Callable[[Path], object] | None = None) -> Build:
    """A fresh store at `path` written commit by commit; CPU counted around `write()` only."""
    store = make(path) if make else open_store("duckdb", path)
    store.create()
    cpu = wall = generate = 0.0
    rows = wallets = count = 0
    each: list[float] = []
    clock = time.perf_counter()
    for p, w in commits(positions):
        generate += time.perf_counter() - clock
        c0, w0 = time.process_time(), time.perf_counter()
        committed = store.write([("position_snapshots", p), ("wallet_snapshots", w)])
        spent = time.process_time() - c0
        rows += committed
        cpu += spent
        each.append(spent / max(committed, 1) * 1e6)
        wall += time.perf_counter() - w0
        wallets += w.num_rows
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
    if rows != positions + wallets:
        raise AssertionError(f"the store kept {rows:,} of {positions + wallets:,} rows")
    return Build(
        positions,
        wallets,
        count,
        cpu,
        wall,
        generate,
        datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        path.stat().st_size,
        commit_cpu_us=each,
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
    stores (`DuckDBStore(path, state=False)`); None when this build has no such keyword."""
    if "state" not in inspect.signature(DuckDBStore).parameters:
        return None
    folder = cache / "state-ab"
    runs: dict[str, list[float]] = {"with": [], "without": []}
    for r in range(rounds):
        for name, state in (("with", True), ("without", False)):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            result = build(
                folder / "store.duckdb", positions, lambda p, s=state: DuckDBStore(p, state=s)
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
    plain: str
    #: The columns the two must agree on, row for row (as a count and a checksum)...
    check: str
    #: ...and every column of the answer (no two rows tie in the views' order, so the two
    #: answers must be the same rows).
    whole: str
    goal_ms: float | None = None
    runs: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    rows: int = 0
    #: Why a side has no timings (it ran out of memory or time), if so.
    failed: dict[str, str] = field(default_factory=dict)


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
    return found, notes


def run_once(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[float, float, int]:
    """Wall and process CPU seconds to run `sql` and take every row of its answer."""
    c0, w0 = time.process_time(), time.perf_counter()
    reader = con.execute(sql).fetch_record_batch(1_000_000)
    rows = sum(batch.num_rows for batch in reader)
    return time.perf_counter() - w0, time.process_time() - c0, rows


def checksum(con: duckdb.DuckDBPyConnection, q: Query, sql: str) -> tuple[int, int, int]:
    """Rows, a checksum over `q.check` and one over every column of `sql`'s answer. This is
    also the warm-up: it runs the query and reads all of its answer."""
    count, keyed, every = con.execute(
        f"SELECT count(*), sum(hash({q.check})), sum(hash({q.whole})) FROM ({sql})"
    ).fetchone()
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
            for which in ("shipped", "plain"):
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
                            con, timeout_s, run_once, con, getattr(q, which)
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
    return "failed" if which in q.failed else f"{median_ms(q, which):,.1f} ms"


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
        "Stores: written through `open_store('duckdb').write()` in commits of "
        f"{COMMIT_ROWS:,} rows ({POSITIONS_PER_COMMIT:,} positions + "
        f"{WALLET_PUSHES_PER_COMMIT * len(COINS):,} wallet rows), a month from "
        f"{MONTH_START:%Y-%m-%d} at a steady rate; 1,000 accounts × 20 symbols (16 linear, 4 "
        "inverse, position_idx 0) and 1,000 UNIFIED accounts × 5 coins; 1% REST rows, a "
        "position's 1 h to 3 days older than its commit (wallet rows take their push's time, "
        "as the decoder gives them, so none is late); raw_json NULL (a store with raw JSON is "
        "larger and slower to write; the queries here do not read it unless they select it).",
        "",
        "### Building (the store's write path)",
        "",
        "| size | position rows | wallet rows | commits | write wall | write CPU µs / row "
        "| first → last tenth of the commits | generating | store on disk | built |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for label, b in builds.items():
        lines.append(
            f"| {label} | {b.positions:,} | {b.wallets:,} | {b.commits:,} | "
            f"{b.write_wall_s:,.0f} s | {b.cpu_us_per_row:.2f} | {b.trend()} | "
            f"{b.generate_s:,.0f} s | "
            f"{gib(b.bytes)} | {b.built_at}{' (cached)' if b.cached else ''} |"
        )
    lines += ["", "### Cost of keeping the state", ""]
    if state is None:
        lines.append("State maintenance not in this build (`DuckDBStore` has no `state` keyword).")
    else:
        lines.append(
            f"{state['positions']:,} position rows (and a fifth as many wallet rows) into fresh "
            f"stores, alternating, {len(state['runs']['with'])} each: "
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
        "### Goals (issue 17)",
        "",
        "| goal | measured | met |",
        "|---|---|---|",
    ]
    big = results.get("100M")
    ten = results.get("10M")
    for group, shown, goal in (("latest_", "latest_*", 50), ("_asof", "*_asof(T)", 500)):
        if big:
            times = [median_ms(q, "shipped") for q in big if group in q.name]
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
        "cached ones (no ledger tables: made before them, so the ledger's sections say so).",
        "",
    ]
    for label in labels:
        folder = cached_folder(cache, label)
        if folder is None:
            lines += [f"{label}: no cached store under {cache} (run `make bench-queries`).", ""]
            continue
        print(f"{label}: report of {folder}", flush=True)
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
            f"{rendered:.1f} s.",
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
        '1 h)" (benches/results/queries.md): the report is as fast as that macro, most of its '
        "time at both sizes. capture_lag reads every pushed row's local_ts and creation_ts in "
        "the range.\n"
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
    parser.add_argument("--state-size", default="1M", help="the state cost's store (positions)")
    parser.add_argument("--state-rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benches" / "results" / "queries.md")
    parser.add_argument(
        "--report",
        action="store_true",
        help="time only `ingestor report` on the cached stores; writes benches/results/report.md",
    )
    args = parser.parse_args()
    if args.report:
        labels = [s.strip() for s in args.sizes.split(",") if s.strip()]
        report_timing(args.cache, labels, ROOT / "benches" / "results" / "report.md")
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
    report_timing(args.cache, labels, ROOT / "benches" / "results" / "report.md")


if __name__ == "__main__":
    main()
