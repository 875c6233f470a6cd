"""`python -m ingestor.sim` as a process: banner, accounts file, signals, grace, truth."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import yaml

from ingestor.config import TOPICS as CONFIG_TOPICS
from tests.tls_helpers import private_ca

ROOT = Path(__file__).resolve().parents[2]


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ingestor.sim", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def banner(process: subprocess.Popen[str]) -> dict[str, object]:
    assert process.stdout is not None
    return json.loads(process.stdout.readline())


def test_duration_run_writes_accounts_env_and_truth(tmp_path: Path) -> None:
    truth_path, accounts_path = tmp_path / "truth.json", tmp_path / "accounts.yaml"
    process = start(
        "--accounts", "3", "--seed", "1", "--port", "0", "--duration", "0.3", "--grace", "0.2",
        "--truth", str(truth_path), "--write-accounts", str(accounts_path),
        "--drop-per-push", "0.5", "--fault-accounts", "sim-0002",
    )  # fmt: skip
    info = banner(process)
    assert str(info["ws_url"]).startswith("ws://127.0.0.1:")
    assert str(info["ws_url"]).endswith("/v5/private")
    assert process.wait(timeout=30) == 0
    config = yaml.safe_load(accounts_path.read_text())
    assert accounts_path.read_text().startswith("# written by ingestor.sim")
    first = config["accounts"][0]
    assert first["id"] == "sim-0001" and first["ws_url"] == info["ws_url"]
    assert first["rest_url"] == info["rest_url"]
    # The state and the ledger, as far as the ingestor's config takes them.
    assert first["topics"] == [t for t in ("position", "wallet", "execution", "order")
                               if t in CONFIG_TOPICS]  # fmt: skip
    assert first["topics"][:2] == ["position", "wallet"]
    assert first["api_key"] == "${SIM_0001_API_KEY}"
    assert first["api_secret"] == "${SIM_0001_API_SECRET}"
    env_path = tmp_path / "accounts.env"
    assert stat.S_IMODE(os.stat(env_path).st_mode) == 0o600
    env = dict(line.split("=", 1) for line in env_path.read_text().splitlines() if "=" in line)
    assert set(env) == {f"SIM_000{i}_API_{w}" for i in (1, 2, 3) for w in ("KEY", "SECRET")}
    assert env["SIM_0001_API_SECRET"] not in accounts_path.read_text()
    report = json.loads(truth_path.read_text())
    assert report["run"] == {"seed": 1, "accounts": 3, "steps": 6}
    assert {"positions", "wallets", "executions", "orders", "faults", "pushes", "counters"} <= set(
        report
    )
    assert len(report["wallets"]) == 6


def test_tls_flags_serve_wss_and_https_and_go_together(tmp_path: Path) -> None:
    ca = private_ca(tmp_path)
    process = start("--accounts", "1", "--duration", "0.3", "--grace", "0",
                    "--tls-cert", str(ca.cert_file), "--tls-key", str(ca.key_file))  # fmt: skip
    info = banner(process)
    assert str(info["ws_url"]).startswith("wss://127.0.0.1:")
    assert str(info["rest_url"]).startswith("https://127.0.0.1:")
    assert process.wait(timeout=30) == 0
    alone = start("--tls-cert", str(ca.cert_file))
    assert alone.wait(timeout=30) != 0
    assert "--tls-cert and --tls-key go together" in alone.communicate()[1]


def test_same_seed_gives_same_truth_across_processes(tmp_path: Path) -> None:
    truths = []
    for n in range(2):
        path = tmp_path / f"truth{n}.json"
        process = start("--accounts", "4", "--seed", "7", "--duration", "0.3", "--grace", "0",
                        "--truth", str(path))  # fmt: skip
        assert process.wait(timeout=30) == 0
        report = json.loads(path.read_text())
        truths.append({k: report[k] for k in ("positions", "wallets")})
    assert truths[0] == truths[1] and truths[0]["positions"]


def test_sigterm_closes_market_keeps_serving_grace_then_exits_zero(tmp_path: Path) -> None:
    truth_path, accounts_path = tmp_path / "truth.json", tmp_path / "a.yaml"
    process = start("--accounts", "2", "--grace", "0.2", "--truth", str(truth_path),
                    "--write-accounts", str(accounts_path), "--inline-secrets")  # fmt: skip
    banner(process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert json.loads(truth_path.read_text())["run"]["accounts"] == 2
    config = yaml.safe_load(accounts_path.read_text())
    assert not config["accounts"][0]["api_secret"].startswith("${")
    assert not (tmp_path / "a.env").exists()
