"""`python -m ingestor query`: what people read. Amounts exact and as people write them, times
in UTC whatever the box's zone, and the same answer as CSV, JSON Lines and Parquet."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ingestor
from ingestor.queries import NAMED_QUERIES
from ingestor.query_output import decimal_text, interval_text, time_text
from ingestor.sinks import open_store

FIXTURES = Path(__file__).parent / "fixtures"
POSITION_PUSH = orjson.loads((FIXTURES / "position_push.json").read_bytes())
WALLET_PUSH = (FIXTURES / "wallet_push.json").read_bytes()

UPDATED_MS = 1_697_682_317_038  # 2023-10-19 02:25:17.038 UTC
#: (symbol, size, entry_price, mark_price, unrealised_pnl) as Bybit sends them.
POSITIONS = [
    ("BTCUSDT", "0.22223041", "28184.50", "28184.5", "-25.06579337"),
    ("ETHUSDT", "100", "1500.000", "0.000000000000000001", "0"),
    ("XRPUSDT", "99999999999999999999.999999999999999999", "0.5", "0.50", "-0.1"),
]
#: The same amounts, normalised.
SHOWN = {
    "BTCUSDT": ("0.22223041", "28184.5", "28184.5", "-25.06579337"),
    "ETHUSDT": ("100", "1500", "0.000000000000000001", "0"),
    "XRPUSDT": ("99999999999999999999.999999999999999999", "0.5", "0.5", "-0.1"),
}
EXCHANGE_TS = "2023-10-19T02:25:17.038+00:00"
AMOUNTS = ("size", "entry_price", "mark_price", "unrealised_pnl")


def position_push(n: int, symbol: str, size: str, entry: str, mark: str, pnl: str) -> bytes:
    push = orjson.loads(orjson.dumps(POSITION_PUSH))
    push["id"] = f"m{n}"
    push["creationTime"] = UPDATED_MS + 5
    push["data"][0].update(
        symbol=symbol,
        side="Buy",
        size=size,
        entryPrice=entry,
        markPrice=mark,
        unrealisedPnl=pnl,
        updatedTime=str(UPDATED_MS),
        seq=n,
    )
    return orjson.dumps(push)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A DuckDB store written by the project's own store class, from decoded pushes."""
    path = tmp_path_factory.mktemp("query") / "capture.duckdb"
    frames = [position_push(n, *p) for n, p in enumerate(POSITIONS, 1)] + [WALLET_PUSH]
    batches = ingestor.decode(
        frames, account_id="acct-1", received_at=datetime(2023, 10, 19, 2, 25, 18, tzinfo=UTC)
    )
    writer = open_store("duckdb", path)
    writer.create()
    assert writer.write(list(batches.items())) == 5
    writer.close()
    return path


def query(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    # A box far from UTC: what is shown must not follow its zone.
    env = {**os.environ, "TZ": "America/New_York"}
    return subprocess.run(
        [sys.executable, "-m", "ingestor", "query", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=cwd,
    )


def ok(*args: str, cwd: Path | None = None) -> str:
    result = query(*args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


POSITIONS_TABLE = """\
account_id  category  symbol   position_idx  side                                     size  entry_price                mark_price  unrealised_pnl  exchange_ts                    source
----------  --------  -------  ------------  ----  ---------------------------------------  -----------  ------------------------  --------------  -----------------------------  ------
acct-1      linear    BTCUSDT             2  Buy                      0.22223041                28184.5  28184.5                     -25.06579337  2023-10-19 02:25:17.038+00:00  ws
acct-1      linear    ETHUSDT             2  Buy                    100                          1500        0.000000000000000001      0           2023-10-19 02:25:17.038+00:00  ws
acct-1      linear    XRPUSDT             2  Buy   99999999999999999999.999999999999999999          0.5      0.5                      -0.1         2023-10-19 02:25:17.038+00:00  ws
(3 rows)
"""  # noqa: E501


def test_the_table_shows_amounts_as_people_write_them_and_times_in_utc(store):
    shown = ok("latest-positions", "--store", str(store))
    assert shown == POSITIONS_TABLE
    assert "000000000000000000" not in shown  # DECIMAL(38,18)'s padding
    assert "E-" not in shown and "e-" not in shown


def test_the_table_of_wallets(store):
    shown = ok("latest-wallets", "--store", str(store))
    lines = shown.splitlines()
    assert lines[0].split() == [
        "account_id", "account_type", "coin", "wallet_balance", "equity", "usd_value",
        "total_equity", "total_available_balance", "exchange_ts", "source",
    ]  # fmt: skip
    btc = lines[2].split()
    assert btc[:6] == ["acct-1", "UNIFIED", "BTC", "0.00102964", "0.00102964", "36.70759517"]
    # `9556.6056555`, `10262.91335023`: the account's totals as sent.
    assert btc[6:8] == ["10262.91335023", "9556.6056555"]
    assert btc[8:] == ["2023-11-15", "07:52:02.104+00:00", "ws"]
    assert lines[-1] == "(2 rows)"


def test_limit_cuts_the_table_and_says_so(store):
    shown = ok("latest-positions", "--store", str(store), "--limit", "2")
    lines = shown.splitlines()
    assert len(lines) == 2 + 2 + 1
    assert lines[-1] == "(the first 2 rows; --limit N shows more)"
    everything = ok("latest-positions", "--store", str(store), "--limit", "3")
    assert everything.splitlines()[-1] == "(3 rows)"


def test_csv_is_exact_and_parses_back(store, tmp_path):
    text = ok("latest-positions", "--store", str(store), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["symbol"] for r in rows] == ["BTCUSDT", "ETHUSDT", "XRPUSDT"]
    for row, (symbol, *sent) in zip(rows, POSITIONS, strict=True):
        assert tuple(row[c] for c in AMOUNTS) == SHOWN[symbol]
        assert [Decimal(row[c]) for c in AMOUNTS] == [Decimal(v) for v in sent]
        assert row["exchange_ts"] == EXCHANGE_TS
        assert datetime.fromisoformat(row["exchange_ts"]) == datetime.fromtimestamp(
            UPDATED_MS / 1000, UTC
        )
    assert text.splitlines()[1] == (
        "acct-1,linear,BTCUSDT,2,Buy,0.22223041,28184.5,28184.5,-25.06579337,"
        "2023-10-19T02:25:17.038+00:00,ws"
    )
    # --output: the file, nothing on stdout.
    out = tmp_path / "positions.csv"
    assert ok("latest-positions", "--store", str(store), "--format", "csv", "--output",
              str(out)) == ""  # fmt: skip
    assert out.read_text() == text


def test_csv_null_is_an_empty_field(store):
    text = ok(
        "SELECT coin, available_to_withdraw FROM latest_wallets ORDER BY coin",
        "--store", str(store), "--format", "csv",
    )  # fmt: skip
    assert text == "coin,available_to_withdraw\nBTC,0.00102964\nUSDT,\n"


def test_json_lines_carry_amounts_as_exact_strings(store, tmp_path):
    text = ok("latest-positions", "--store", str(store), "--format", "json")
    lines = text.splitlines()
    assert len(lines) == 3
    rows = [json.loads(line) for line in lines]
    assert list(rows[0]) == [
        "account_id", "category", "symbol", "position_idx", "side", "size", "entry_price",
        "mark_price", "unrealised_pnl", "exchange_ts", "source",
    ]  # fmt: skip
    for row, (symbol, *sent) in zip(rows, POSITIONS, strict=True):
        assert row["symbol"] == symbol and row["position_idx"] == 2
        assert tuple(row[c] for c in AMOUNTS) == SHOWN[symbol]  # strings: no float on the way
        assert [Decimal(row[c]) for c in AMOUNTS] == [Decimal(v) for v in sent]
        assert row["exchange_ts"] == EXCHANGE_TS
    assert lines[0] == (
        '{"account_id":"acct-1","category":"linear","symbol":"BTCUSDT","position_idx":2,'
        '"side":"Buy","size":"0.22223041","entry_price":"28184.5","mark_price":"28184.5",'
        '"unrealised_pnl":"-25.06579337","exchange_ts":"2023-10-19T02:25:17.038+00:00",'
        '"source":"ws"}'
    )
    nulls = ok(
        "SELECT coin, available_to_withdraw FROM latest_wallets ORDER BY coin",
        "--store", str(store), "--format", "json", "--limit", "5",
    )  # fmt: skip
    assert [json.loads(line) for line in nulls.splitlines()] == [
        {"coin": "BTC", "available_to_withdraw": "0.00102964"},
        {"coin": "USDT", "available_to_withdraw": None},
    ]
    out = tmp_path / "positions.jsonl"
    assert ok("latest-positions", "--store", str(store), "--format", "json", "--limit", "1",
              "--output", str(out)) == ""  # fmt: skip
    assert out.read_text() == lines[0] + "\n"


def test_parquet_keeps_the_store_types_and_exact_values(store, tmp_path):
    out = tmp_path / "positions.parquet"
    assert ok("latest-positions", "--store", str(store), "--format", "parquet",
              "--output", str(out)) == ""  # fmt: skip
    table = pq.read_table(out)
    for column in AMOUNTS:
        assert table.schema.field(column).type == pa.decimal128(38, 18)
    assert table.schema.field("exchange_ts").type == pa.timestamp("us", tz="UTC")
    rows = table.to_pylist()
    for row, (symbol, *sent) in zip(rows, POSITIONS, strict=True):
        assert row["symbol"] == symbol
        assert [row[c] for c in AMOUNTS] == [Decimal(v) for v in sent]
        assert row["exchange_ts"] == datetime.fromtimestamp(UPDATED_MS / 1000, UTC)
    ok("latest-positions", "--store", str(store), "--format", "parquet", "--limit", "1",
       "--output", str(out))  # fmt: skip
    assert pq.read_table(out).num_rows == 1
    assert [p.name for p in tmp_path.iterdir()] == ["positions.parquet"]  # no temporary left


def test_parquet_needs_an_output_file(store):
    result = query("latest-positions", "--store", str(store), "--format", "parquet")
    assert result.returncode == 2
    assert "--format parquet needs --output FILE" in result.stderr
    assert result.stdout == ""


def test_sql_sees_the_session_in_utc(store):
    text = ok(
        "SELECT current_setting('TimeZone') AS zone, exchange_ts::VARCHAR AS ts "
        "FROM latest_positions LIMIT 1",
        "--store", str(store), "--format", "csv",
    )  # fmt: skip
    assert text == "zone,ts\nUTC,2023-10-19 02:25:17.038+00\n"


def test_help_lists_every_named_query_with_its_line(store):
    shown = ok("--help")
    assert "usage: python -m ingestor query" in shown
    for name, (description, _) in NAMED_QUERIES.items():
        assert any(line.split() == [name, *description.split()] for line in shown.splitlines())
    for fmt in ("table", "csv", "json", "parquet"):
        assert fmt in shown


@pytest.mark.parametrize("name", list(NAMED_QUERIES))
def test_every_named_query_answers_on_a_store(store, name):
    """The store has no ledger rows: the ledger's queries answer with none, and still run."""
    lines = ok(name, "--store", str(store)).splitlines()
    assert re.fullmatch(r"\((\d+) rows?\)", lines[-1]), lines[-1]


def test_a_failed_query_leaves_no_output_file(store, tmp_path):
    out = tmp_path / "wrong.csv"
    result = query("SELECT nope FROM nowhere", "--store", str(store), "--format", "csv",
                   "--output", str(out))  # fmt: skip
    assert result.returncode == 1 and "error:" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("0.222230410000000000", "0.22223041"),
        ("100.000000000000000000", "100"),
        ("1E+2", "100"),
        ("100", "100"),
        ("0E-18", "0"),
        ("-0E-18", "0"),
        ("-25.065793370000000000", "-25.06579337"),
        ("0.000000000000000001", "0.000000000000000001"),
        ("1E-18", "0.000000000000000001"),
        ("99999999999999999999.999999999999999999", "99999999999999999999.999999999999999999"),
        ("10.50", "10.5"),
    ],
)
def test_decimal_text(value, text):
    assert decimal_text(Decimal(value)) == text


def test_time_and_interval_text():
    moment = datetime(2023, 10, 19, 2, 25, 17, 38000, tzinfo=UTC)
    assert time_text(moment) == "2023-10-19T02:25:17.038+00:00"
    assert time_text(moment.replace(microsecond=38123), " ") == "2023-10-19 02:25:17.038123+00:00"
    assert time_text(moment.replace(microsecond=0)) == "2023-10-19T02:25:17+00:00"
    tokyo = moment.astimezone(ZoneInfo("Asia/Tokyo"))
    assert time_text(tokyo) == "2023-10-19T02:25:17.038+00:00"  # shown in UTC
    assert time_text(datetime(2023, 10, 19, 2, 25)) == "2023-10-19T02:25:00"  # no zone, none shown
    assert interval_text(
        pa.scalar((1, 3, 1_500_000_000), pa.month_day_nano_interval()).as_py()
    ) == ("P1M3DT1.5S")
