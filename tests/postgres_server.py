"""A real PostgreSQL server for tests: Debian's packages (installed with apt-get when
missing), a fresh cluster in a temporary folder, on a free loopback port, run as the
`postgres` user (the server refuses to run as root), stopped and removed at the end."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

INSTALL_TIMEOUT_S = 900


def server_bin() -> Path | None:
    """The newest installed server's bin folder (Debian keeps one per major version)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    return Path(found[-1]).parent if found else None


def install() -> Path:
    """Installs Debian's `postgresql` if it is not there; skips the test only when this
    machine cannot install packages at all."""
    found = server_bin()
    if found:
        return found
    if shutil.which("apt-get") is None:
        pytest.skip("PostgreSQL is not installed and there is no apt-get to install it")
    if os.geteuid() != 0:
        pytest.skip("PostgreSQL is not installed and installing it needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"]
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S
    )
    if done.returncode != 0:
        # A fresh machine has no package lists yet.
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S
        )
    found = server_bin()
    if found is None:
        raise RuntimeError(f"apt-get install postgresql failed:\n{done.stdout}\n{done.stderr}")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    bin: Path
    folder: Path
    port: int
    user: str

    def as_user(self, *command: str) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", self.user, "--", *command]
        return list(command)

    def run(self, tool: str, *args: str, check: bool = True) -> int:
        done = subprocess.run(
            self.as_user(str(self.bin / tool), *args), capture_output=True, text=True, timeout=120
        )
        assert not check or done.returncode == 0, f"{tool}:\n{done.stdout}\n{done.stderr}"
        return done.returncode

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder}"
        self.run(
            "pg_ctl", "-D", str(self.folder / "data"), "-o", options,
            "-l", str(self.folder / "server.log"), "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        return self.run("pg_ctl", "-D", str(self.folder / "data"), "status", check=False) == 0

    def create_database(self, name: str) -> str:
        """A new database; its libpq conninfo (trust auth on loopback: no password)."""
        self.run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name)
        return f"dbname={name} host=127.0.0.1 port={self.port} user={self.user}"


@contextmanager
def postgres() -> Iterator[Server]:
    bin_folder = install()
    user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
    # Not under pytest's tmp_path: its parents are private to root, and the server runs as
    # `postgres`.
    folder = Path(tempfile.mkdtemp(prefix="ingestor-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(folder, user)
        server = Server(bin_folder, folder, free_port(), user)
        server.run(
            "initdb", "-D", str(folder / "data"), "-U", user, "-A", "trust",
            "-E", "UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip
        server.start()
        try:
            yield server
        finally:
            if server.running():
                server.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
