"""The current state a store keeps at every commit (`queries.STATES`) answers `latest_*`,
`open_orders` and the `*_asof` macros exactly as their definitions over the raw history
would, whatever the arrival order: late rows, replays, REST rows older than what is stored,
keys seen once, an order's older open version after its close. Random histories
(hypothesis) through the real stores, DuckDB file and DuckLake."""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ingestor
from ingestor import _core, queries
from ingestor.sinks import duckdb_store, open_reader, open_store
from ingestor.sinks.duckdb_store import DuckDBStore
from tests.test_duckdb_store import POSITION_PUSH, WALLET_PUSH
from tests.test_ledger_views import order as ledger_order
from tests.test_ledger_views import rest_page

BASE_MS = 1_700_000_000_000
ACCOUNTS = ("a0", "a1")
SYMBOLS = ("BTCUSDT", "ETHUSDT")


def position(message_id: str, symbol: str, idx: int, updated_ms: int, seq: int | None) -> dict:
    push = orjson.loads(POSITION_PUSH)
    push["id"], push["creationTime"] = message_id, updated_ms + 5
    element = push["data"][0]
    element.update(symbol=symbol, positionIdx=idx, updatedTime=str(updated_ms), side="Buy")
    element["size"] = str(updated_ms % 97)
    if seq is None:
        element.pop("seq", None)
    else:
        element["seq"] = seq
    return push


#: An order's status and cumExecQty from an arrival's `seq` slot ("" is NULL).
ORDER_VERSIONS = {
    None: ("New", ""),
    -1: ("New", "0"),
    0: ("PartiallyFilled", "0.2"),
    1: ("PartiallyFilled", "0.5"),
    2: ("Filled", "1"),
    3: ("Cancelled", "0.5"),
    4: ("Untriggered", "0"),
    5: ("Filled", "1"),
}


def order(symbol: str, idx: int, updated_ms: int, seq: int | None) -> dict:
    """A version of one of four orders an account has (by symbol and idx)."""
    status, cum = ORDER_VERSIONS[seq]
    element = ledger_order(f"{symbol}-{idx}", updated_ms, status, cum, "")
    return {**element, "symbol": symbol, "createdTime": str(BASE_MS)}


def wallet(message_id: str, created_ms: int) -> dict:
    push = orjson.loads(WALLET_PUSH)
    push["id"], push["creationTime"] = message_id, created_ms
    for element in push["data"]:
        element["totalEquity"] = str(created_ms % 1013)
    return push


# One arrival: (kind, account, symbol, idx, offset ms, seq); kind "rest" is a resync page, an
# order's "order_rest" a backfill's (of its history or of the open orders).
arrival = st.tuples(
    st.sampled_from(("ws", "ws", "rest", "wallet", "replay", "order", "order", "order_rest")),
    st.sampled_from(ACCOUNTS),
    st.sampled_from(SYMBOLS),
    st.sampled_from((0, 1)),
    # Late rows are the normal case: any order, within ten days.
    st.integers(0, 10 * 86_400_000),
    st.one_of(st.none(), st.integers(-1, 5)),
)
histories = st.lists(st.lists(arrival, min_size=1, max_size=6), min_size=1, max_size=6)


def commits(history: list[list[tuple]]) -> list[list[tuple[str, object]]]:
    """Each commit's batches, every frame decoded at its own instant (the definitions break
    ties by arrival, and a real socket never delivers two frames at one microsecond)."""
    # Arriving at the middle of the rows' ten days: with `on_time_by_days`, rows up to
    # three days either side are on time and the rest late (or early).
    out, sent = [], []
    clock = datetime.fromtimestamp((BASE_MS + 5 * 86_400_000) / 1000, UTC)
    for n, commit in enumerate(history):
        batches = []
        for i, (kind, account, symbol, idx, offset, seq) in enumerate(commit):
            clock += timedelta(milliseconds=1)
            message_id = f"m{n}-{i}"
            if kind == "replay" and sent:
                frame, account = sent[offset % len(sent)]
            elif kind == "wallet":
                frame = orjson.dumps(wallet(message_id, BASE_MS + offset))
            elif kind in ("rest", "order_rest"):
                if kind == "rest":
                    element = position(message_id, symbol, idx, BASE_MS + offset, seq)["data"][0]
                    endpoint = "/v5/position/list"
                else:
                    element = order(symbol, idx, BASE_MS + offset, seq)
                    endpoint = ("/v5/order/history", "/v5/order/realtime")[offset % 2]
                decoded = _core.decode_rest(
                    rest_page([element], BASE_MS + offset + 7),
                    endpoint=endpoint,
                    account_id=account,
                    received_at_us=int(clock.timestamp() * 1_000_000),
                )
                batches += [(t, b) for t, b in decoded.items() if b.num_rows]
                continue
            elif kind == "order":
                body = {"id": message_id, "topic": "order", "creationTime": BASE_MS + offset + 5}
                body["data"] = [order(symbol, idx, BASE_MS + offset, seq)]
                frame = orjson.dumps(body)
            else:
                frame = orjson.dumps(position(message_id, symbol, idx, BASE_MS + offset, seq))
            sent.append((frame, account))
            decoded = ingestor.decode([frame], account_id=account, received_at=clock)
            batches += [(t, b) for t, b in decoded.items() if b.num_rows]
        out.append(batches)
    return out


def same(con, shipped: str, definition: str, what: str) -> None:
    kept = con.execute(shipped).fetchall()
    want = con.execute(definition).fetchall()
    assert sorted(map(repr, kept)) == sorted(map(repr, want)), what


def assert_state_is_the_definition(kind: str, path: Path) -> None:
    with open_reader(kind, path) as con:
        for state in queries.STATES:
            same(con, f"SELECT * FROM {state.view}", queries.defined_latest(state), state.view)
            # Every instant a row has, just before and after it, and before and after all.
            instants = {
                BASE_MS - 1,
                BASE_MS + 11 * 86_400_000,
                *(
                    round(ts.timestamp() * 1000) + d
                    for (ts,) in con.execute(
                        f"SELECT DISTINCT exchange_ts FROM {state.history}"
                    ).fetchall()
                    for d in (-1, 0, 1)
                ),
            }
            # Spread over the history: its first and last, and every fourth between.
            for ms in [*sorted(instants)[::4], max(instants)]:
                t = f"make_timestamptz({ms * 1000}::BIGINT)"
                definition = queries.defined_latest(state, f"exchange_ts <= {t}")
                same(con, f"SELECT * FROM {state.asof}({t})", definition, f"{state.asof} {ms}")
        # Every order's newest version (not a state: its answer is every order).
        every_order = (
            f"SELECT * FROM order_events QUALIFY row_number() OVER (PARTITION BY "
            f"{queries.ORDER_KEY} ORDER BY {queries.ORDER_ORDER}) = 1"
        )
        same(con, "SELECT * FROM latest_orders", every_order, "latest_orders")
        # The time series: every instant's row is that instant's wallets_asof row.
        day = 86_400_000
        ranges = (
            (BASE_MS - 1, BASE_MS + 11 * day, "1 day"),
            (BASE_MS + 3 * day, BASE_MS + 4 * day, "5 hours"),
            # Fixed steps take their own path: one that does not divide the range, from an
            # instant before any row.
            (BASE_MS - 7_000_001, BASE_MS + 2 * day, "7 hours 3 minutes 1 second"),
        )
        for start, stop, step in ranges:
            first, last = (f"make_timestamptz({ms * 1000}::BIGINT)" for ms in (start, stop))
            series = f"SELECT * FROM wallets_every({first}, {last}, INTERVAL '{step}')"
            definition = f"""
                SELECT i.instant, w.* FROM (SELECT unnest(generate_series({first}, {last},
                    INTERVAL '{step}')) AS instant) i, LATERAL (
                    SELECT * FROM wallet_snapshots WHERE exchange_ts <= i.instant
                    QUALIFY row_number() OVER (PARTITION BY {queries.WALLET_KEY}
                                               ORDER BY {queries.WALLET_ORDER}) = 1) w
            """
            same(con, series, definition, f"wallets_every {step}")


@pytest.fixture(autouse=True)
def checkpoint_often(monkeypatch):
    """Checkpoints every few rows, so random histories cross many of them, late rows too."""
    monkeypatch.setattr(queries, "CHECKPOINT_ROWS", 3)


@pytest.fixture(autouse=True)
def on_time_by_days(monkeypatch):
    """Rows within three days of their arrival are on time (`queries.ON_TIME_S`), so the
    histories have both: the ones `*_asof` reads by both times and the late table's."""
    monkeypatch.setattr(queries, "ON_TIME_S", 3 * 86_400)


def capture(kind: str, history: list[list[tuple]], open_check: bool = False) -> None:
    """`open_check`: the answers are checked while the store is open too, with rows in its
    hot tier (a DuckDB file) behind moved ones and checkpoints."""
    folder = Path(tempfile.mkdtemp())
    try:
        path = folder / ("s.duckdb" if kind == "duckdb" else "s.lake")
        store = DuckDBStore(path, mover=False) if open_check else open_store(kind, path)
        store.create()
        for batches in commits(history):
            store.write(batches)
        if open_check:
            assert_state_is_the_definition(kind, path)
        store.close()
        assert_state_is_the_definition(kind, path)
    finally:
        shutil.rmtree(folder)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories)
def test_the_duckdb_state_is_the_definition_over_any_history(history):
    capture("duckdb", history)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories)
def test_the_duckdb_state_is_the_definition_with_rows_in_the_hot_tier(history):
    """Moves of two rows a table (a row group of two): each write moves some rows and leaves
    the rest hot, older or newer than the checkpoints the moves made. A move's late rows
    and rows that patch checkpoints past one are read by their statements themselves
    (`queries.STATE_PICK_ROWS`)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(duckdb_store, "ROW_GROUP_ROWS", 2)
        patch.setattr(queries, "STATE_PICK_ROWS", 1)
        capture("duckdb", history, open_check=True)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories)
def test_the_lake_state_is_the_definition_over_any_history(history):
    capture("ducklake", history)


def test_a_store_made_before_the_state_gets_it_built_once(tmp_path):
    path = tmp_path / "old.duckdb"
    history = [
        [("ws", "a0", "BTCUSDT", 0, 5_000, 3), ("ws", "a0", "BTCUSDT", 0, 1_000, 9)],
        [("rest", "a1", "ETHUSDT", 1, 7_000, None), ("wallet", "a0", "", 0, 2_000, None)],
    ]
    old = DuckDBStore(path, state=False)  # as a store of the previous version was written
    old.create()
    for batches in commits(history):
        old.write(batches)
    old.close()
    store = DuckDBStore(path)
    store.create()
    store.close()
    assert_state_is_the_definition("duckdb", path)
    with open_reader("duckdb", path) as con:
        assert con.execute("SELECT count(*) FROM position_state").fetchone() == (2,)
        # Its first checkpoint, built from the whole history at start (the wallet history is
        # shorter than CHECKPOINT_ROWS: none yet).
        made = con.execute(f"SELECT history FROM {queries.CHECKPOINTS}").fetchall()
        assert made == [("position_snapshots",)]


def test_checkpoints_come_at_a_multiple_of_the_state_size(tmp_path, monkeypatch):
    """Every CHECKPOINT_STATE_FACTOR × (keys in the state) history rows: an `*_asof` reads at
    most that many rows past its checkpoint, whatever the history's size."""
    monkeypatch.setattr(queries, "CHECKPOINT_ROWS", 1_000_000)
    monkeypatch.setattr(queries, "CHECKPOINT_MIN_ROWS", 1)
    monkeypatch.setattr(queries, "CHECKPOINT_STATE_FACTOR", 4)
    path = tmp_path / "c.duckdb"
    # Two position keys, one row each per commit: a checkpoint every 8 rows, 4 in 16 commits
    # (each store closed, so each commit is moved into the file at once).
    for n in range(16):
        store = DuckDBStore(path, mover=False)
        store.create()
        store.write(commits([[("ws", "a0", s, 0, n * 1000, n) for s in SYMBOLS]])[0])
        store.close()
    with open_reader("duckdb", path) as con:
        made = con.execute(
            f"SELECT count(*) FROM {queries.CHECKPOINTS} WHERE history = 'position_snapshots'"
        ).fetchone()
    assert made == (4,)


# An order filled at 5 s, other orders' rows after it (checkpoints past it), then the order's
# older `New` (a backfill's, a replay's): it must not reopen the order, now or in any
# checkpoint; and a `New` of an order never seen before does open it.
CLOSED_THEN_OLDER_OPEN = [
    [("order", "a0", "BTCUSDT", 0, 5_000, 2)],
    [("order", "a0", "ETHUSDT", 1, t, -1) for t in (6_000, 7_000, 8_000)],
    [("order", "a1", "ETHUSDT", 0, t, 0) for t in (9_000, 10_000, 11_000)],
    [("order_rest", "a0", "BTCUSDT", 0, 1_000, -1), ("order", "a0", "BTCUSDT", 1, 2_000, 1)],
    # Its older partial fill last: with moves of two rows it stays in the hot tier, behind
    # checkpoints that lack the order.
    [("order", "a1", "ETHUSDT", 1, 12_000, 4), ("order", "a0", "BTCUSDT", 0, 3_000, 0)],
]


@pytest.mark.parametrize(
    "kind,open_check", [("duckdb", False), ("duckdb", True), ("ducklake", False)]
)
def test_an_older_open_version_does_not_reopen_a_closed_order(kind, open_check, monkeypatch):
    if open_check:
        monkeypatch.setattr(duckdb_store, "ROW_GROUP_ROWS", 2)
    capture(kind, CLOSED_THEN_OLDER_OPEN, open_check=open_check)


def test_a_move_larger_than_the_cadence_makes_each_checkpoint_inside_it(tmp_path, monkeypatch):
    """A DuckDB file moves whole row groups: a move of four checkpoints' worth of rows makes
    four checkpoints, not one, so `*_asof` never reads more than that many rows past one."""
    monkeypatch.setattr(queries, "CHECKPOINT_ROWS", 1_000_000)
    monkeypatch.setattr(queries, "CHECKPOINT_MIN_ROWS", 1)
    monkeypatch.setattr(queries, "CHECKPOINT_STATE_FACTOR", 4)
    path = tmp_path / "c.duckdb"
    # Two position keys, 32 rows, every row on time and in order: the first two moved alone
    # (a state's first move is folded whole: it does not know its keys yet), the other 30
    # at close as one.
    history = [[("ws", "a0", s, 0, n * 1000, n) for s in SYMBOLS] for n in range(16)]
    batches = commits(history)
    for part in (batches[:1], batches[1:]):
        store = DuckDBStore(path, mover=False)
        store.create()
        for commit in part:
            store.write(commit)
        assert store.moved_rows == 0
        store.close()
    with open_reader("duckdb", path) as con:
        made = con.execute(
            f"SELECT checkpoint_ts FROM {queries.CHECKPOINTS} "
            "WHERE history = 'position_snapshots' ORDER BY 1"
        ).fetchall()
    # At the 8th, 16th, 24th and 32nd row: their exchange times 3, 7, 11 and 15 s in.
    assert [round(ts.timestamp() * 1000) - BASE_MS for (ts,) in made] == [
        3_000,
        7_000,
        11_000,
        15_000,
    ]
    assert_state_is_the_definition("duckdb", path)
