"""`--metrics-port` end to end: the simulator and `python -m ingestor` as real processes,
/metrics, /healthz and /readyz scraped over real sockets while the service captures, and the
start check keeping refused keys out while the other accounts are captured."""

from __future__ import annotations

import signal
import socket
import time
import urllib.error
import urllib.request

import pyarrow as pa
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ingestor.config import Account, Secret, Settings
from ingestor.service import meter
from ingestor.service.metrics import Telemetry, _ServiceCollector
from tests.engine_helpers import wait_until
from tests.service_helpers import start_sim

#: Series every captured account has, from its first stats on.
PER_ACCOUNT = (
    "ingestor_account_live",
    "ingestor_account_ready",
    "ingestor_frames_total",
    "ingestor_rows_decoded_total",
    "ingestor_rejects_total",
    "ingestor_reconnects_total",
    "ingestor_resyncs_total",
    "ingestor_last_message_age_seconds",
    "ingestor_open_gaps",
    "ingestor_gaps_total",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str) -> tuple[int, str]:
    """(status, body) of a GET; (0, "") while nothing listens yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (ConnectionError, urllib.error.URLError):
        return 0, ""


class Scrape:
    """One /metrics answer: samples by name, each {labels: value}."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[str, dict[tuple, float]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = tuple(sorted(sample.labels.items()))
                self.samples.setdefault(sample.name, {})[labels] = sample.value

    def of(self, name: str, **labels: str) -> float | None:
        return self.samples.get(name, {}).get(tuple(sorted(labels.items())))

    def total(self, name: str, **labels: str) -> float:
        wanted = set(labels.items())
        return sum(v for key, v in self.samples.get(name, {}).items() if wanted <= set(key))

    def accounts(self, name: str) -> set[str]:
        return {dict(key)["account"] for key in self.samples.get(name, {})}


def scrape(port: int) -> Scrape:
    status, body = get(port, "/metrics")
    assert status == 200, body
    return Scrape(body)


def assert_no_secret(texts: list[str], secrets: list[str]) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text


def test_metrics_during_a_capture_with_dropped_connections(tmp_path, stop_at_end):
    run = start_sim(tmp_path, accounts=4, seed=31, duration=60, faults=("--drop-per-s", "0.5"))
    stop_at_end.append(run)
    port = free_port()
    run.start_service("--metrics-port", str(port), "--duration", "90")
    ids = [f"sim-000{i}" for i in range(1, 5)]
    texts: list[str] = []

    assert wait_until(lambda: get(port, "/healthz") == (200, "ok\n"), timeout=30)
    answers: list[tuple[int, str]] = []
    assert wait_until(lambda: answers.append(get(port, "/readyz")) or answers[-1][0] == 200, 30)
    texts += [body for _, body in answers]
    assert answers[-1][1].startswith("ready: 4 live, 0 explained")
    # Until then (if the scrape came early enough) it said why not.
    assert all(body.startswith("not ready: ") for status, body in answers if status == 503)
    assert {status for status, _ in answers} <= {0, 200, 503}

    first = scrape(port)
    texts.append(first.text)
    for name in PER_ACCOUNT:
        assert first.accounts(name) == set(ids), name
    assert first.of("ingestor_ready") == 1.0

    # Rows reach the store, pushes are measured, and the drops show as reconnects and gaps.
    def grown() -> bool:
        now = scrape(port)
        texts.append(now.text)
        return (
            now.total("ingestor_rows_written_total") > first.total("ingestor_rows_written_total")
            and now.total("ingestor_reconnects_total") > first.total("ingestor_reconnects_total")
            and now.total("ingestor_gaps_total") > 0
            and now.accounts("ingestor_exchange_lag_seconds_count") == set(ids)
        )

    assert wait_until(grown, timeout=40, every=0.5)
    last = Scrape(texts[-1])
    for account in ids:
        written = last.of(
            "ingestor_rows_written_total", account=account, table="position_snapshots"
        )
        assert written and written > 0
        count = last.of(
            "ingestor_exchange_lag_seconds_count", account=account, table="position_snapshots"
        )
        inf = last.of(
            "ingestor_exchange_lag_seconds_bucket",
            account=account,
            table="position_snapshots",
            le="+Inf",
        )
        assert count and count > 0 and inf == count
        assert (
            last.of("ingestor_last_push_age_seconds", account=account, table="position_snapshots")
            is not None
        )
        assert last.of("ingestor_open_gaps", account=account) in (0.0, 1.0)
    assert last.of("ingestor_flush_duration_seconds_count") > 0
    assert last.of("ingestor_commit_delay_seconds_count") > 0
    assert last.of("ingestor_rows_committed_total") > 0
    assert last.total("ingestor_accounts") == 4
    assert get(port, "/nope")[0] == 404

    run.service.send_signal(signal.SIGINT)
    assert run.wait_service() == 0, run.outputs[-1]
    truth = run.finish_sim()
    assert sum(truth["faults"]["drop"].values()) > 0
    assert_no_secret(texts + run.outputs, run.secrets)


def test_the_start_check_keeps_refused_keys_out_and_readyz_explains_them(tmp_path, stop_at_end):
    # The simulator's sim-0005 holds a trading key; sim-0002 gets a wrong secret; sim-0003's
    # REST endpoint never answers, so its check is inconclusive and it is captured anyway.
    run = start_sim(tmp_path, accounts=6, seed=32, duration=60)
    stop_at_end.append(run)
    wrong = "wrong-secret-" + "x" * 24
    run.env["SIM_0002_API_SECRET"] = wrong
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    text = run.accounts.read_text()
    rest_url = text.split("rest_url: ", 1)[1].split("\n", 1)[0]
    head, tail = text.split("- id: sim-0003", 1)
    tail = tail.replace(rest_url, f"http://127.0.0.1:{silent.getsockname()[1]}", 1)
    run.accounts.write_text(head + "- id: sim-0003" + tail)
    port = free_port()
    try:
        run.start_service("--metrics-port", str(port), "--duration", "90", check=True)
        ids = [f"sim-000{i}" for i in range(1, 7)]
        assert wait_until(lambda: get(port, "/healthz")[0] == 200, timeout=30)
        # The silent endpoint holds the check for its whole timeout: not ready, and why.
        assert get(port, "/readyz") == (503, "not ready: the start check is running\n")
        answers: list[tuple[int, str]] = []
        assert wait_until(
            lambda: answers.append(get(port, "/readyz")) or answers[-1][0] == 200, timeout=40
        ), answers[-1]
        ready = answers[-1][1]
        lines = ready.splitlines()
        assert lines[0] == "ready: 4 live, 2 explained"
        explained = dict(line.split(" ", 1) for line in lines[1:])
        assert explained["sim-0002"].startswith(
            "refused at start: query-api refused: retCode 10004: error sign!"
        )
        assert explained["sim-0005"].startswith("refused at start: key can trade (readOnly=0)")
        metrics = scrape(port)
        assert metrics.of("ingestor_accounts", state="refused") == 2
        assert metrics.of("ingestor_accounts", state="live") == 4
        for account in ids:
            refused = account in ("sim-0002", "sim-0005")
            assert metrics.of("ingestor_account_live", account=account) == (0.0 if refused else 1.0)
            assert metrics.of("ingestor_account_ready", account=account) == 1.0
            assert (metrics.of("ingestor_frames_total", account=account) is None) == refused
        run.service.send_signal(signal.SIGINT)
        assert run.wait_service() == 0, run.outputs[-1]
    finally:
        silent.close()
    log = run.outputs[-1]
    assert "account sim-0002 not captured: start check refused it: query-api refused" in log
    assert "account sim-0005 not captured: start check refused it: key can trade" in log
    assert "account sim-0003: start check inconclusive (query-api: no answer within" in log
    assert "start check: 3 passed, 0 with warnings, 2 refused (not captured), 1 inconclusive" in log
    captured = {a for (a,) in run.query("SELECT DISTINCT account_id FROM connection_events")}
    assert captured == {"sim-0001", "sim-0003", "sim-0004", "sim-0006"}
    run.finish_sim()
    assert_no_secret([*answers_text(answers), metrics.text, *run.outputs], [*run.secrets, wrong])


def answers_text(answers: list[tuple[int, str]]) -> list[str]:
    return [body for _, body in answers]


def _pushes(rows: list[tuple[str, str, str | None, int, int | None]]) -> pa.RecordBatch:
    account, source, message, local_ms, created_ms = zip(*rows, strict=True)
    ts = pa.timestamp("us", tz="UTC")
    return pa.record_batch(
        {
            "account_id": pa.array(account),
            "source": pa.array(source),
            "message_id": pa.array(message, pa.string()),
            "local_ts": pa.array([m * 1000 for m in local_ms], ts),
            "creation_ts": pa.array([None if m is None else m * 1000 for m in created_ms], ts),
        }
    )


def test_the_meter_counts_each_push_once_and_follows_gaps_like_the_gaps_view():
    m = meter.Meter()
    m.batch(
        "position_snapshots",
        _pushes([
            ("a", "ws", "m1", 1_000_003, 1_000_000),  # a push of two elements: one lag, 3 ms
            ("a", "ws", "m1", 1_000_003, 1_000_000),
            ("a", "ws", "m2", 1_000_400, 1_000_000),  # 400 ms
            ("a", "rest", None, 1_000_500, None),  # a resync: no push, no lag
            ("b", "ws", "m1", 1_020_000, 1_000_000),  # another account, same id: 20 s
        ]),
    )  # fmt: skip
    events = pa.record_batch(
        {
            "account_id": ["a", "a", "b", "a", "a", "a"],
            "event": ["disconnected", "subscribed", "disconnected", "disconnected",
                      "disconnected", "subscribed"],
        }
    )  # fmt: skip
    m.batch("connection_events", events.slice(0, 4))
    got = m.take(force=True)
    assert got.rows == {}, "rows count once their flush is done"
    m.flushed(0.02, committed=8)
    flushed = m.take(force=True)
    assert flushed.rows == {
        ("a", "position_snapshots"): 4,
        ("b", "position_snapshots"): 1,
        ("a", "connection_events"): 3,
        ("b", "connection_events"): 1,
    }
    a, b = got.lag[("a", "position_snapshots")], got.lag[("b", "position_snapshots")]
    assert a.counts[meter.LAG_BUCKETS.index(0.005)] == 1
    assert a.counts[meter.LAG_BUCKETS.index(0.5)] == 1
    assert sum(a.counts) == 2 and a.total == pytest.approx(0.403)
    assert b.counts[-1] == 1 and sum(b.counts) == 1, "20 s is past the last bound"
    assert got.last_arrival_us[("a", "position_snapshots")] == 1_000_400_000
    # A disconnect before any subscription opens no gap; after one it does.
    assert got.gaps == {"a": 1} and got.gap_open == {"a": True}
    assert flushed.flush.counts[meter.FLUSH_BUCKETS.index(0.025)] == 1
    assert flushed.committed == 8 and flushed.lag == {}
    # Each push's creation→commit delay counts once, at the commit (these were created in 1970).
    assert sum(got.commit_delay.counts) == 0
    assert flushed.commit_delay.counts[-1] == sum(flushed.commit_delay.counts) == 3
    m.batch("connection_events", events.slice(4))
    closed = m.take(force=True)
    assert closed.gaps == {} and closed.gap_open == {"a": False}
    totals = meter.Totals()
    for readings in (got, flushed, closed):
        totals.add(readings)
    assert totals.gaps == {"a": 1} and totals.gap_open == {"a": False}
    assert sum(totals.rows.values()) == 9 and totals.flushes == 1
    assert m.take() is None, "at most once a second unless forced"


def test_spooled_pushes_count_their_commit_delay_when_the_spool_is_committed():
    m = meter.Meter()
    now_ms = round(time.time() * 1000)
    m.batch("wallet_snapshots", _pushes([("a", "ws", "m1", now_ms, now_ms - 300)]))
    m.flushed(0.01, committed=0)  # a reader held the file: spooled
    assert sum(m.take(force=True).commit_delay.counts) == 0
    m.flushed(0.01, committed=1)  # the spool drained
    delay = m.take(force=True).commit_delay
    assert sum(delay.counts) == 1 and 0.3 <= delay.total < 10


def test_counters_survive_a_collector_restart_and_readyz_scrubs_the_key():
    key, secret = "KEY1234567890", "SECRET1234567890"
    accounts = tuple(
        Account(i, "url", "ws://x", "http://x", Secret(key), Secret(secret)) for i in ("a", "b")
    )
    telemetry = Telemetry(Settings(accounts=accounts))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ServiceCollector(telemetry))

    def stats(account: str, state: str, n: int, error: str | None = None) -> dict:
        counters = dict.fromkeys(("frames", "rows", "rejects", "reconnects", "resyncs"), n)
        return {"account_id": account, "state": state, "last_message_us": None,
                "last_error": error, **counters}  # fmt: skip

    telemetry.phase("capturing")
    telemetry.collector(0, [stats("a", "live", 5)], 0, 0)
    telemetry.collector(1, [stats("b", "backoff", 2, f"10004 origin {key}")], 0, 0)
    readiness = telemetry.readiness()
    assert not readiness.ready and readiness.waiting == {"b": "backoff: 10004 origin ***"}
    telemetry.restarted(0)
    assert Scrape(generate_latest(registry).decode()).of("ingestor_frames_total", account="a") == 5
    telemetry.collector(0, [stats("a", "live", 1)], 0, 0)
    telemetry.collector(1, [stats("b", "failing", 2, "auth failed: Request not authorized")], 0, 0)
    text = generate_latest(registry).decode()
    scraped = Scrape(text)
    assert scraped.of("ingestor_frames_total", account="a") == 6, "5 before the restart, 1 after"
    assert scraped.of("ingestor_collector_restarts_total") == 1
    assert scraped.of("ingestor_ready") == 1.0
    assert telemetry.readiness().body() == (
        "ready: 1 live, 1 explained\n"
        "b refused by the exchange: auth failed: Request not authorized\n"
    )
    assert_no_secret([text, readiness.body()], [key, secret])
