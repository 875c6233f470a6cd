"""`python -m ingestor check`: WebSocket auth and `/v5/user/query-api` against the simulator
over real sockets, verdicts per key, timeouts, exit codes, and no secret in any output."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from ingestor import check, config
from ingestor.check import PASS, REFUSED, SKIPPED, WARNING
from ingestor.sim.exchange import Exchange
from ingestor.sim.faults import FaultConfig
from tests.tls_helpers import private_ca

# sim-0001 read-only, sim-0002 trade, sim-0003 withdraw, sim-0004 auth always refused,
# sim-0005 every REST request fails.
PERMISSIONS = {
    "sim-0001": "read",
    "sim-0002": "trade",
    "sim-0003": "withdraw",
    "sim-0004": "read",
    "sim-0005": "read",
}
FAULTS = [
    FaultConfig(accounts=frozenset({"sim-0004"}), refuse_auth=1.0),
    FaultConfig(accounts=frozenset({"sim-0005"}), rest_error_rate=1.0),
]


@pytest.fixture(scope="module")
def exchange() -> Iterator[Exchange]:
    ex = Exchange(accounts=5, seed=21, market=False, permissions=PERMISSIONS, faults=FAULTS)
    with ex.running_in_thread() as running:
        yield running


def env_of(ex: Exchange) -> dict[str, str]:
    env = {}
    for a in ex.accounts:
        name = a.account_id.upper().replace("-", "_")
        env[f"{name}_KEY"], env[f"{name}_SECRET"] = a.api_key, a.api_secret
    return env


def secrets_of(ex: Exchange) -> list[str]:
    return [s for a in ex.accounts for s in (a.api_key, a.api_secret)]


def accounts_yaml(ex: Exchange, ids: list[str], extra: str = "") -> str:
    entries = "".join(
        f"""
          - id: {account_id}
            ws_url: {ex.ws_url}
            rest_url: {ex.rest_url}
            api_key: ${{{account_id.upper().replace("-", "_")}_KEY}}
            api_secret: ${{{account_id.upper().replace("-", "_")}_SECRET}}
        """
        for account_id in ids
    )
    return textwrap.dedent(extra) + "accounts:" + textwrap.dedent(entries)


def load(tmp_path: Path, text: str, env: dict[str, str]) -> config.Settings:
    path = tmp_path / "accounts.yaml"
    path.write_text(text)
    return config.load(path, env=env)


def run(settings: config.Settings, **kwargs) -> dict[str, check.AccountCheck]:
    checks = asyncio.run(check.check_accounts(settings, **kwargs))
    assert [c.account_id for c in checks] == [a.id for a in settings.accounts]
    return {c.account_id: c for c in checks}


def assert_no_secret(texts: list[str], secrets: list[str]) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text


def test_read_only_key_passes_and_over_privileged_keys_are_refused(exchange, tmp_path):
    ids = ["sim-0001", "sim-0002", "sim-0003"]
    checks = run(load(tmp_path, accounts_yaml(exchange, ids), env_of(exchange)))
    ok = checks["sim-0001"]
    assert (ok.verdict, ok.read_only, ok.ok) == (PASS, True, True)
    assert ok.reason.startswith("authenticated; read-only key")
    trade, withdraw = checks["sim-0002"], checks["sim-0003"]
    assert (trade.verdict, trade.read_only, trade.ok) == (REFUSED, False, False)
    assert "key can trade (" in trade.reason and "allow_trading_keys: true" in trade.reason
    assert withdraw.verdict == REFUSED and "can trade and withdraw" in withdraw.reason
    assert "Withdraw" in withdraw.permissions["Wallet"]
    assert_no_secret([c.reason for c in checks.values()], secrets_of(exchange))


def test_allow_trading_keys_turns_the_refusal_into_a_warning(exchange, tmp_path):
    text = accounts_yaml(exchange, ["sim-0002", "sim-0003"], "allow_trading_keys: true\n")
    settings = load(tmp_path, text, env_of(exchange))
    assert settings.allow_trading_keys is True
    checks = run(settings)
    assert [c.verdict for c in checks.values()] == [WARNING, WARNING]
    assert all(c.ok and "allowed by allow_trading_keys" in c.reason for c in checks.values())


def test_wrong_secret_and_refused_auth_fail_with_bybits_message(exchange, tmp_path):
    env = env_of(exchange)
    wrong = "not-the-secret-0123456789abcdef"
    env["SIM_0001_SECRET"] = wrong
    checks = run(load(tmp_path, accounts_yaml(exchange, ["sim-0001", "sim-0004"]), env))
    for account_id in ("sim-0001", "sim-0004"):
        assert checks[account_id].verdict == REFUSED
        assert checks[account_id].reason == "auth failed: Request not authorized"
    assert exchange.fault_counts()["refuse_auth"]["sim-0004"] >= 1
    assert_no_secret([c.reason for c in checks.values()], [*secrets_of(exchange), wrong])


def test_rest_errors_are_refused_and_scrubbed_of_the_key(exchange):
    checks = run(config.Settings(accounts=(account_of(exchange, "sim-0005"),)))
    assert checks["sim-0005"].verdict == REFUSED
    assert checks["sim-0005"].reason.startswith("query-api refused: retCode 10016")

    # A wrong secret over REST: Bybit's 10004 answer echoes the API key in its origin string.
    bad = account_of(exchange, "sim-0001", secret="wrong-secret")

    async def query() -> str:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(check.CheckFailed) as failed:
                await check.query_api_key_info(session, bad)
        return str(failed.value)

    reason = asyncio.run(query())
    assert reason.startswith("query-api refused: retCode 10004: error sign!")
    assert "***" in reason
    assert_no_secret([reason], secrets_of(exchange))


def account_of(ex: Exchange, account_id: str, *, secret: str | None = None, **urls):
    sim = next(a for a in ex.accounts if a.account_id == account_id)
    return config.Account(
        id=account_id,
        environment="url",
        ws_url=urls.get("ws_url", ex.ws_url),
        rest_url=urls.get("rest_url", ex.rest_url),
        api_key=config.Secret(sim.api_key),
        api_secret=config.Secret(secret or sim.api_secret),
    )


def test_unreachable_and_silent_endpoints_fail_within_the_timeout(exchange):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    # Listens (the kernel completes the TCP handshake) but never answers the upgrade.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    silent_port = silent.getsockname()[1]
    try:
        settings = config.Settings(
            accounts=(
                account_of(exchange, "sim-0001"),
                account_of(exchange, "sim-0002", ws_url=f"ws://127.0.0.1:{closed_port}/v5/private"),
                account_of(exchange, "sim-0003", ws_url=f"ws://127.0.0.1:{silent_port}/v5/private"),
            )
        )
        checks = run(settings, timeout=0.5)
    finally:
        silent.close()
    assert checks["sim-0001"].verdict == PASS  # the dead ones hold nobody up
    assert checks["sim-0002"].verdict == REFUSED
    assert checks["sim-0002"].reason.startswith("WebSocket connect failed:")
    assert checks["sim-0003"].verdict == REFUSED
    assert checks["sim-0003"].reason == "WebSocket auth: no answer within 0.5 s"


def test_wss_and_https_are_checked_against_the_engine_ca_file(tmp_path):
    ca = private_ca(tmp_path)
    with Exchange(accounts=1, seed=22, market=False, tls=ca.server).running_in_thread() as ex:
        text = accounts_yaml(ex, ["sim-0001"])
        trusted = run(
            load(tmp_path, f"engine: {{ca_file: {ca.ca_file.name}}}\n" + text, env_of(ex))
        )
        untrusted = run(load(tmp_path, text, env_of(ex)))
    assert trusted["sim-0001"].verdict == PASS, trusted
    assert untrusted["sim-0001"].verdict == REFUSED
    assert "certificate verify failed" in untrusted["sim-0001"].reason
    assert_no_secret([untrusted["sim-0001"].reason], secrets_of(ex))


def test_simulated_accounts_without_url_are_skipped_and_do_not_fail(tmp_path, capsys):
    path = tmp_path / "accounts.yaml"
    path.write_text("accounts:\n  - id: demo-1\n    environment: sim\n")
    assert check.run_check(["--accounts", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split(None, 2) == ["demo-1", SKIPPED, check.SIM_SKIP_REASON]
    assert out[-1] == "1 accounts: 0 passed, 0 with warnings, 0 refused, 1 skipped"


def test_allow_trading_keys_must_be_a_boolean(tmp_path, capsys):
    path = tmp_path / "accounts.yaml"
    path.write_text("allow_trading_keys: yes please\naccounts:\n  - id: a\n    environment: sim\n")
    assert check.run_check(["--accounts", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}:1: allow_trading_keys: expected true or false")


DAY_MS = 86_400_000
NOW_MS = 1_750_000_000_000


def info(read_only: int = 1, expired_at: str = "", deadline_day: int = 0) -> dict:
    return {
        "readOnly": read_only,
        "permissions": {"ContractTrade": ["Order", "Position"], "Wallet": ["AccountTransfer"]},
        "expiredAt": expired_at,
        "deadlineDay": deadline_day,
    }


def iso_in(days: float) -> str:
    when = datetime.fromtimestamp(NOW_MS / 1000, UTC) + timedelta(days=days)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("answer", "verdict", "reason"),
    [
        (info(expired_at=iso_in(3)), WARNING, "key expires in 3.0 days"),
        (info(expired_at=iso_in(30)), PASS, "authenticated; read-only key, expires in 30 days"),
        (info(expired_at=iso_in(-1)), REFUSED, "key has expired"),
        (info(deadline_day=5), WARNING, "key expires in 5.0 days"),
        (info(), PASS, "authenticated; read-only key, no expiry"),
        ({"permissions": {}}, REFUSED, "query-api: unexpected readOnly None"),
    ],
)
def test_judge_expiry_and_answer_shape(answer, verdict, reason):
    result = check.judge("a", answer, allow_trading_keys=False, warn_days=14, now_ms=NOW_MS)
    assert (result.verdict, result.reason) == (verdict, reason)


def test_judge_warns_twice_for_an_allowed_trading_key_near_expiry():
    answer = info(read_only=0, expired_at=iso_in(2))
    result = check.judge("a", answer, allow_trading_keys=True, now_ms=NOW_MS)
    assert result.verdict == WARNING
    assert result.reason == (
        "key can trade (readOnly=0), allowed by allow_trading_keys; key expires in 2.0 days"
    )


# ---- the command as a real process, on the simulator CLI's accounts file -------------------


@pytest.fixture(scope="module")
def sim_cli(tmp_path_factory) -> Iterator[tuple[Path, dict[str, str]]]:
    folder = tmp_path_factory.mktemp("sim-cli")
    accounts = folder / "accounts.yaml"
    sim = subprocess.Popen(
        [sys.executable, "-m", "ingestor.sim", "--accounts", "5", "--seed", "4", "--port", "0",
         "--grace", "0", "--write-accounts", str(accounts)],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        first = sim.stdout.readline()
        assert first, sim.stderr.read()
        json.loads(first)
        env = {}
        for line in accounts.with_suffix(".env").read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                name, value = line.split("=", 1)
                env[name] = value
        yield accounts, env
    finally:
        sim.send_signal(signal.SIGINT)
        try:
            sim.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.communicate()


def run_cli(accounts: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ingestor", "check", "--accounts", str(accounts)],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_cli_on_the_simulator_accounts_file(sim_cli):
    accounts, env = sim_cli
    secrets = list(env.values())
    # The simulator's default mix: sim-0005 holds a trading key, the others read-only keys.
    refused = run_cli(accounts, env)
    assert refused.returncode == 1, refused.stderr
    lines = refused.stdout.splitlines()
    verdicts = dict(line.split(None, 2)[:2] for line in lines[:-1])
    assert verdicts == {
        "sim-0001": PASS, "sim-0002": PASS, "sim-0003": PASS, "sim-0004": PASS,
        "sim-0005": REFUSED,
    }  # fmt: skip
    assert lines[-1] == "5 accounts: 4 passed, 0 with warnings, 1 refused, 0 skipped"

    allowed_file = accounts.with_name("allowed.yaml")
    allowed_file.write_text(accounts.read_text() + "allow_trading_keys: true\n")
    allowed = run_cli(allowed_file, env)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert allowed.stdout.splitlines()[-1].startswith("5 accounts: 4 passed, 1 with warnings")

    wrong = run_cli(accounts, {**env, "SIM_0002_API_SECRET": "x" * 36})
    assert wrong.returncode == 1
    assert "sim-0002  refused  auth failed: Request not authorized" in wrong.stdout

    missing = run_cli(accounts, {k: v for k, v in env.items() if k != "SIM_0003_API_KEY"})
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.startswith(f"error: {accounts}:")
    assert "accounts[2].api_key: environment variable SIM_0003_API_KEY is not set" in (
        missing.stderr
    )
    for result in (refused, allowed, wrong, missing):
        assert_no_secret([result.stdout, result.stderr], secrets)
