"""The SQL of `ingestor report` (python/ingestor/report.py), in one place.

Every query reads the shipped views and macros (`latest_*`, `positions_asof`,
`wallets_asof`, `wallets_every`, `pnl_daily`, `gaps`) or the small event tables
(`connection_events`, `ledger_gaps`, `rejects`), never a reimplementation of them, so the
report answers what `ingestor query` answers and costs what those cost. Kept apart from
queries.py (the store's own SQL) because nothing but the report runs it.

Parameters are DuckDB named parameters: `$start`, `$stop` (TIMESTAMPTZ), `$step`
(INTERVAL) and `$accounts` (VARCHAR[]; empty: every account). Amounts stay DECIMAL(38,18)
in every total; a column meant only for a chart is cast to DOUBLE here, at the plotting edge,
and named `*_plot`.
"""

from __future__ import annotations

#: Rows of the accounts asked for (`--accounts`), or of every account.
ACCOUNT_FILTER = (
    "(len($accounts::VARCHAR[]) = 0 OR list_contains($accounts::VARCHAR[], account_id))"
)

#: The relations each section needs; a store of an earlier version lacks the ledger's, and
#: its report says so instead of failing.
LEDGER_RELATIONS = ("execution_events", "pnl_daily")
LEDGER_GAP_RELATIONS = ("ledger_gaps",)

#: The coin a position's value, PnL and margin are in, by Bybit's symbol names as queries.py's
#: SETTLE_COIN reads them for executions (inverse: the base coin; linear: USDT or USDC); a
#: position row has no fee currency to fall back on.
POSITION_COIN = """CASE
        WHEN category = 'inverse' THEN regexp_extract(symbol, '^([A-Z0-9]+?)USD', 1)
        WHEN category = 'linear' AND regexp_matches(symbol, 'USDT(-|$)') THEN 'USDT'
        WHEN category IN ('linear', 'option') THEN 'USDC'
    END"""

#: The store's relations and table macros, to know which sections it can answer.
RELATIONS = """
SELECT table_name FROM information_schema.tables
UNION
SELECT function_name FROM duckdb_functions() WHERE function_type = 'table_macro'
"""


def store_range(ledger: bool) -> str:
    """The first and last instant the store holds, whatever table holds it."""
    parts = [
        "SELECT min(exchange_ts) AS lo, max(exchange_ts) AS hi FROM wallet_snapshots",
        "SELECT min(exchange_ts), max(exchange_ts) FROM position_snapshots",
        "SELECT min(local_ts), max(local_ts) FROM connection_events",
    ]
    if ledger:
        parts.append("SELECT min(exchange_ts), max(exchange_ts) FROM execution_events")
    return f"SELECT min(lo), max(hi) FROM ({' UNION ALL '.join(parts)})"


def store_accounts(ledger: bool) -> str:
    """Every account the store holds anything of (the states, the events, the ledger)."""
    parts = [
        "SELECT account_id FROM latest_wallets",
        "SELECT account_id FROM latest_positions",
        "SELECT account_id FROM connection_events",
    ]
    if ledger:
        parts.append("SELECT account_id FROM execution_events")
    return f"""
    SELECT DISTINCT account_id FROM ({" UNION ALL ".join(parts)})
    WHERE account_id IS NOT NULL AND {ACCOUNT_FILTER}
    ORDER BY account_id
    """


#: An account type's equity at one wallet row set: Bybit's totalEquity (the account's, in
#: USD, repeated on every coin row: the newest push's value) or, where the account type has
#: none (classic accounts), the sum of its coins' usdValue.
_ACCOUNT_TYPE_EQUITY = """
coalesce(arg_max(total_equity, exchange_ts), sum(usd_value))
"""

#: Equity per account at every instant of the series (`wallets_every`), for the chart.
EQUITY_SERIES = f"""
SELECT account_id, instant, sum(equity)::DOUBLE AS equity_plot FROM (
    SELECT instant, account_id, account_type, {_ACCOUNT_TYPE_EQUITY} AS equity
    FROM wallets_every($start, $stop, $step)
    WHERE {ACCOUNT_FILTER}
    GROUP BY ALL
)
GROUP BY ALL
ORDER BY account_id, instant
"""

#: Equity per account at the range's end, exact (the report's printed totals).
EQUITY_AT_STOP = f"""
SELECT account_id, sum(equity) AS equity FROM (
    SELECT account_id, account_type, {_ACCOUNT_TYPE_EQUITY} AS equity
    FROM wallets_asof($stop)
    WHERE {ACCOUNT_FILTER}
    GROUP BY ALL
)
GROUP BY ALL
ORDER BY account_id
"""

#: The ledger per account, coin and UTC day, for every day the range touches (`pnl_daily`
#: is per day). Exact.
PNL_DAILY = f"""
SELECT account_id, coin, day,
       sum(realised_pnl) AS realised_pnl, sum(fees) AS fees, sum(funding) AS funding,
       sum(net_pnl) AS net_pnl, sum(fills)::BIGINT AS fills
FROM pnl_daily
WHERE day BETWEEN ($start AT TIME ZONE 'UTC')::DATE AND ($stop AT TIME ZONE 'UTC')::DATE
  AND {ACCOUNT_FILTER}
GROUP BY ALL
ORDER BY account_id, coin, day
"""


def positions(latest: bool) -> str:
    """Open positions at the range's end: `latest_positions` (the state) when the range ends
    at the store's end, else `positions_asof($stop)`. Distance to liquidation is the mark's
    distance to the liquidation price, in percent of the mark."""
    source = "latest_positions" if latest else "positions_asof($stop)"
    return f"""
    SELECT account_id, category, symbol, side, size, entry_price, mark_price,
           unrealised_pnl, liq_price, position_value, ({POSITION_COIN}) AS coin,
           CASE WHEN liq_price > 0 AND mark_price > 0
                THEN round(100 * abs(mark_price - liq_price) / mark_price, 2)
           END AS liq_distance_pct
    FROM {source}
    WHERE size <> 0 AND {ACCOUNT_FILTER}
    ORDER BY account_id, category, symbol, position_idx
    """


def exposure(latest: bool) -> str:
    """Long, short and net notional per symbol across the accounts, in the symbol's settle
    coin (positionValue's unit). Exact."""
    return f"""
    SELECT category, symbol, coin,
           coalesce(sum(position_value) FILTER (WHERE side = 'Buy'), 0) AS long_notional,
           coalesce(sum(position_value) FILTER (WHERE side = 'Sell'), 0) AS short_notional,
           long_notional - short_notional AS net_notional,
           count(DISTINCT account_id) AS accounts
    FROM ({positions(latest)})
    GROUP BY ALL
    ORDER BY category, symbol
    """


#: Per account, what the capture covers: from its first `subscribed` to the last instant
#: the store holds for it (its latest event or state row), cut to the range.
COVERAGE_SPANS = f"""
WITH seen AS (
    SELECT account_id, min(local_ts) FILTER (WHERE event = 'subscribed') AS first_ts,
           max(local_ts) AS last_ts
    FROM connection_events GROUP BY ALL
    UNION ALL SELECT account_id, NULL, max(local_ts) FROM latest_wallets GROUP BY ALL
    UNION ALL SELECT account_id, NULL, max(local_ts) FROM latest_positions GROUP BY ALL
)
SELECT account_id, greatest(min(first_ts), $start) AS start_ts,
       least(max(last_ts), $stop) AS end_ts
FROM seen
WHERE {ACCOUNT_FILTER}
GROUP BY ALL
HAVING min(first_ts) IS NOT NULL AND min(first_ts) <= $stop AND max(last_ts) >= $start
ORDER BY account_id
"""

#: Every stream gap (`gaps`) that overlaps the range, cut to it (an open gap runs to its end).
STREAM_GAPS = f"""
SELECT account_id, greatest(start_ts, $start) AS start_ts,
       least(coalesce(end_ts, $stop), $stop) AS end_ts, end_ts IS NULL AS open, reason
FROM gaps
WHERE start_ts <= $stop AND coalesce(end_ts, $stop) >= $start AND {ACCOUNT_FILTER}
ORDER BY account_id, start_ts
"""

#: Every window the ledger cannot be known complete in (`ledger_gaps`) overlapping the range.
LEDGER_GAPS = f"""
SELECT account_id, kind, greatest(start_ts, $start) AS start_ts,
       least(coalesce(end_ts, $stop), $stop) AS end_ts, reason
FROM ledger_gaps
WHERE start_ts <= $stop AND coalesce(end_ts, $stop) >= $start AND {ACCOUNT_FILTER}
ORDER BY account_id, start_ts, kind
"""

#: The REST backfills of the range: done, or failed after their retries.
BACKFILLS = f"""
SELECT account_id, local_ts, event = 'backfilled' AS ok, reason
FROM connection_events
WHERE event IN ('backfilled', 'backfill_failed')
  AND local_ts BETWEEN $start AND $stop AND {ACCOUNT_FILTER}
ORDER BY account_id, local_ts
"""

#: Rejected frames by reason.
REJECTS = f"""
SELECT reason, count(*) AS rejects, count(DISTINCT account_id) AS accounts
FROM rejects
WHERE local_ts BETWEEN $start AND $stop AND {ACCOUNT_FILTER}
GROUP BY ALL
ORDER BY rejects DESC, reason
"""

#: Reconnects: a `connected` that follows an earlier one of the same account (the first
#: connection of the account's history is none), per account and per step of the range.
_RECONNECTS = """
WITH c AS (
    SELECT account_id, local_ts,
           lag(local_ts) OVER (PARTITION BY account_id ORDER BY local_ts) AS previous
    FROM connection_events WHERE event = 'connected'
)
SELECT * FROM c
WHERE previous IS NOT NULL AND local_ts BETWEEN $start AND $stop
"""
RECONNECTS_PER_ACCOUNT = f"""
SELECT account_id, count(*) AS reconnects FROM ({_RECONNECTS})
WHERE {ACCOUNT_FILTER}
GROUP BY ALL
ORDER BY reconnects DESC, account_id
"""
RECONNECTS_OVER_TIME = f"""
SELECT time_bucket($step, local_ts, $start) AS bucket, count(*) AS reconnects
FROM ({_RECONNECTS})
WHERE {ACCOUNT_FILTER}
GROUP BY ALL
ORDER BY bucket
"""


def capture_lag(ledger: bool) -> str:
    """The exchange-to-capture lag per table and step of the range: a row's `local_ts` (its
    arrival) minus its `creation_ts` (the push's creationTime), in ms, REST rows aside (their
    creation time is the answer's). The writer's commit delay is not in the store (only in
    `/metrics`, `ingestor_flush_duration_seconds`): this is what the store can tell."""
    tables = ["position_snapshots", "wallet_snapshots"]
    if ledger:
        tables.append("execution_events")
    parts = " UNION ALL ".join(
        f"SELECT '{t}' AS table_name, local_ts, "
        f"epoch_us(local_ts) - epoch_us(creation_ts) AS lag_us FROM {t} "
        f"WHERE source = 'ws' AND local_ts BETWEEN $start AND $stop AND {ACCOUNT_FILTER}"
        for t in tables
    )
    return f"""
    SELECT table_name, time_bucket($step, local_ts, $start) AS bucket,
           approx_quantile(lag_us, 0.5) / 1000.0 AS p50_ms,
           approx_quantile(lag_us, 0.99) / 1000.0 AS p99_ms,
           max(lag_us) / 1000.0 AS max_ms, count(*) AS rows
    FROM ({parts})
    GROUP BY ALL
    ORDER BY table_name, bucket
    """
