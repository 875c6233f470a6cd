"""`ingestor report`: one self-contained HTML file an analyst opens (offline: plotly.js is
inlined once), built from a store through the shipped views and macros
(its SQL is queries.py's `REPORT_*` and `report_*`).

Sections: equity over time (the box's total and each account's), the ledger per account and
day with the open positions, exposure by symbol, coverage (captured time, stream gaps, ledger
gaps, REST backfills) and capture health (rejects, reconnects, the exchange-to-capture lag,
the writer's commit delay from `store_commits`).

Totals are exact: they are DECIMAL(38,18) from SQL, printed with `decimal_text`, and written
into the file's `report-summary` JSON as strings. Floats exist only in the charts' series.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb

from ingestor import queries as rq
from ingestor.query_output import decimal_text

#: Accounts drawn one by one (lines, daily bars, position tables): the largest by equity at
#: the range's end. Past this many, the rest are in the tables and the heatmap, and
#: `--accounts` picks the ones to look at.
DETAIL_ACCOUNTS = 25
#: The equity series' steps, smallest first; the report takes the smallest that gives at
#: most MAX_POINTS instants over the range (a month: 1 h, 720 points).
_STEP_SECONDS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600)
STEPS = tuple(timedelta(seconds=s) for s in (*_STEP_SECONDS, 43200, 86400))
MAX_POINTS = 1000
#: Columns of the equity heatmap at most (every account a row): keeps 1,000 accounts' file
#: to a few MB.
HEATMAP_COLUMNS = 300


def choose_step(start: datetime, stop: datetime) -> timedelta:
    span = stop - start
    for step in STEPS:
        if span / step <= MAX_POINTS:
            return step
    return STEPS[-1]


@dataclass
class Report:
    """What the queries answered, and how long each took (the bench reads `timings`)."""

    start: datetime
    stop: datetime
    step: timedelta
    accounts: list[str]
    ledger: bool
    ledger_gaps: bool
    #: The store records its commits (`store_commits`); a store made before does not.
    commits: bool = False
    #: Positions from `latest_positions` (the range ends at the store's end), else
    #: `positions_asof`.
    latest: bool = True
    answers: dict[str, list[tuple]] = field(default_factory=dict)
    columns: dict[str, list[str]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def rows(self, name: str) -> list[dict]:
        return [dict(zip(self.columns[name], r, strict=True)) for r in self.answers[name]]


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: dict) -> tuple[list[str], list]:
    # DuckDB refuses named parameters a statement does not use: pass only its own.
    used = {name: params[name] for name in set(re.findall(r"\$(\w+)", sql))}
    cursor = con.execute(sql, used)
    return [d[0] for d in cursor.description], cursor.fetchall()


def timestamp(con: duckdb.DuckDBPyConnection, text: str) -> datetime:
    """--from/--to: ISO 8601 or anything DuckDB casts to TIMESTAMPTZ (UTC when no zone)."""
    return con.execute("SELECT ?::TIMESTAMPTZ", [text]).fetchone()[0]


def gather(
    con: duckdb.DuckDBPyConnection,
    start: str | None = None,
    stop: str | None = None,
    accounts: list[str] | None = None,
) -> Report:
    """Runs the report's queries on a reader connection (`sinks.open_reader`)."""
    con.execute("SET TimeZone = 'UTC'")
    have = {r[0] for r in con.execute(rq.REPORT_RELATIONS).fetchall()}
    ledger = all(r in have for r in rq.REPORT_LEDGER_RELATIONS)
    ledger_gaps = all(r in have for r in rq.REPORT_LEDGER_GAP_RELATIONS)
    commits = all(r in have for r in rq.REPORT_COMMIT_RELATIONS)
    lo, hi = con.execute(rq.report_store_range(ledger, commits)).fetchone()
    begin = timestamp(con, start) if start else lo
    end = timestamp(con, stop) if stop else hi
    if begin is None or end is None:  # an empty store: one instant, nothing in it
        begin = end = begin or end or datetime.now(UTC)
    if end < begin:
        raise ValueError(f"--to ({end}) is before --from ({begin})")
    step = choose_step(begin, end)
    params = {"start": begin, "stop": end, "step": step, "accounts": accounts or []}
    # The state (`latest_positions`) is the positions at the store's end: cheaper than
    # `positions_asof` and the same rows.
    latest = stop is None
    report = Report(begin, end, step, [], ledger, ledger_gaps, commits, latest)
    queries = {
        "accounts": rq.report_store_accounts(ledger),
        "equity_series": rq.REPORT_EQUITY_SERIES,
        "equity_at_stop": rq.REPORT_EQUITY_AT_STOP,
        "positions": rq.report_positions(latest),
        "exposure": rq.report_exposure(latest),
        "coverage": rq.REPORT_COVERAGE_SPANS,
        "stream_gaps": rq.REPORT_STREAM_GAPS,
        "backfills": rq.REPORT_BACKFILLS,
        "rejects": rq.REPORT_REJECTS,
        "reconnects_per_account": rq.REPORT_RECONNECTS_PER_ACCOUNT,
        "reconnects_over_time": rq.REPORT_RECONNECTS_OVER_TIME,
        "capture_lag": rq.report_capture_lag(ledger),
    }
    if ledger:
        queries["pnl_daily"] = rq.REPORT_PNL_DAILY
    if ledger_gaps:
        queries["ledger_gaps"] = rq.REPORT_LEDGER_GAPS
    if commits:
        queries["commit_delay"] = rq.report_commit_delay(over_time=False)
        queries["commit_delay_over_time"] = rq.report_commit_delay(over_time=True)
    for name, sql in queries.items():
        began = time.perf_counter()
        report.columns[name], report.answers[name] = _run(con, sql, params)
        report.timings[name] = time.perf_counter() - began
    report.accounts = [r[0] for r in report.answers["accounts"]]
    return report


# --- Totals (exact) -----------------------------------------------------------------------


def summary(report: Report) -> dict:
    """The report's numbers as exact strings: what the file's tables print and its
    `report-summary` JSON holds."""
    equity = {r["account_id"]: r["equity"] for r in report.rows("equity_at_stop")}
    pnl: dict[str, dict[str, dict[str, Decimal]]] = {}
    totals: dict[str, dict[str, Decimal]] = {}
    for r in report.rows("pnl_daily") if report.ledger else []:
        for target in (pnl.setdefault(r["account_id"], {}), totals):
            sums = target.setdefault(r["coin"], dict.fromkeys(PNL_PARTS, Decimal(0)))
            for part in PNL_PARTS:
                sums[part] += r[part]
    exposure = [{k: text(v) for k, v in r.items()} for r in report.rows("exposure")]
    return {
        "start": report.start.isoformat(),
        "stop": report.stop.isoformat(),
        "step_seconds": int(report.step.total_seconds()),
        "accounts": report.accounts,
        "ledger": report.ledger,
        "equity": {a: text(equity.get(a)) for a in report.accounts},
        "equity_total": text(sum((v for v in equity.values() if v is not None), Decimal(0))),
        "pnl": {
            a: {c: {p: text(v) for p, v in sums.items()} for c, sums in coins.items()}
            for a, coins in pnl.items()
        },
        "pnl_total": {c: {p: text(v) for p, v in s.items()} for c, s in totals.items()},
        "positions": len(report.answers["positions"]),
        "exposure": exposure,
        "stream_gaps": len(report.answers["stream_gaps"]),
        "ledger_gaps": len(report.answers.get("ledger_gaps", [])),
        "backfills": len(report.answers["backfills"]),
        "rejects": sum(r[1] for r in report.answers["rejects"]),
        "reconnects": sum(r[1] for r in report.answers["reconnects_per_account"]),
        # Per table over the range, in µs (None: the store does not record its commits).
        "commit_delay": {
            r["table_name"]: {k: r[k] for k in ("flushes", "rows", "p50_us", "p99_us", "max_us")}
            for r in report.rows("commit_delay")
        }
        if report.commits
        else None,
    }


PNL_PARTS = ("realised_pnl", "fees", "funding", "net_pnl")


def text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, datetime):
        return when(value)
    return str(value)


def when(value: datetime) -> str:
    """UTC, to the ms, with the offset: how the report prints an instant."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "+00:00"


def plot_time(value: datetime) -> str:
    # plotly.js drops a string's UTC offset; a naive UTC string is what it draws exactly.
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def detail_accounts(report: Report) -> list[str]:
    """The accounts drawn one by one: all of them, or the largest by equity at the end."""
    if len(report.accounts) <= DETAIL_ACCOUNTS:
        return report.accounts
    equity = {r[0]: r[1] or Decimal(0) for r in report.answers["equity_at_stop"]}
    ranked = sorted(report.accounts, key=lambda a: (-equity.get(a, Decimal(0)), a))
    return sorted(ranked[:DETAIL_ACCOUNTS])


# --- Figures (floats from here on: only what is drawn) -------------------------------------

#: Colours of the ledger's parts and the coverage's marks, the same in every chart.
COLOURS = {
    "realised_pnl": "#2a9d8f",
    "fees": "#e76f51",
    "funding": "#8e6cc4",
    "captured": "#8fd19e",
    "gap": "#d62828",
    "ledger_gap": "#f4a261",
    "backfilled": "#1d4ed8",
    "backfill_failed": "#111111",
}


def _layout(fig, title: str, height: int = 380, **more) -> None:
    fig.update_layout(
        title=title,
        template="plotly_white",
        height=height,
        margin={"l": 70, "r": 20, "t": 50, "b": 40},
        legend={"orientation": "h", "y": -0.15},
        **more,
    )


def equity_figures(report: Report, shown: list[str]) -> list:
    import plotly.graph_objects as go

    series: dict[str, tuple[list[str], list[float | None]]] = {}
    total: dict[datetime, list[float]] = {}
    for account, instant, value in report.answers["equity_series"]:
        xs, ys = series.setdefault(account, ([], []))
        xs.append(plot_time(instant))
        ys.append(value)
        if value is not None:
            total.setdefault(instant, []).append(value)
    # The box's total only where every account has a balance: before an account's first
    # wallet row the sum would show a drop that is no loss.
    box_total = {t: sum(v) for t, v in total.items() if len(v) == len(series)}
    box = go.Figure(
        go.Scatter(
            x=[plot_time(t) for t in sorted(box_total)],
            y=[box_total[t] for t in sorted(box_total)],
            mode="lines",
            name="box total",
            line={"color": "#1f77b4", "width": 2},
        )
    )
    _layout(box, f"Equity, the box's total (USD, every {step_text(report.step)})", 320)
    lines = go.Figure(
        [
            go.Scatter(x=series[a][0], y=series[a][1], mode="lines", name=a)
            for a in shown
            if a in series
        ]
    )
    title = "Equity per account (USD)"
    if len(shown) < len(report.accounts):
        title += f": the {len(shown)} largest of {len(report.accounts)}"
    _layout(lines, title, 420)
    figures = [box, lines]
    if len(shown) < len(report.accounts):
        figures.append(equity_heatmap(series))
    return figures


def equity_heatmap(series: dict[str, tuple[list[str], list[float | None]]]):
    """Every account's equity as a change from its first value (%), one row each: 1,000
    accounts' lines would be a tangle (and a large file)."""
    import plotly.graph_objects as go

    accounts = sorted(series)
    instants = sorted({x for xs, _ in series.values() for x in xs})
    every = max(1, -(-len(instants) // HEATMAP_COLUMNS))
    columns = instants[::every]
    z = []
    for a in accounts:
        by_instant = dict(zip(*series[a], strict=True))
        first = next((v for v in series[a][1] if v), None)
        z.append(
            [
                None
                if first is None or by_instant.get(x) is None
                else round(100 * (by_instant[x] - first) / abs(first), 3)
                for x in columns
            ]
        )
    fig = go.Figure(
        go.Heatmap(x=columns, y=accounts, z=z, colorscale="RdBu", zmid=0, colorbar={"title": "%"})
    )
    _layout(fig, "Equity change since the range's start, every account (%)", 150 + 3 * len(z))
    return fig


def daily_figures(report: Report, shown: list[str]) -> list:
    """Per account and coin: realised PnL, fees and funding per day, stacked (fees and
    funding paid count down); the day's net is where the stack ends."""
    import plotly.graph_objects as go

    days: dict[tuple[str, str], list[dict]] = {}
    for r in report.rows("pnl_daily"):
        days.setdefault((r["account_id"], r["coin"]), []).append(r)
    figures = []
    for (account, coin), rows in sorted(days.items()):
        if account not in shown:
            continue
        x = [str(r["day"]) for r in rows]
        fig = go.Figure(
            [
                go.Bar(
                    x=x,
                    y=[float(r["realised_pnl"]) for r in rows],
                    name="realised PnL",
                    marker_color=COLOURS["realised_pnl"],
                ),
                go.Bar(
                    x=x,
                    y=[-float(r["fees"]) for r in rows],
                    name="fees",
                    marker_color=COLOURS["fees"],
                ),
                go.Bar(
                    x=x,
                    y=[-float(r["funding"]) for r in rows],
                    name="funding",
                    marker_color=COLOURS["funding"],
                ),
            ]
        )
        _layout(fig, f"{account} · {coin} per day", 300, barmode="relative")
        fig.update_xaxes(type="category")
        figures.append(fig)
    return figures


def exposure_figure(report: Report):
    import plotly.graph_objects as go

    rows = report.rows("exposure")
    x = [f"{r['symbol']} ({r['coin'] or '?'})" for r in rows]
    fig = go.Figure(
        [
            go.Bar(
                x=x,
                y=[float(r["long_notional"]) for r in rows],
                name="long",
                marker_color="#2a9d8f",
            ),
            go.Bar(
                x=x,
                y=[-float(r["short_notional"]) for r in rows],
                name="short",
                marker_color="#e76f51",
            ),
            go.Scatter(
                x=x,
                y=[float(r["net_notional"]) for r in rows],
                name="net",
                mode="markers",
                marker={"color": "#111111", "size": 9, "symbol": "diamond"},
            ),
        ]
    )
    _layout(fig, "Exposure by symbol, all accounts (notional in the settle coin)", 380)
    fig.update_layout(barmode="relative")
    return fig


def coverage_figure(report: Report):
    """A timeline per account: the captured span, every stream gap and ledger gap over it,
    the REST backfills as marks."""
    import plotly.graph_objects as go

    def bars(rows: list[dict], name: str, colour: str, width: float) -> go.Bar:
        return go.Bar(
            y=[r["account_id"] for r in rows],
            base=[plot_time(r["start_ts"]) for r in rows],
            x=[(r["end_ts"] - r["start_ts"]).total_seconds() * 1000 for r in rows],
            orientation="h",
            name=name,
            marker_color=colour,
            width=width,
            hovertext=[r.get("reason") or "" for r in rows],
        )

    traces = [
        bars(report.rows("coverage"), "captured", COLOURS["captured"], 0.8),
        bars(report.rows("stream_gaps"), "stream gap", COLOURS["gap"], 0.8),
    ]
    if report.ledger_gaps:
        traces.append(bars(report.rows("ledger_gaps"), "ledger gap", COLOURS["ledger_gap"], 0.4))
    backfills = report.rows("backfills")
    for ok, name in ((True, "backfilled"), (False, "backfill_failed")):
        rows = [r for r in backfills if r["ok"] is ok]
        traces.append(
            go.Scatter(
                y=[r["account_id"] for r in rows],
                x=[plot_time(r["local_ts"]) for r in rows],
                mode="markers",
                name=name.replace("_", " "),
                marker={
                    "color": COLOURS[name],
                    "symbol": "triangle-down" if ok else "x",
                    "size": 9,
                },
                hovertext=[r["reason"] or "" for r in rows],
            )
        )
    accounts = len(report.accounts)
    fig = go.Figure(traces)
    _layout(
        fig,
        "Coverage: captured time, gaps, backfills",
        200 + (22 if accounts <= 100 else 3) * max(accounts, 1),
        barmode="overlay",
    )
    fig.update_xaxes(type="date", range=[plot_time(report.start), plot_time(report.stop)])
    fig.update_yaxes(type="category", categoryorder="category descending")
    return fig


def health_figures(report: Report) -> list:
    import plotly.graph_objects as go

    rejects = report.rows("rejects")
    fig_rejects = go.Figure(
        go.Bar(
            x=[r["reason"] for r in rejects],
            y=[r["rejects"] for r in rejects],
            marker_color="#d62828",
            name="rejects",
        )
    )
    _layout(fig_rejects, "Rejected frames by reason", 320)
    over_time = report.rows("reconnects_over_time")
    # Markers, not bars: a step's bar is a pixel wide on a month's axis.
    fig_reconnects = go.Figure(
        go.Scatter(
            x=[plot_time(r["bucket"]) for r in over_time],
            y=[r["reconnects"] for r in over_time],
            mode="markers",
            marker={"color": "#0f9d58", "size": 10},
            name="reconnects",
        )
    )
    _layout(fig_reconnects, f"Reconnects, all accounts, every {step_text(report.step)}", 300)
    fig_reconnects.update_xaxes(type="date")
    lag: dict[str, list[dict]] = {}
    for r in report.rows("capture_lag"):
        lag.setdefault(r["table_name"], []).append(r)
    fig_lag = go.Figure()
    for table, rows in lag.items():
        x = [plot_time(r["bucket"]) for r in rows]
        fig_lag.add_trace(
            go.Scatter(x=x, y=[r["p50_ms"] for r in rows], mode="lines", name=f"{table} p50")
        )
        fig_lag.add_trace(
            go.Scatter(
                x=x,
                y=[r["p99_ms"] for r in rows],
                mode="lines",
                name=f"{table} p99",
                line={"dash": "dot"},
            )
        )

    _layout(fig_lag, "Exchange → capture lag (local_ts − creation_ts, ms)", 340)
    fig_lag.update_yaxes(type="log")
    figures = [fig_rejects, fig_reconnects, fig_lag]
    if report.commits:
        figures.append(commit_delay_figure(report))
    return figures


def commit_delay_figure(report: Report):
    """Per table and step: the row-weighted p50 and p99 of each flush's wait from its oldest
    row's arrival to its commit (`queries.report_commit_delay`), in ms. Lines and markers: a
    table flushed in one step only is a point."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for table, rows in _by(report.rows("commit_delay_over_time"), "table_name").items():
        x = [plot_time(r["bucket"]) for r in rows]
        for quantile, dash in (("p50", "solid"), ("p99", "dot")):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=[r[f"{quantile}_us"] / 1000 for r in rows],
                    mode="lines+markers",
                    name=f"{table} {quantile}",
                    line={"dash": dash},
                )
            )
    _layout(
        fig,
        "Commit delay: arrival of a flush's oldest row → readable in the store (ms, by rows)",
        340,
    )
    fig.update_xaxes(type="date")
    fig.update_yaxes(type="log")
    return fig


def step_text(step: timedelta) -> str:
    seconds = int(step.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


# --- HTML ------------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
th, td { padding: 2px 8px; border-bottom: 1px solid #eee; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
p.note { color: #555; font-size: 0.9em; }
"""


def table(headers: list[str], rows: list[list[object]], limit: int | None = None) -> str:
    """An HTML table; numbers (exact, as people write them) right-aligned."""
    shown = rows if limit is None else rows[:limit]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for row in shown:
        cells = []
        for value in row:
            number = isinstance(value, int | float | Decimal) and not isinstance(value, bool)
            cell = "" if value is None else html.escape(text(value))
            cells.append(f'<td class="n">{cell}</td>' if number else f"<td>{cell}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    more = ""
    if len(shown) < len(rows):
        more = f'<p class="note">{len(rows) - len(shown):,} more rows left out.</p>'
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{more}"


def duration_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def figure_html(fig) -> str:
    import plotly.io as pio

    return pio.to_html(
        fig,
        full_html=False,
        include_plotlyjs=False,
        config={"displaylogo": False, "responsive": True},
    )


def totals_section(report: Report, numbers: dict) -> str:
    rows = []
    for account in report.accounts:
        coins = numbers["pnl"].get(account, {})
        if not coins:
            rows.append([account, _dec(numbers["equity"][account]), None, None, None, None, None])
        for coin, sums in sorted(coins.items()):
            rows.append(
                [
                    account,
                    _dec(numbers["equity"][account]),
                    coin,
                    *(_dec(sums[p]) for p in PNL_PARTS),
                ]
            )
    for coin, sums in sorted(numbers["pnl_total"].items()):
        rows.append(
            [
                "all accounts",
                _dec(numbers["equity_total"]),
                coin,
                *(_dec(sums[p]) for p in PNL_PARTS),
            ]
        )
    if not numbers["pnl_total"]:
        rows.append(["all accounts", _dec(numbers["equity_total"]), None, None, None, None, None])
    headers = ["account", "equity at end (USD)", "coin", "realised PnL", "fees", "funding", "net"]
    note = (
        "Equity: Bybit's totalEquity per account type at the range's end (wallets_asof), "
        "summed over account types; the ledger: pnl_daily over every UTC day the range "
        "touches. Fees and funding are paid when positive; net = realised − fees − funding."
    )
    if not report.ledger:
        note += " This store has no ledger tables (a store of an earlier version)."
    return f'<p class="note">{note}</p>' + table(headers, rows)


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def positions_section(report: Report, shown: list[str]) -> str:
    rows = [r for r in report.rows("positions") if r["account_id"] in shown]
    headers = [
        "account",
        "category",
        "symbol",
        "side",
        "size",
        "entry",
        "mark",
        "unrealised PnL",
        "liq. price",
        "to liq. (%)",
        "coin",
    ]
    body = [
        [
            r["account_id"],
            r["category"],
            r["symbol"],
            r["side"],
            r["size"],
            r["entry_price"],
            r["mark_price"],
            r["unrealised_pnl"],
            r["liq_price"],
            r["liq_distance_pct"],
            r["coin"],
        ]
        for r in rows
    ]
    where = "latest_positions" if report.latest else "positions_asof"
    note = f"Open positions at {when(report.stop)} ({where})"
    if len(shown) < len(report.accounts):
        note += f", of the {len(shown)} accounts drawn"
    return f'<p class="note">{note}.</p>' + table(headers, body)


def coverage_section(report: Report) -> str:
    per: dict[str, dict] = {
        a: {"captured": 0.0, "gaps": 0, "gap_s": 0.0, "open": 0, "ledger": 0, "ok": 0, "failed": 0}
        for a in report.accounts
    }
    for r in report.rows("coverage"):
        per[r["account_id"]]["captured"] = (r["end_ts"] - r["start_ts"]).total_seconds()
    for r in report.rows("stream_gaps"):
        p = per[r["account_id"]]
        p["gaps"] += 1
        p["gap_s"] += (r["end_ts"] - r["start_ts"]).total_seconds()
        p["open"] += bool(r["open"])
    for r in report.rows("ledger_gaps") if report.ledger_gaps else []:
        per[r["account_id"]]["ledger"] += 1
    for r in report.rows("backfills"):
        per[r["account_id"]]["ok" if r["ok"] else "failed"] += 1
    rows = [
        [
            a,
            duration_text(max(p["captured"] - p["gap_s"], 0.0)),
            p["gaps"],
            duration_text(p["gap_s"]),
            p["open"],
            p["ledger"],
            p["ok"],
            p["failed"],
        ]
        for a, p in per.items()
    ]
    headers = [
        "account",
        "captured",
        "stream gaps",
        "gap time",
        "open",
        "ledger gaps",
        "backfills",
        "backfills failed",
    ]
    note = (
        "Captured: from the account's first subscribed to the last instant the store holds "
        "for it, less its stream gaps (the gaps view), within the range. Ledger gaps: windows "
        "the ledger cannot be known complete in (ledger_gaps). Backfills: the REST reads of "
        "the executions and orders a gap missed (connection_events)."
    )
    if not report.ledger_gaps:
        note += " This store has no ledger_gaps table."
    gaps = [
        [r["account_id"], r["start_ts"], r["end_ts"], "open" if r["open"] else "", r["reason"]]
        for r in report.rows("stream_gaps")
    ]
    ledger = [
        [r["account_id"], r["kind"], r["start_ts"], r["end_ts"], r["reason"]]
        for r in (report.rows("ledger_gaps") if report.ledger_gaps else [])
    ]
    return (
        f'<p class="note">{note}</p>'
        + table(headers, rows)
        + "<h3>Stream gaps</h3>"
        + table(["account", "from", "to", "", "reason"], gaps, limit=500)
        + "<h3>Ledger gaps</h3>"
        + table(["account", "kind", "from", "to", "reason"], ledger, limit=500)
    )


def health_section(report: Report) -> str:
    rejects = [[r["reason"], r["rejects"], r["accounts"]] for r in report.rows("rejects")]
    reconnects = [[r["account_id"], r["reconnects"]] for r in report.rows("reconnects_per_account")]
    lag = [
        [t, sum(r["rows"] for r in rows), max(r["max_ms"] for r in rows)]
        for t, rows in _by(report.rows("capture_lag"), "table_name").items()
    ]
    note = (
        "Each pushed row's lag from the exchange's creationTime to its arrival (local_ts), "
        "drawn above per step (p50 and p99). REST rows are left out: their creation time is "
        "the answer's."
    )
    return (
        "<h3>Rejects</h3>"
        + table(["reason", "rejects", "accounts"], rejects)
        + "<h3>Reconnects (most first)</h3>"
        + table(["account", "reconnects"], reconnects, limit=50)
        + "<h3>Lag</h3>"
        + f'<p class="note">{note}</p>'
        + table(["table", "rows", "max lag (ms)"], lag)
        + "<h3>Commit delay</h3>"
        + commit_delay_section(report)
    )


def commit_delay_section(report: Report) -> str:
    if not report.commits:
        return (
            '<p class="note">The writer\'s commit delay is not recorded in this store: it was '
            "made by an earlier version, before the writer kept store_commits (the next start "
            "of the service adds it). While the service runs, /metrics has it "
            "(ingestor_commit_delay_seconds).</p>"
        )
    note = (
        "From store_commits, the writer's record of every flush: per table, the time from the "
        "arrival of a flush's oldest row (oldest_local_ts) to the instant its rows were "
        "readable in the store (local_ts), drawn above per step. That oldest row waited "
        "longest (through the collector's batching, the relay, the writer and the store's "
        "write), so each row of the flush waited at most that. p50 and p99 are weighted by "
        "the flush's rows: 99% of the rows were in flushes at or under p99. The whole box: "
        "flushes have no account, so --accounts does not narrow this."
    )
    rows = [
        [
            r["table_name"],
            r["flushes"],
            r["rows"],
            r["p50_us"] / 1000,
            r["p99_us"] / 1000,
            r["max_us"] / 1000,
        ]
        for r in report.rows("commit_delay")
    ]
    if not rows:
        note += " No flush was recorded in this range."
    return f'<p class="note">{note}</p>' + table(
        ["table", "flushes", "rows", "p50 (ms)", "p99 (ms)", "max (ms)"], rows
    )


def _by(rows: list[dict], key: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r[key], []).append(r)
    return out


def render(report: Report) -> str:
    """The whole file: plotly.js once in the head, every figure a div that draws into it."""
    from plotly.offline import get_plotlyjs

    numbers = summary(report)
    shown = detail_accounts(report)
    drawn = f"all {len(shown)}" if len(shown) == len(report.accounts) else f"{len(shown)}"
    parts = [
        f"<h1>Capture report: {len(report.accounts)} accounts</h1>",
        f'<p class="note">{when(report.start)} to {when(report.stop)} (UTC); equity every '
        f"{step_text(report.step)}; accounts drawn one by one: {drawn} (the largest by "
        "equity; --accounts picks others).</p>",
        "<h2>Equity</h2>",
        *(figure_html(f) for f in equity_figures(report, shown)),
        "<h2>Totals</h2>",
        totals_section(report, numbers),
        "<h2>Per account: ledger per day and positions</h2>",
    ]
    if report.ledger:
        parts += [figure_html(f) for f in daily_figures(report, shown)]
    else:
        parts.append('<p class="note">No ledger in this store.</p>')
    parts += [
        positions_section(report, shown),
        "<h2>Exposure by symbol</h2>",
        figure_html(exposure_figure(report)),
        table(
            ["category", "symbol", "coin", "long", "short", "net", "accounts"],
            [list(r.values()) for r in report.rows("exposure")],
        ),
        "<h2>Coverage</h2>",
        figure_html(coverage_figure(report)),
        coverage_section(report),
        "<h2>Capture health</h2>",
        *(figure_html(f) for f in health_figures(report)),
        health_section(report),
    ]
    data = json.dumps(numbers).replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>ingestor report: {len(report.accounts)} accounts</title>
<style>{STYLE}</style>
<script>{get_plotlyjs()}</script>
<script type="application/json" id="report-summary">{data}</script>
</head><body>
{"".join(parts)}
</body></html>
"""


def write(report: Report, out: Path) -> None:
    """Written beside `out`, then renamed over it: a failed report leaves the file as it was."""
    page = render(report)
    partial = out.with_name(f".{out.name}.partial")
    partial.write_text(page, encoding="utf-8")
    partial.replace(out)


# --- The command ------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    from ingestor import config
    from ingestor.__main__ import program

    p = argparse.ArgumentParser(
        prog=f"{program()} report",
        description="Write one self-contained HTML report of a store (opens offline): equity, "
        "the ledger per day, positions, exposure, coverage and capture health.",
    )
    p.add_argument("--store", required=True, help="DuckDB file, Parquet root, lake folder, ...")
    p.add_argument("--sink", choices=config.SINK_KINDS, default="duckdb", help="kind of store")
    p.add_argument("--from", dest="start", metavar="T", help="start (ISO 8601; UTC if no zone)")
    p.add_argument("--to", dest="stop", metavar="T", help="end (default: the store's last)")
    p.add_argument("--accounts", help="only these accounts (a,b,...)")
    p.add_argument("--out", type=Path, default=Path("report.html"), help="the HTML file")
    return p


def run_report(argv: list[str]) -> int:
    from ingestor.sinks import open_reader, store_exists

    args = parser().parse_args(argv)
    if not store_exists(args.sink, args.store):
        print(f"error: {args.store} does not exist", file=sys.stderr)
        return 2
    accounts = [a.strip() for a in args.accounts.split(",") if a.strip()] if args.accounts else []
    try:
        with open_reader(args.sink, args.store) as con:
            report = gather(con, args.start, args.stop, accounts)
        write(report, args.out)
    except (duckdb.Error, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {args.out}: {e.strerror or e}", file=sys.stderr)
        return 1
    numbers = summary(report)
    print(f"report: {args.out.resolve()}")
    print(f"accounts: {len(report.accounts)}; equity at end (USD): {numbers['equity_total']}")
    for coin, sums in sorted(numbers["pnl_total"].items()):
        print(
            f"{coin}: realised {sums['realised_pnl']}, fees {sums['fees']}, "
            f"funding {sums['funding']}, net {sums['net_pnl']}"
        )
    return 0
