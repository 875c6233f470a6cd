"""The accounts file the simulator writes for the ingestor (`--write-accounts`).

Secrets go into an env file beside it (mode 0600) and the YAML refers to them as
`${SIM_0001_API_KEY}`, the way real accounts should be configured; `inline=True` writes them
into the YAML itself, which is acceptable only because these keys open nothing real. The
config format proper belongs to the ingestor's config module: this one function follows it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from ingestor import config
from ingestor.sim.market import Account

HEADER = "# written by ingestor.sim: simulated accounts, keys valid only against this run\n"
#: What a simulated account subscribes to: its state and its whole ledger.
TOPICS = ("position", "wallet", "execution", "order")


def default_topics() -> tuple[str, ...]:
    """`TOPICS`, less any the ingestor's config does not take yet: a file the service cannot
    load would stop it (the config learns the ledger topics in its own change)."""
    return tuple(t for t in TOPICS if t in config.TOPICS)


def env_name(account_id: str, what: str) -> str:
    """`sim-0001`, `API_KEY` → `SIM_0001_API_KEY`."""
    return f"{account_id.upper().replace('-', '_')}_{what}"


def write_accounts_file(
    path: Path,
    accounts: Iterable[Account],
    *,
    ws_url: str,
    rest_url: str,
    inline: bool = False,
    sink_path: str = "capture.duckdb",
    topics: tuple[str, ...] | None = None,
) -> Path | None:
    """Write the YAML (and, unless `inline`, its env file); return the env file's path.

    topics: what every account subscribes to (default: `default_topics()`).
    """
    topics = default_topics() if topics is None else topics
    entries: list[dict[str, Any]] = []
    env_lines: list[str] = []
    for account in accounts:
        if inline:
            key, secret = account.api_key, account.api_secret
        else:
            key_var = env_name(account.account_id, "API_KEY")
            secret_var = env_name(account.account_id, "API_SECRET")
            key, secret = f"${{{key_var}}}", f"${{{secret_var}}}"
            env_lines += [f"{key_var}={account.api_key}", f"{secret_var}={account.api_secret}"]
        entries.append(
            {
                "id": account.account_id,
                "environment": "sim",
                "ws_url": ws_url,
                "rest_url": rest_url,
                "api_key": key,
                "api_secret": secret,
                "topics": list(topics),
            }
        )
    document = {"sink": {"kind": "duckdb", "path": sink_path}, "accounts": entries}
    path.write_text(HEADER + yaml.safe_dump(document, sort_keys=False, width=120))
    if inline:
        return None
    env_path = path.with_suffix(".env")
    fd = os.open(env_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as env_file:
        env_file.write("# secrets of the simulated accounts in " + path.name + "\n")
        env_file.write("\n".join(env_lines) + "\n")
    os.chmod(env_path, 0o600)
    return env_path
