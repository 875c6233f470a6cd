"""The ledger end to end: the simulator's executions and orders captured by the service, over
the stream and the REST backfill, with faults on, a collector killed, and the whole service
killed and left down while the accounts keep trading. The store must hold every execution
the simulator made, once, with every value, and every order's final status; the balances
must tie out against the executions. Real processes, sockets and files; every run under a
timeout that fails it."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from decimal import Decimal

from tests.engine_helpers import wait_until
from tests.service_helpers import Run, start_sim
from tests.test_service import FAULTS, collector_pids, read_until_collectors


def stored_executions(run: Run) -> Counter:
    return Counter(
        run.query(
            "SELECT account_id, exec_id, exec_type, category, symbol, side, exec_qty, "
            "exec_price, exec_fee, epoch_ms(exchange_ts) FROM execution_events"
        )
    )


def true_executions(truth: dict) -> Counter:
    def value(text: str | None) -> Decimal | None:
        return None if text in (None, "") else Decimal(text)

    return Counter(
        (
            e["account_id"],
            e["exec_id"],
            e["exec_type"],
            e["category"],
            e["symbol"],
            e["side"] or None,
            value(e["exec_qty"]),
            value(e["exec_price"]),
            value(e["exec_fee"]),
            int(e["exec_time"]),
        )
        for e in truth["executions"]
    )


def assert_ledger_is_the_truth(run: Run, truth: dict) -> None:
    stored, expected = stored_executions(run), true_executions(truth)
    assert expected, "the simulator made executions"
    kinds = {e["exec_type"] for e in truth["executions"]}
    assert {"Trade", "Funding"} <= kinds, kinds
    missing, extra = expected - stored, stored - expected
    assert not missing and not extra, (sorted(missing)[:5], sorted(extra)[:5])
    final = dict(
        ((a, o), (s, q))
        for a, o, s, q in run.query(
            "SELECT account_id, order_id, order_status, cum_exec_qty FROM latest_orders"
        )
    )
    for order in truth["orders"]:
        key = (order["account_id"], order["order_id"])
        assert final.get(key) == (order["order_status"], Decimal(order["cum_exec_qty"])), key
    assert len(final) == len(truth["orders"])


def assert_balances_tie_out(run: Run) -> None:
    """Over the run, per account and coin: the wallet balance moved by exactly the realised
    PnL less the fees and funding of the executions stored. To the newest wallet row of any
    account (the sim trades for less time than the service runs): an account whose last
    wallet push was lost to a dropped connection has its balance from the REST resync after
    it, stamped later than every other account's last push (stopping at the earliest of the
    accounts' last rows left that balance out and counted the execution: a CI failure)."""
    ((start, stop),) = run.query(
        "SELECT epoch_us(max(first)), epoch_us(max(last)) FROM (SELECT account_id, "
        "min(exchange_ts) AS first, max(exchange_ts) AS last FROM wallet_snapshots GROUP BY ALL)"
    )
    rows = run.query(
        "SELECT account_id, coin, balance_change, executions, difference FROM ledger_tieout("
        f"make_timestamptz({start}::BIGINT), make_timestamptz({stop}::BIGINT)) "
        "WHERE executions > 0"
    )
    assert rows, "executions within the run"
    assert [r for r in rows if r[4] != 0] == []


def test_the_ledger_with_faults_equals_the_truth(tmp_path):
    run = start_sim(tmp_path, accounts=8, seed=61, duration=6, faults=FAULTS)
    run.start_service("--duration", "11")
    assert run.wait_service() == 0, run.outputs[-1]
    truth = run.finish_sim()
    assert sum(truth["faults"]["drop"].values()) > 0, "connections were lost"
    assert_ledger_is_the_truth(run, truth)
    assert_balances_tie_out(run)
    (backfilled,) = run.query(
        "SELECT count(DISTINCT account_id) FROM connection_events WHERE event = 'backfilled'"
    )[0]
    assert backfilled == 8


def test_the_ledger_survives_a_killed_collector(tmp_path):
    run = start_sim(tmp_path, accounts=8, seed=62, duration=7)
    service = run.start_service("--duration", "12", "--workers", "2")
    lines = read_until_collectors(service, 2)
    time.sleep(2.5)
    os.kill(collector_pids(lines)[0], signal.SIGKILL)
    assert run.wait_service() == 0
    assert "died (exit code -9); restarting it" in "".join(lines) + run.outputs[-1]
    truth = run.finish_sim()
    assert_ledger_is_the_truth(run, truth)


def test_the_ledger_is_whole_after_the_service_was_killed_and_down_for_15_s(tmp_path):
    run = start_sim(tmp_path, accounts=4, seed=63, duration=26)
    try:
        service = run.start_service("--duration", "60")

        def captured() -> int:
            try:
                return run.query("SELECT count(DISTINCT account_id) FROM execution_events")[0][0]
            except Exception:  # not there yet, or the writer holds the file
                return 0

        assert wait_until(lambda: captured() == 4, timeout=60), "every account's executions"
        time.sleep(1.0)
        service.send_signal(signal.SIGKILL)
        service.wait(timeout=30)
        killed_at = time.time()
        time.sleep(15)  # the accounts keep trading, nothing watches them
        # The second run outlives the market (26 s from the simulator's start) by a few s.
        run.start_service("--duration", "14")
        assert run.wait_service(timeout=120) == 0, run.outputs[-1]
    finally:
        if run.service is not None and run.service.poll() is None:
            run.service.kill()
    truth = run.finish_sim()
    assert_ledger_is_the_truth(run, truth)
    # What happened while nothing watched came back over REST.
    (rest,) = run.query(
        "SELECT count(*) FROM execution_events WHERE source = 'rest' "
        f"AND exchange_ts > make_timestamptz({int(killed_at * 1e6)}::BIGINT)"
    )[0]
    assert rest > 0


def test_a_backfill_that_fails_is_a_gap_of_each_kind(tmp_path):
    # Every REST request fails (retCode 10016), tried once: no backfill can succeed.
    run = start_sim(tmp_path, accounts=2, seed=64, duration=3, faults=("--rest-error-rate", "1"))
    with run.accounts.open("a") as f:
        f.write("  rest_attempts: 1\n")  # in the engine mapping the file ends with
    run.start_service("--duration", "6")
    assert run.wait_service() == 0, run.outputs[-1]
    run.finish_sim()
    failed = run.query(
        "SELECT account_id, kind, count(*) FROM ledger_gaps "
        "WHERE reason LIKE 'backfill failed: %retCode 10016%' GROUP BY ALL ORDER BY ALL"
    )
    assert run.query("SELECT count(*) FROM execution_events")[0][0] > 0, "the stream delivered"
    accounts = [
        a
        for (a,) in run.query(
            "SELECT DISTINCT account_id FROM connection_events WHERE event = 'subscribed'"
        )
    ]
    assert len(accounts) == 2
    kinds = {(a, k) for a, k, _ in failed}
    assert kinds == {(a, k) for a in accounts for k in ("execution", "order")}
    assert run.query("SELECT count(*) FROM connection_events WHERE event = 'backfilled'") == [(0,)]
    assert run.query(
        "SELECT count(DISTINCT account_id) FROM connection_events WHERE event = 'backfill_failed'"
    ) == [(len(accounts),)]
