"""What a user meets first: the wheel alone, in a fresh virtual environment.

The wheel is built from this tree (`maturin build --release`, sharing cargo's target folder
with `make build`, so it mostly reuses that build) and installed with pip and nothing else: its
dependencies come from the package index as pyproject.toml declares them, not from
requirements.txt. Then, from a folder outside the tree and without PYTHONPATH, the `ingestor`
console script captures the built-in simulator into each kind of store and `ingestor query`
reads the positions back.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from decimal import Decimal
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: Seconds any one step may take before the test fails.
BUILD_TIMEOUT = 1800  # a cold cargo build of the extension, should the target folder be empty
INSTALL_TIMEOUT = 900  # ~150 MB of wheels from the index on a cold pip cache
RUN_TIMEOUT = 120

ACCOUNTS = """\
flush_interval: 0.5
simulator: {seed: 7, trade_rate: 2.0}
accounts:
  - {id: sim-0001, environment: sim}
  - {id: sim-0002, environment: sim}
  - {id: sim-0003, environment: sim}
"""
SIM_ACCOUNTS = {"sim-0001", "sim-0002", "sim-0003"}
STORES = {"duckdb": "capture.duckdb", "parquet": "capture", "ducklake": "capture.lake"}


def run(command: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """`command` to its end within `timeout` seconds (or the test fails), output captured."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert result.returncode == 0, (command, result.stdout[-4000:], result.stderr[-4000:])
    return result


def clean_env(venv: Path) -> dict[str, str]:
    """This process's environment without anything that points Python at this tree: no
    PYTHON* variables, no virtual environment, no INGESTOR_* overrides; the venv first on PATH.
    pip's own settings (certificates, timeouts, index) stay."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "INGESTOR_")) and k not in ("VIRTUAL_ENV", "CONDA_PREFIX")
    }
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if str(ROOT) not in p]
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *path])
    return env


class Installed:
    def __init__(self, venv: Path, cwd: Path) -> None:
        self.venv = venv
        self.cwd = cwd
        self.env = clean_env(venv)

    def __call__(self, *args: str, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess:
        return run([str(self.venv / "bin" / args[0]), *args[1:]], timeout, cwd=self.cwd,
                   env=self.env)  # fmt: skip


def maturin() -> str:
    beside = Path(sys.executable).parent / "maturin"
    assert beside.exists(), "maturin is installed with requirements.txt (make setup)"
    return str(beside)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Iterator[Installed]:
    """A fresh venv holding only the wheel of this tree and what pip brings for it."""
    base = tmp_path_factory.mktemp("package")
    wheels = base / "wheels"
    # The same interpreter as `make build`'s `maturin develop`: PyO3's build config then matches
    # and cargo rebuilds nothing; another one would rebuild pyo3 here and again in `make build`.
    run([maturin(), "build", "--release", "--interpreter", sys.executable, "--out", str(wheels)],
        BUILD_TIMEOUT, cwd=ROOT)  # fmt: skip
    (wheel,) = wheels.glob("ingestor-*.whl")
    venv = base / "venv"
    run([sys.executable, "-m", "venv", str(venv)], RUN_TIMEOUT, cwd=base, env=clean_env(venv))
    work = base / "work"
    work.mkdir()
    (work / "accounts.yaml").write_text(ACCOUNTS)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    run([*pip, "install", "--quiet", str(wheel)], INSTALL_TIMEOUT, cwd=work, env=clean_env(venv))
    yield Installed(venv, work)
    shutil.rmtree(venv, ignore_errors=True)  # ~0.5 GB; pytest keeps its last runs' folders


def test_the_wheel_installs_alone_and_its_dependencies_agree(installed):
    installed("python", "-m", "pip", "check", "--disable-pip-version-check")
    where = installed("python", "-c", "import ingestor, ingestor._core; print(ingestor.__file__)")
    module = Path(where.stdout.strip()).resolve()
    assert module.is_relative_to(installed.venv.resolve()), module
    assert not module.is_relative_to(ROOT)


def test_version_from_either_spelling(installed):
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["version"]
    assert installed("ingestor", "--version").stdout == f"ingestor {cargo}\n"
    assert installed("python", "-m", "ingestor", "--version").stdout == f"ingestor {cargo}\n"
    core = installed("python", "-c", "import ingestor; print(ingestor.__version__)")
    assert core.stdout.strip() == cargo
    # Usage lines name the command as it was typed.
    assert installed("ingestor", "--help").stdout.startswith("usage: ingestor ")
    assert installed("ingestor", "query", "--help").stdout.startswith("usage: ingestor query ")
    module = installed("python", "-m", "ingestor", "query", "--help").stdout
    assert module.startswith("usage: python -m ingestor query ")


@pytest.mark.parametrize("sink", list(STORES))
def test_capture_and_query_each_store(installed, sink):
    store = installed.cwd / STORES[sink]
    installed("ingestor", "--accounts", "accounts.yaml", "--duration", "4", "--store", str(store),
              "--sink", sink, "--metrics-port", "0", "--no-check", "--status", "log")  # fmt: skip
    query = ("ingestor", "query", "latest-positions", "--sink", sink, "--store", str(store))
    rows = list(csv.DictReader(io.StringIO(installed(*query, "--format", "csv").stdout)))
    assert rows
    assert {r["account_id"] for r in rows} <= SIM_ACCOUNTS
    for row in rows:
        Decimal(row["mark_price"])  # an exact amount
        assert row["exchange_ts"].endswith("+00:00")
    table = installed(*query).stdout
    assert table.splitlines()[-1] == f"({len(rows)} row{'' if len(rows) == 1 else 's'})"
    wallets = installed("ingestor", "query", "latest-wallets", "--sink", sink, "--store",
                        str(store), "--format", "json").stdout  # fmt: skip
    assert {json.loads(line)["account_id"] for line in wallets.splitlines()} == SIM_ACCOUNTS


# --- Declared dependencies (no build) ------------------------------------------------------------


def dependencies() -> dict[str, Requirement]:
    declared = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    return {canonicalize_name(r.name): r for r in declared}


def test_requirements_txt_pins_every_dependency_inside_its_range():
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", line
            pins[canonicalize_name(requirement.name)] = spec.version
    for name, requirement in dependencies().items():
        assert name in pins, f"{name} is not pinned in requirements.txt"
        assert requirement.specifier.contains(pins[name]), (name, pins[name])


def test_every_module_the_package_imports_comes_with_it():
    """Every import in python/ingestor is the standard library, the package itself, or a module
    of a distribution pyproject.toml depends on."""
    provided = packages_distributions()
    declared = set(dependencies())
    missing = {}
    for path in (ROOT / "python" / "ingestor").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "ingestor":
                    continue
                if not {canonicalize_name(d) for d in provided.get(top, [])} & declared:
                    missing.setdefault(top, []).append(str(path.relative_to(ROOT)))
    assert not missing, missing
