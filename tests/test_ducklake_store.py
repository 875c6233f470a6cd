"""The DuckLake store on real files and a real PostgreSQL server: exact values, one lake
commit per flush, replays stored once, a reader process watching the lake while the service
captures, the spool while the catalog is down, and two sharded ingestors writing one lake."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from ingestor import config
from ingestor.config import Account, Secret, Settings
from ingestor.service.supervisor import COLLECTORS, INSTANCES, own_shard, shard, shard_of
from ingestor.sinks import open_reader, open_store
from ingestor.sinks.ducklake_store import DuckLakeStore
from tests.engine_helpers import differences, latest_state, wait_until
from tests.postgres_server import postgres
from tests.service_helpers import communicate_or_explain, start_sim
from tests.test_duckdb_store import WALLET_PUSH, batches, position_push

ROWS = "(SELECT count(*) FROM position_snapshots) + (SELECT count(*) FROM wallet_snapshots)"


def query(store: str | Path, sql: str) -> list[tuple]:
    with open_reader("ducklake", store) as con:
        return con.execute(sql).fetchall()


def inserting_snapshots(store: str | Path) -> list[tuple]:
    return query(
        store,
        "SELECT snapshot_id, author, changes FROM lake.snapshots() "
        "WHERE changes['tables_inserted_into'] IS NOT NULL ORDER BY snapshot_id",
    )


def test_exact_decimals_nulls_views_and_macros_round_trip(tmp_path):
    lake = tmp_path / "capture.lake"
    store = open_store("ducklake", lake)
    store.create()
    store.create()  # idempotent
    frames = [
        position_push("m1", 1_700_000_000_000, "1.5", 10),
        position_push("m2", 1_700_000_001_000, "0.000000000000000001", 11),
        WALLET_PUSH,
    ]
    assert store.write(batches(frames)) == 4
    store.close()
    types = dict((c[0], c[1]) for c in query(lake, "DESCRIBE position_snapshots"))
    assert types["size"] == "DECIMAL(38,18)"
    assert types["exchange_ts"] == "TIMESTAMP WITH TIME ZONE"
    assert query(lake, "SELECT size, seq FROM latest_positions") == [
        (Decimal("0.000000000000000001"), 11)
    ]
    # The macros are the reader's own (DuckLake stores no functions); the views are the lake's.
    asof = query(lake, "SELECT size FROM positions_asof(TIMESTAMPTZ '2023-11-14 22:13:20.5+00')")
    assert asof == [(Decimal("1.5"),)]
    wallets = dict(query(lake, "SELECT coin, wallet_balance FROM latest_wallets"))
    assert wallets == {"BTC": Decimal("0.00102964"), "USDT": Decimal("9684.46297164")}
    nulls = query(lake, "SELECT count(*) FROM latest_wallets WHERE available_to_withdraw IS NULL")
    assert nulls == [(1,)]
    # Data files live in the lake's folder, the catalog beside them.
    assert (lake / "catalog.sqlite").is_file()
    assert list((lake / "data").rglob("*.parquet"))


def test_each_flush_is_one_lake_commit_and_replays_are_stored_once(tmp_path):
    lake = tmp_path / "capture.lake"
    store = DuckLakeStore(lake)
    store.create()
    push = position_push("m1", 1_700_000_000_000, "1", 10)
    # Two tables in one flush: still one snapshot.
    assert store.write(batches([push, push, WALLET_PUSH])) == 3
    assert store.write(batches([position_push("m2", 1_700_000_002_000, "2", 11)])) == 1
    assert store.write(batches([push, WALLET_PUSH])) == 0  # a replay: nothing new, no commit
    assert store.write(batches([position_push("m3", 1_700_000_003_000, "3", 12)])) == 1
    store.close()
    snapshots = inserting_snapshots(lake)
    assert len(snapshots) == 3
    # Each history table with its state table and its late rows (the pushes are of 2023,
    # received now), all in the same commit.
    assert [len(changes["tables_inserted_into"]) for _, _, changes in snapshots] == [6, 3, 3]
    assert {author for _, author, _ in snapshots} == {"ingestor"}
    assert query(lake, f"SELECT {ROWS}") == [(5,)]


WATCH = """
import sys, pathlib, time
from ingestor.sinks import open_reader
stop = pathlib.Path(sys.argv[2])
# One connection held open, as an analyst's session would: each query sees the newest commit.
with open_reader("ducklake", sys.argv[1]) as con:
    while True:
        final = stop.exists()
        (rows,) = con.execute(sys.argv[3]).fetchone()
        print("final" if final else "rows", rows, flush=True)
        if final:
            break
        time.sleep(0.05)
"""


def test_a_reader_process_sees_every_flush_while_the_service_captures(tmp_path):
    run = start_sim(tmp_path, accounts=4, seed=31, duration=12, sink="ducklake")
    service = run.start_service("--duration", "14")
    assert wait_until(lambda: _tables_exist(run.store), timeout=60, every=0.1)
    stop = tmp_path / "stop"
    watcher = subprocess.Popen(
        [sys.executable, "-c", WATCH, str(run.store), str(stop), f"SELECT {ROWS}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Counts read while the service still runs: the lake is read live, not after.
        seen: list[int] = []
        while service.poll() is None and len(set(seen)) < 4:
            line = watcher.stdout.readline()
            assert line.startswith("rows "), watcher.stderr.read()
            seen.append(int(line.split()[1]))
        assert len(set(seen)) == 4, f"the service ended with only {sorted(set(seen))} seen"
        assert run.wait_service() == 0, run.outputs[-1]
        stop.touch()
        out, err = watcher.communicate(timeout=60)
    finally:
        watcher.kill()
    assert watcher.returncode == 0, err
    *growing, final = out.splitlines()
    counts = seen + [int(line.split()[1]) for line in growing]
    assert counts == sorted(counts)
    (total,) = run.query(f"SELECT {ROWS}")[0]
    assert final == f"final {total}"
    # Each count the reader saw is a state some commit left: one snapshot per flush.
    assert len(inserting_snapshots(run.store)) >= len(set(counts)) - 1
    run.finish_sim()


def _tables_exist(lake: Path) -> bool:
    if not (lake / "catalog.sqlite").exists():
        return False
    try:
        return query(lake, "SELECT count(*) FROM latest_positions") is not None
    except Exception:  # the catalog is there, its tables not yet
        return False


WRITE_FLUSHES = """
import sys
import ingestor
from tests.test_duckdb_store import position_push
from ingestor.sinks.ducklake_store import DuckLakeStore
index = int(sys.argv[2])
store = DuckLakeStore(sys.argv[1], shard=(index, 2))
store.create()
for n in range(int(sys.argv[3])):
    push = position_push(f"{index}-{n}", 1_700_000_000_000 + n, str(n + 1), n)
    frames = ingestor.decode([push], account_id=f"acct-{index}")
    assert store.write(list(frames.items())) == 1
store.close()
"""


def test_two_writers_on_one_sqlite_lake_both_commit_every_flush(tmp_path):
    lake = tmp_path / "shared.lake"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITE_FLUSHES, str(lake), str(i), "25"],
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (0, 1)
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err
    counts = query(lake, "SELECT account_id, count(*) FROM position_snapshots GROUP BY ALL")
    assert sorted(counts) == [("acct-0", 25), ("acct-1", 25)]
    authors = [author for _, author, _ in inserting_snapshots(lake)]
    assert sorted(set(authors)) == ["ingestor shard 0/2", "ingestor shard 1/2"]
    assert len(authors) == 50
    assert not list(lake.glob("spool*/*.arrow"))


# --- shards -------------------------------------------------------------------------------


def _account(account_id: str) -> Account:
    return Account(account_id, "sim", None, None, Secret(""), Secret(""))


def test_shards_are_stable_disjoint_and_cover_every_account():
    ids = [f"sim-{i:04d}" for i in range(1, 2001)]
    for count in (1, 2, 3, 7):
        groups = [{a for a in ids if shard_of(a, count, INSTANCES) == i} for i in range(count)]
        assert sum(len(g) for g in groups) == len(ids)
        assert set().union(*groups) == set(ids)
        assert all(groups)
    # Not Python's hash(): another process, with another hash seed, agrees.
    code = (
        "from ingestor.service.supervisor import shard_of, INSTANCES\n"
        "print([shard_of(f'sim-{i:04d}', 7, INSTANCES) for i in range(1, 201)])"
    )
    here = str([shard_of(f"sim-{i:04d}", 7, INSTANCES) for i in range(1, 201)])
    for seed in ("1", "2"):
        there = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        )
        assert there.stdout.strip() == here


def test_an_instance_spreads_its_shard_over_all_of_its_collectors():
    accounts = tuple(_account(f"sim-{i:04d}") for i in range(1, 401))
    held = []
    for index in (0, 1):
        mine = own_shard(Settings(accounts=accounts, shard=(index, 2))).accounts
        held.append({a.id for a in mine})
        # The instance hash and the collector hash are independent: half of the accounts
        # per instance still fill both of its collectors.
        groups = shard(mine, 2)
        assert len(groups) == 2 and min(len(g) for g in groups) > len(mine) // 4
    assert held[0].isdisjoint(held[1]) and held[0] | held[1] == {a.id for a in accounts}
    assert {shard_of(a.id, 2, COLLECTORS) for a in accounts} == {0, 1}


def _load(tmp_path: Path, text: str, **overrides) -> Settings:
    path = tmp_path / "accounts.yaml"
    path.write_text(
        "accounts:\n  - {id: sim-0001, environment: sim, api_key: k, api_secret: s}\n" + text
    )
    return config.load(path, env={}, overrides=overrides)


def test_shard_and_lake_settings_are_validated_with_their_line(tmp_path):
    settings = _load(
        tmp_path,
        "shard: 1/3\nsink:\n  kind: ducklake\n  path: 'postgres:dbname=lake host=db'\n"
        "  data_path: /shared/lake\n",
    )
    assert settings.shard == (1, 3)
    assert settings.sink == config.Sink("ducklake", "postgres:dbname=lake host=db", "/shared/lake")
    assert _load(tmp_path, "shard: 1/3\n", shard="0/2").shard == (0, 2)
    with pytest.raises(
        config.ConfigError, match=r"accounts.yaml:3: shard: 3/3: i must be .*less than n"
    ):
        _load(tmp_path, "shard: 3/3\n")
    with pytest.raises(config.ConfigError, match=r"--shard: .* is not i/n"):
        _load(tmp_path, "", shard="half")
    with pytest.raises(config.ConfigError, match=r"accounts.yaml:5: sink.path: no password"):
        _load(tmp_path, "sink:\n  kind: ducklake\n  path: 'postgres:dbname=x password=hunter2'\n")
    with pytest.raises(config.ConfigError, match=r"accounts.yaml:5: sink.data_path: only a"):
        _load(tmp_path, "sink:\n  kind: duckdb\n  data_path: /x\n")


# --- PostgreSQL catalog -------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg():
    with postgres() as server:
        yield server


def test_batches_wait_in_the_spool_while_the_catalog_is_down(tmp_path, pg):
    lake = f"postgres:{pg.create_database('down')}"
    store = DuckLakeStore(lake, data_path=tmp_path / "data", spool_dir=tmp_path / "spool")
    store.create()
    assert store.write(batches([position_push("m1", 1_700_000_000_000, "1", 1)])) == 1
    pg.stop()
    try:
        assert store.write(batches([position_push("m2", 1_700_000_001_000, "2", 2)])) == 0
        assert len(store.spool) == 1
    finally:
        pg.start()
    # The next flush commits what waited, then its own rows, in order.
    assert store.write(batches([position_push("m3", 1_700_000_002_000, "3", 3)])) == 2
    assert len(store.spool) == 0
    store.close()
    sizes = query(lake, "SELECT size FROM position_snapshots ORDER BY seq")
    assert sizes == [(Decimal(1),), (Decimal(2),), (Decimal(3),)]
    assert list((tmp_path / "data").rglob("*.parquet"))


def _start_instance(run, store: str, data: Path, part: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ingestor", "--accounts", str(run.accounts),
         "--sink", "ducklake", "--store", store, "--data-path", str(data),
         "--shard", part, "--status", "log", "--duration", "9",
         "--no-check"],  # the simulator gives some accounts trading keys
        env={**os.environ, **run.env}, cwd=run.folder,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_two_sharded_ingestors_write_one_lake_that_equals_the_truth(tmp_path, pg):
    store = f"postgres:{pg.create_database('twobox')}"
    data = tmp_path / "shared-data"
    run = start_sim(tmp_path, accounts=12, seed=41, duration=5, sink="ducklake")
    instances = [_start_instance(run, store, data, f"{i}/2") for i in (0, 1)]
    logs = []
    for instance in instances:
        out, err = communicate_or_explain(instance, timeout=120)
        logs.append(out + err)
        assert instance.returncode == 0, err
    truth = run.finish_sim()
    held = [int(line.split(" holds ")[1].split()[0]) for line in "".join(logs).splitlines()
            if " holds " in line]  # fmt: skip
    assert len(held) == 2 and sum(held) == 12 and all(held)
    for secret in run.secrets:
        assert all(secret not in text for text in logs)

    with open_reader("ducklake", store) as con:
        assert differences(latest_state(con), truth) == []
        (last,) = con.execute("SELECT max(snapshot_id) FROM lake.snapshots()").fetchone()
        authors = dict(
            con.execute(
                f"""
                SELECT account_id, list(DISTINCT author ORDER BY author) FROM (
                    SELECT account_id, snapshot_id
                    FROM lake.table_changes('position_snapshots', 0, {last})
                    UNION ALL SELECT account_id, snapshot_id
                    FROM lake.table_changes('wallet_snapshots', 0, {last})
                ) JOIN lake.snapshots() USING (snapshot_id)
                GROUP BY account_id
                """
            ).fetchall()
        )
    accounts = {w["account_id"] for w in truth["wallets"]}
    assert set(authors) == accounts
    # Every account's rows come from exactly one instance: the one its shard names.
    for account, names in authors.items():
        assert names == [f"ingestor shard {shard_of(account, 2, INSTANCES)}/2"], account
    assert {names[0] for names in authors.values()} == {"ingestor shard 0/2", "ingestor shard 1/2"}
    assert list(data.rglob("*.parquet"))
