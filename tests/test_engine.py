"""The Rust connection engine against the simulator, over real sockets on 127.0.0.1."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from ingestor._core import Collector
from ingestor.sim import Exchange, FaultConfig
from tests.engine_helpers import (
    FAST,
    Captured,
    differences,
    latest_state,
    specs,
    wait_until,
)
from tests.tls_helpers import private_ca


def all_live(collector: Collector, count: int) -> bool:
    stats = collector.stats()
    return len(stats) == count and all(s["state"] == "live" for s in stats)


def ws_messages(captured: Captured) -> Counter:
    """Distinct pushes received per (account, table), from the message ids of the rows."""
    seen: set[tuple[str, str, str]] = set()
    for table in ("position_snapshots", "wallet_snapshots"):
        for row in captured.rows(table):
            if row["source"] == "ws":
                seen.add((row["account_id"], table, row["message_id"]))
    return Counter((account, table) for account, table, _ in seen)


def trade(exchange: Exchange, collector: Collector, captured: Captured, seconds: float) -> None:
    """Runs the market by hand, a step every 50 ms, only once the collector is connected:
    the truth lists every position ever opened, so none may open before anyone listens."""
    for _ in range(round(seconds / 0.05)):
        exchange.run_sync(exchange.advance(1))
        captured.take(collector, 0.05)


def run_to_truth(exchange: Exchange, collector: Collector, captured: Captured, seconds: float):
    """Trade for `seconds`, close the market, let the last pushes arrive, then close."""
    trade(exchange, collector, captured, seconds)
    exchange.run_sync(exchange.stop_market())
    pushed = exchange.push_counts()
    expected = sum(sum(topics.values()) for topics in pushed.values())
    wait_until(
        lambda: (
            captured.add(collector.next_batches(0.05)) >= 0
            and sum(ws_messages(captured).values()) >= expected
        ),
        timeout=10,
    )
    captured.add(collector.close())
    return pushed


def test_every_push_arrives_and_the_latest_state_is_the_truth():
    with Exchange(accounts=8, seed=3, trade_rate=4.0, market=False).running_in_thread() as ex:
        collector = Collector(specs(ex), **FAST)
        assert wait_until(lambda: all_live(collector, 8), timeout=15), collector.stats()
        captured = Captured()
        pushed = run_to_truth(ex, collector, captured, seconds=3)
        truth = ex.truth()
    received = ws_messages(captured)
    for account, topics in pushed.items():
        assert received[(account, "position_snapshots")] == topics.get("position", 0), account
        assert received[(account, "wallet_snapshots")] == topics.get("wallet", 0), account
    assert differences(latest_state(captured.store()), truth, complete=True) == []
    for account in ex.accounts:
        events = captured.events(account.account_id)
        assert {"connecting", "connected", "auth_ok", "subscribed", "resynced"} <= set(events)
        assert events.index("connected") < events.index("auth_ok") < events.index("subscribed")
        assert events[-1] == "disconnected"
    rest_wallets = {
        r["account_id"] for r in captured.rows("wallet_snapshots") if r["source"] == "rest"
    }
    assert rest_wallets == {a.account_id for a in ex.accounts}, "every account resynced over REST"
    assert captured.rows("rejects") == []


def test_wss_through_a_private_ca_receives_every_push_and_resyncs_over_https(tmp_path):
    ca = private_ca(tmp_path)
    with Exchange(
        accounts=2, seed=12, trade_rate=4.0, market=False, tls=ca.server
    ).running_in_thread() as ex:
        assert ex.ws_url.startswith("wss://") and ex.rest_url.startswith("https://")
        collector = Collector(specs(ex), **FAST, ca_file=str(ca.ca_file))
        assert wait_until(lambda: all_live(collector, 2), timeout=15), collector.stats()
        captured = Captured()
        pushed = run_to_truth(ex, collector, captured, seconds=1.5)
        truth = ex.truth()
    received = ws_messages(captured)
    assert sum(received.values()) > 0
    for account, topics in pushed.items():
        assert received[(account, "position_snapshots")] == topics.get("position", 0), account
        assert received[(account, "wallet_snapshots")] == topics.get("wallet", 0), account
    assert differences(latest_state(captured.store()), truth, complete=True) == []
    rest_wallets = {
        r["account_id"] for r in captured.rows("wallet_snapshots") if r["source"] == "rest"
    }
    assert rest_wallets == {a.account_id for a in ex.accounts}, "resynced over https"


def test_wss_to_a_certificate_no_trusted_root_signed_is_refused_before_auth(tmp_path):
    ca = private_ca(tmp_path)
    with Exchange(accounts=1, seed=13, market=False, tls=ca.server).running_in_thread() as ex:
        (spec,) = specs(ex)
        collector = Collector([spec], **FAST)
        assert wait_until(
            lambda: "certificate" in (collector.stats()[0]["last_error"] or ""), timeout=10
        ), collector.stats()
        stats = collector.stats()[0]
        captured = Captured()
        captured.add(collector.close())
        counters = ex.counters()
    assert stats["state"] != "live" and stats["frames"] == 0
    assert "UnknownIssuer" in stats["last_error"], stats["last_error"]
    events = captured.events(spec["id"])
    assert "connected" not in events and "auth_ok" not in events, events
    assert not counters.get(spec["id"], {}).get("auth_ok"), "no request reached the exchange"
    assert spec["api_secret"] not in repr(stats) + repr(captured.rows("connection_events"))


def test_refused_auth_backs_off_and_says_why_without_the_secret():
    with Exchange(accounts=2, seed=4, market=False).running_in_thread() as ex:
        good, bad = specs(ex)
        bad["api_secret"] = "not-the-secret-" + "x" * 20
        collector = Collector([good, bad], **{**FAST, "backoff_cap": 30.0})
        assert wait_until(
            lambda: (
                {s["account_id"]: s["state"] for s in collector.stats()}
                == {good["id"]: "live", bad["id"]: "failing"}
            ),
            timeout=10,
        ), collector.stats()
        time.sleep(1.0)  # a hot loop would retry many times in this second
        counters = ex.counters()
        stats = {s["account_id"]: s for s in collector.stats()}
        captured = Captured()
        captured.add(collector.close())
    assert counters[bad["id"]].get("auth_failed") == 1
    assert "not authorized" in stats[bad["id"]]["last_error"].lower()
    failures = [e for e in captured.rows("connection_events") if e["event"] == "auth_failed"]
    assert [e["account_id"] for e in failures] == [bad["id"]]
    backoffs = [
        e["backoff_ms"]
        for e in captured.rows("connection_events")
        if e["account_id"] == bad["id"] and e["event"] == "backoff"
    ]
    assert backoffs and all(b >= 15_000 for b in backoffs), "refusal waits about the cap"
    everything = repr(stats) + repr(collector) + repr(captured.rows("connection_events"))
    assert bad["api_secret"] not in everything and good["api_secret"] not in everything


def test_dropped_connection_reconnects_resubscribes_and_resyncs():
    with Exchange(accounts=2, seed=5, trade_rate=5.0, market=False).running_in_thread() as ex:
        collector = Collector(specs(ex), **FAST)
        assert wait_until(lambda: all_live(collector, 2), timeout=10)
        captured = Captured()
        trade(ex, collector, captured, 1.5)
        # An account with positions, so the resync after the drop has some to read.
        target = captured.rows("position_snapshots")[0]["account_id"]
        assert ex.drop_connections(target) == 1
        assert wait_until(
            lambda: (
                captured.add(collector.next_batches(0.05)) >= 0
                and captured.events(target).count("resynced") >= 2
            ),
            timeout=10,
        ), captured.events(target)
        pushed = run_to_truth(ex, collector, captured, seconds=1)
        truth = ex.truth()
    events = captured.events(target)
    assert events.count("subscribed") == 2 and events.count("disconnected") >= 2
    rest_positions = [
        r
        for r in captured.rows("position_snapshots")
        if r["source"] == "rest" and r["account_id"] == target
    ]
    assert rest_positions, "the resync after the drop read the open positions"
    assert [s for s in collector.stats()] == []  # closed: nothing held any more
    assert pushed  # the market ran
    assert differences(latest_state(captured.store()), truth, complete=True) == []


def test_a_silent_server_is_left_for_a_new_connection():
    faults = FaultConfig(ping_silence_after=0.3)
    with Exchange(accounts=1, seed=6, market=False, faults=faults).running_in_thread() as ex:
        collector = Collector(specs(ex), **{**FAST, "ping_interval": 0.2, "pong_timeout": 0.6})
        captured = Captured()
        assert wait_until(
            lambda: (
                captured.add(collector.next_batches(0.05)) >= 0
                and captured.events().count("subscribed") >= 2
            ),
            timeout=10,
        ), captured.events()
        captured.add(collector.close())
    reasons = [
        e["reason"] for e in captured.rows("connection_events") if e["event"] == "disconnected"
    ]
    assert any("no pong" in (r or "") for r in reasons), reasons


def test_a_busy_connection_whose_pongs_come_late_is_kept():
    # Pushes keep coming while each pong waits 1.5 s, longer than pong_timeout: the pushes
    # show the connection alive (behind a backlog a pong waits in line like this).
    faults = FaultConfig(pong_delay_s=1.5)
    with Exchange(accounts=1, seed=6, market=False, faults=faults).running_in_thread() as ex:
        collector = Collector(specs(ex), **{**FAST, "ping_interval": 0.2, "pong_timeout": 0.6})
        captured = Captured()
        assert wait_until(lambda: all_live(collector, 1), timeout=10)
        trade(ex, collector, captured, 3.0)  # a market step, so pushes, every 50 ms
        captured.add(collector.close())
        delayed = ex.report()["faults"]["pong_delay"]
    assert sum(delayed.values()) >= 5, "pongs were asked for and delayed"
    assert captured.events().count("subscribed") == 1, captured.events()
    assert sum(ws_messages(captured).values()) > 0


def test_broken_and_unknown_frames_become_rejects_and_duplicates_are_kept_for_the_store():
    faults = FaultConfig(broken_frame_rate=0.2, unknown_topic_rate=0.1, duplicate_rate=0.2)
    with Exchange(
        accounts=3, seed=7, trade_rate=5.0, faults=faults, market=False
    ).running_in_thread() as ex:
        collector = Collector(specs(ex), **FAST)
        assert wait_until(lambda: all_live(collector, 3), timeout=10)
        captured = Captured()
        run_to_truth(ex, collector, captured, seconds=2)
        injected = ex.fault_counts()
        truth = ex.truth()
    rejects = captured.rows("rejects")
    broken = sum(injected["broken_frame"].values())
    unknown = sum(injected["unknown_topic"].values())
    assert broken > 0 and unknown > 0
    assert len([r for r in rejects if "unknown topic" in r["reason"]]) == unknown
    assert len([r for r in rejects if "not a valid frame" in r["reason"]]) == broken
    assert len(rejects) == broken + unknown
    ws_rows = [r for r in captured.rows("position_snapshots") if r["source"] == "ws"]
    keys = {(r["account_id"], r["message_id"], r["symbol"], r["position_idx"]) for r in ws_rows}
    repeated = len(ws_rows) - len(keys)
    assert repeated > 0, "duplicated pushes reach the store, which keeps them once"
    assert differences(latest_state(captured.store()), truth, complete=True) == []


def test_a_slow_consumer_pushes_back_without_losing_rows():
    with Exchange(accounts=4, seed=8, trade_rate=10.0, market=False).running_in_thread() as ex:
        collector = Collector(specs(ex), **{**FAST, "max_pending_rows": 20, "batch_size": 5})
        subscribed = lambda: sum(c.get("subscribed", 0) for c in ex.counters().values())  # noqa: E731
        assert wait_until(lambda: subscribed() == 4, timeout=10)
        for _ in range(40):
            ex.run_sync(ex.advance(1))
        assert wait_until(
            lambda: any(s["state"] == "paused" for s in collector.stats()), timeout=10
        ), "nobody takes batches, so the engine must stop reading"
        assert collector.undelivered_rows() < 20 + 100  # bounded: one frame past the limit
        captured = Captured()
        pushed = run_to_truth(ex, collector, captured, seconds=1)
    received = ws_messages(captured)
    for account, topics in pushed.items():
        assert received[(account, "position_snapshots")] == topics.get("position", 0)
        assert received[(account, "wallet_snapshots")] == topics.get("wallet", 0)


def test_close_hands_over_everything_decoded():
    with Exchange(accounts=3, seed=9, trade_rate=5.0, market=False).running_in_thread() as ex:
        collector = Collector(specs(ex), **{**FAST, "flush_interval": 60.0})
        assert wait_until(lambda: all_live(collector, 3), timeout=10)
        for _ in range(20):
            ex.run_sync(ex.advance(1))
            time.sleep(0.05)
        ex.run_sync(ex.stop_market())
        pushed = ex.push_counts()
        expected = sum(sum(t.values()) for t in pushed.values())
        frames = lambda: sum(s["frames"] for s in collector.stats())  # noqa: E731
        assert wait_until(lambda: frames() >= expected, timeout=10)
        captured = Captured()
        captured.add(collector.close())  # nothing was taken before: all of it comes now
    received = ws_messages(captured)
    assert sum(received.values()) == expected


def test_accounts_can_be_added_and_removed_while_running():
    with Exchange(accounts=3, seed=10, market=False).running_in_thread() as ex:
        first, second, third = specs(ex)
        collector = Collector([first, second], **FAST)
        assert wait_until(lambda: all_live(collector, 2), timeout=10)
        with pytest.raises(ValueError, match="already held"):
            collector.add_account(first)
        collector.add_account(third)
        assert wait_until(lambda: all_live(collector, 3), timeout=10)
        assert collector.remove_account(second["id"]) is True
        assert collector.remove_account(second["id"]) is False
        assert [s["account_id"] for s in collector.stats()] == [first["id"], third["id"]]
        assert wait_until(lambda: ex.connections(second["id"]) == 0, timeout=5)
        collector.close()
        with pytest.raises(RuntimeError, match="closed"):
            collector.add_account(second)


def test_bad_account_mappings_are_refused_without_echoing_values():
    with pytest.raises(ValueError, match="api_secret is required"):
        Collector([{"id": "a", "ws_url": "ws://127.0.0.1:1/v5/private", "api_key": "k"}])
    with pytest.raises(TypeError, match="api_secret must be a string"):
        Collector(
            [
                {
                    "id": "a",
                    "ws_url": "ws://127.0.0.1:1/v5/private",
                    "api_key": "k",
                    "api_secret": 12345678,
                }
            ]
        )


def test_a_thousand_accounts_in_one_collector_receive_every_push():
    with Exchange(accounts=1000, seed=11, trade_rate=0.3, tick=0.1, market=False).running_in_thread(
        timeout=60
    ) as ex:
        collector = Collector(specs(ex), **{**FAST, "ping_interval": 5.0, "pong_timeout": 10.0})
        captured = Captured()
        assert wait_until(
            lambda: captured.add(collector.next_batches(0.05)) >= 0 and all_live(collector, 1000),
            timeout=60,
        ), Counter(s["state"] for s in collector.stats())
        pushed = run_to_truth(ex, collector, captured, seconds=3)
        truth = ex.truth()
    received = ws_messages(captured)
    sent = Counter()
    for account, topics in pushed.items():
        sent[(account, "position_snapshots")] = topics.get("position", 0)
        sent[(account, "wallet_snapshots")] = topics.get("wallet", 0)
    assert sum(sent.values()) > 1000
    assert +received == +sent
    assert differences(latest_state(captured.store()), truth, complete=True) == []


def test_a_hedge_side_closed_while_the_other_stays_open_is_seen_flat_after_a_drop():
    """Bybit's listing shows open sides only: after a drop, a side known open but absent from
    a listing that shows its symbol (the other side is open) must be read by symbol."""
    from decimal import Decimal

    from ingestor.sim.market import BY_SYMBOL

    with Exchange(accounts=8, seed=5, trade_rate=5.0, market=False).running_in_thread() as ex:
        hedged = next(a for a in ex.accounts if a.hedge)
        eth = BY_SYMBOL["ETHUSDT"]

        def hold(idx: int, side: str, size: str) -> None:
            pos = hedged.position(eth, idx, 1_700_000_000_000)
            pos.side, pos.size, pos.entry = side, Decimal(size), Decimal("3000")
            pos.ever_open = True
            pos.updated_ms += 1

        # Both sides open before anyone connects: the first resync lists both.
        ex._on_loop(lambda: (hold(1, "Buy", "1"), hold(2, "Sell", "2")))
        collector = Collector(specs(ex, [hedged]), **FAST)
        captured = Captured()
        assert wait_until(
            lambda: (
                captured.add(collector.next_batches(0.05)) >= 0
                and captured.events(hedged.account_id).count("resynced") >= 1
            ),
            timeout=10,
        )
        # The Buy side closes while nothing could push it: the next resync must see it.
        ex._on_loop(lambda: (hold(1, "", "0"), ex.drop_connections(hedged.account_id)))
        assert wait_until(
            lambda: (
                captured.add(collector.next_batches(0.05)) >= 0
                and captured.events(hedged.account_id).count("resynced") >= 2
            ),
            timeout=10,
        ), captured.events(hedged.account_id)
        captured.add(collector.close())
    positions, _ = latest_state(captured.store())
    assert positions[(hedged.account_id, "linear", "ETHUSDT", 1)][:2] == ("", 0)
    assert positions[(hedged.account_id, "linear", "ETHUSDT", 2)][:2] == ("Sell", 2)
