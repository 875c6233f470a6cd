"""`environment: sim` accounts without URLs: the service starts the built-in exchange
(`python -m ingestor.sim`, a process of its own) and captures from it.

The simulator issues the accounts' keys; they reach the service through the accounts file
and mode-0600 env file it writes into a private temporary folder, never through a command
line. When the service is done, the simulator is stopped and writes its truth file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from ingestor import config

log = logging.getLogger("ingestor.simulator")

SIM_ID = re.compile(r"^sim-(\d{4,})$")
START_TIMEOUT_S = 30.0


def _env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            name, value = line.split("=", 1)
            values[name.strip()] = value.strip()
    return values


@contextmanager
def simulated(settings: config.Settings) -> Iterator[config.Settings]:
    """Yields `settings` with every simulated account pointed at a running simulator."""
    wanted = [a for a in settings.accounts if a.simulated and a.ws_url is None]
    if not wanted:
        yield settings
        return
    numbers = []
    for account in wanted:
        match = SIM_ID.match(account.id)
        if not match:
            raise config.ConfigError(
                settings.source,
                None,
                "accounts",
                f"simulated account ids are sim-0001, sim-0002, ...; {account.id!r} is not one",
            )
        numbers.append(int(match.group(1)))
    options = dict(settings.simulator)
    truth = options.pop("truth", None)
    with tempfile.TemporaryDirectory(prefix="ingestor-sim-") as folder:
        accounts_file = Path(folder) / "accounts.yaml"
        command = [
            sys.executable, "-m", "ingestor.sim",
            "--accounts", str(max(numbers)),
            "--port", "0",
            "--write-accounts", str(accounts_file),
            # The capture is over when the service stops: no grace needed unless asked for.
            "--grace", str(options.pop("grace", 0.0)),
            # A service killed outright takes its exchange with it (see service/lifeline.py).
            "--exit-with", str(os.getpid()),
        ]  # fmt: skip
        if truth:
            command += ["--truth", str(truth)]
        for name, value in options.items():
            command += [f"--{name.replace('_', '-')}", str(value)]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            first = process.stdout.readline() if process.stdout else ""
            if not first:
                raise RuntimeError(f"the simulator did not start (exit code {process.poll()})")
            where = json.loads(first)
            issued = config.load(accounts_file, env=_env_file(accounts_file.with_suffix(".env")))
            by_id = {a.id: a for a in issued.accounts}
            accounts = tuple(
                replace(
                    a,
                    ws_url=by_id[a.id].ws_url,
                    rest_url=by_id[a.id].rest_url,
                    api_key=by_id[a.id].api_key,
                    api_secret=by_id[a.id].api_secret,
                )
                if a in wanted
                else a
                for a in settings.accounts
            )
            log.info("simulator started on %s for %d accounts", where["ws_url"], len(wanted))
            yield replace(settings, accounts=accounts)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)  # the market closes, the truth is written
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
            if truth:
                log.info("simulator truth written to %s", truth)
