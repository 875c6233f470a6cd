"""`accounts.yaml`: the service's settings and accounts, validated with file, line and field.

Secrets are references, never values: `${ENV_VAR}` or `file:/path`. A literal secret is
refused unless the account is simulated. Resolved secrets live in `Secret` objects, whose
`repr` and `str` never show them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

#: Bybit's private-stream and REST endpoints per environment (shared/bybit-v5.md).
ENVIRONMENTS: dict[str, tuple[str, str]] = {
    "mainnet": ("wss://stream.bybit.com/v5/private", "https://api.bybit.com"),
    "testnet": ("wss://stream-testnet.bybit.com/v5/private", "https://api-testnet.bybit.com"),
    "demo": ("wss://stream-demo.bybit.com/v5/private", "https://api-demo.bybit.com"),
}
SIM = "sim"
SINK_KINDS = ("duckdb", "parquet", "ducklake")
TOPICS = (
    "position",
    "position.linear",
    "position.inverse",
    "position.option",
    "wallet",
    "execution",
    "execution.linear",
    "execution.inverse",
    "execution.option",
    "execution.spot",
    "order",
    "order.linear",
    "order.inverse",
    "order.option",
    "order.spot",
)
#: What an account subscribes to unless it says: its state and its whole ledger.
DEFAULT_TOPICS = ("position", "wallet", "execution", "order")
CATEGORIES = ("linear", "inverse", "option")
DEFAULT_STORE = {"duckdb": "capture.duckdb", "parquet": "capture", "ducklake": "capture.lake"}

ENV_REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
FILE_REFERENCE = "file:"


class ConfigError(ValueError):
    """A bad setting, located: `accounts.yaml:12: accounts[3].api_secret: why`."""

    def __init__(self, path: Path | str, line: int | None, field_path: str, message: str):
        self.path, self.line, self.field, self.message = str(path), line, field_path, message
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(
            f"{where}: {field_path}: {message}" if field_path else f"{where}: {message}"
        )


class Secret:
    """An API key or secret resolved from its reference; it never prints."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Account:
    id: str
    environment: str  # mainnet | testnet | demo | sim | url
    ws_url: str | None  # None for `sim` until the service starts the simulator
    rest_url: str | None
    api_key: Secret
    api_secret: Secret
    topics: tuple[str, ...] = DEFAULT_TOPICS
    categories: tuple[str, ...] = CATEGORIES
    account_types: tuple[str, ...] = ("UNIFIED",)

    @property
    def simulated(self) -> bool:
        return self.environment == SIM

    def engine_spec(self) -> dict[str, object]:
        """The mapping `ingestor._core.Collector` takes (the only place secrets are revealed)."""
        return {
            "id": self.id,
            "ws_url": self.ws_url,
            "rest_url": self.rest_url,
            "api_key": self.api_key.reveal(),
            "api_secret": self.api_secret.reveal(),
            "topics": list(self.topics),
            "categories": list(self.categories),
            "account_types": list(self.account_types),
        }


@dataclass(frozen=True)
class Sink:
    kind: str = "duckdb"
    #: A file, a folder, or for a lake on PostgreSQL `postgres:<libpq conninfo>`.
    path: str = DEFAULT_STORE["duckdb"]
    #: A lake's data folder when its catalog is PostgreSQL (shared by every box).
    data_path: str | None = None


@dataclass(frozen=True)
class Settings:
    accounts: tuple[Account, ...]
    sink: Sink = field(default_factory=Sink)
    #: Rows a collector's batch holds at most. Small enough that several batches fit the
    #: budgets below: at 10,000 (~15 MB with raw JSON) and a 128 MiB `max_inflight_mb`, a
    #: collector's share held one batch and the pipeline went one batch at a time (17,000
    #: messages a second at 100 accounts' saturation, against 90,000 at 2,000 rows).
    batch_size: int = 2_000
    flush_interval: float = 1.0
    #: Per collector. Rows are ~1-3 KiB with raw_json, so this bounds memory and the time a
    #: drain takes behind a slow store, while still riding out a long flush.
    max_pending_rows: int = 100_000
    #: Batches handed to the writer and not yet committed, at most (MiB): past this the
    #: supervisor stops reading the collectors, whose engines then stop reading sockets.
    #: It bounds the writer's pending commit too (a subset of these batches).
    #: None: `default_inflight_mb()`, sized to the machine (see `inflight_mb`).
    max_inflight_mb: int | None = None
    #: A drain (SIGTERM, --duration) gives the writer this long (s) to commit the rest once
    #: the collectors are done; then what is left is spooled for the next start, and the
    #: service exits non-zero saying so.
    drain_timeout: float = 300.0
    workers: int = max(1, os.cpu_count() or 1)
    raw_json: bool = True
    metrics_port: int | None = None
    #: Where the metrics server listens; loopback unless asked for (it is not authenticated).
    metrics_host: str = "127.0.0.1"
    #: The service checks every account's key (check.py) before it captures.
    start_check: bool = True
    #: Connection engine tuning (ping_interval, backoff_cap, connect_budget, ...).
    engine: Mapping[str, float | int | str] = field(default_factory=dict)
    #: How the service runs the built-in simulator for `environment: sim` accounts.
    simulator: Mapping[str, Any] = field(default_factory=dict)
    #: `python -m ingestor check` refuses keys that can trade or withdraw unless this is true.
    allow_trading_keys: bool = False
    #: (i, n): this instance captures only the accounts whose stable hash mod n is i.
    shard: tuple[int, int] | None = None
    source: str = "<memory>"


def default_inflight_mb() -> int:
    """A 384th of the machine's memory, between 64 and 512 MiB. A DuckDB file's flush is
    durable in its hot tier as soon as it is written, so batches are held only that long and
    a large budget buys nothing: at 100 accounts' firehose, 90,000 messages a second at 128
    MiB (all processes 443 MiB PSS) and 85,000 at 256 (763 MiB). The Parquet tree too:
    106,600 messages a second at 128 MiB (396 MiB PSS), 61,700 at 1.5 GiB (1,810 MiB) in
    `make bench-e2e` the same hour. At 64 against 128 (2026-12-01, 24 GiB box): 1,000
    accounts 50,100 against 50,700 messages a second, 595 against 654 MiB; 100 accounts,
    alternating, 50,000 and 54,400 against 55,700, 492 and 470 against 552 MiB. At 48 the
    collectors' shares hold one or two batches: 32,400 messages a second at 1,000. (A lake,
    which commits what the writer holds, was not measured.)"""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 64
    return max(64, min(512, total // 384 // 2**20))


def inflight_mb(settings: Settings) -> int:
    """The budget for data in flight: the file's, or the machine's default."""
    return settings.max_inflight_mb or default_inflight_mb()


#: How `max_inflight_mb` is shared. The collectors' engines hold a quarter together (split
#: evenly); the supervisor may hold the rest for the writer, but what it holds (until the
#: writer acknowledges it) the writer holds too, so its share is half of that.
COLLECTORS_SHARE = 1 / 4


def collector_budget_bytes(settings: Settings, collectors: int) -> int:
    share = inflight_mb(settings) * 2**20 * COLLECTORS_SHARE / max(1, collectors)
    return max(1, int(share))


def relay_budget_bytes(settings: Settings) -> int:
    return max(1, int(inflight_mb(settings) * 2**20 * (1 - COLLECTORS_SHARE) / 2))


# Settings that environment variables may override: name -> (setting, parser).
ENV_OVERRIDES: dict[str, tuple[str, type]] = {
    "INGESTOR_BATCH_SIZE": ("batch_size", int),
    "INGESTOR_FLUSH_INTERVAL": ("flush_interval", float),
    "INGESTOR_MAX_PENDING_ROWS": ("max_pending_rows", int),
    "INGESTOR_MAX_INFLIGHT_MB": ("max_inflight_mb", int),
    "INGESTOR_DRAIN_TIMEOUT": ("drain_timeout", float),
    "INGESTOR_WORKERS": ("workers", int),
    "INGESTOR_RAW_JSON": ("raw_json", bool),
    "INGESTOR_METRICS_PORT": ("metrics_port", int),
    "INGESTOR_METRICS_HOST": ("metrics_host", str),
    "INGESTOR_START_CHECK": ("start_check", bool),
}


class _LineLoader(yaml.SafeLoader):
    """Keeps each mapping's key lines, so errors can point at the line."""


class _Mapping(dict):
    lines: dict[str, int]
    line: int


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _Mapping:
    mapping = _Mapping()
    mapping.line = node.start_mark.line + 1
    mapping.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise yaml.MarkedYAMLError(
                problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.lines[key] = key_node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _Reader:
    """Typed reads from the parsed file, each error located."""

    def __init__(self, path: Path, env: Mapping[str, str]) -> None:
        self.path, self.env = path, env

    def error(self, where: Any, key: str | None, field_path: str, message: str) -> ConfigError:
        line = None
        if isinstance(where, _Mapping):
            line = where.lines.get(key, where.line) if key else where.line
        return ConfigError(self.path, line, field_path, message)

    def get(self, mapping: Any, key: str, field_path: str, kind: type, default: Any) -> Any:
        if key not in mapping or mapping[key] is None:
            return default
        value = mapping[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if (kind is not bool and isinstance(value, bool)) or not isinstance(value, kind):
            raise self.error(mapping, key, field_path, f"expected {_kind_name(kind)}")
        return value

    def secret(self, account: _Mapping, key: str, field_path: str, simulated: bool) -> Secret:
        value = account.get(key)
        if not isinstance(value, str) or not value:
            raise self.error(account, key, field_path, "required: ${ENV_VAR} or file:/path")
        env = ENV_REFERENCE.match(value)
        if env:
            name = env.group(1)
            if not self.env.get(name):
                raise self.error(
                    account, key, field_path, f"environment variable {name} is not set or empty"
                )
            return Secret(self.env[name])
        if value.startswith(FILE_REFERENCE):
            file = Path(value[len(FILE_REFERENCE) :]).expanduser()
            if not file.is_absolute():
                file = self.path.parent / file
            try:
                text = file.read_text().strip()
            except OSError as e:
                raise self.error(
                    account, key, field_path, f"cannot read {file}: {e.strerror}"
                ) from None
            if not text:
                raise self.error(account, key, field_path, f"{file} is empty")
            return Secret(text)
        if simulated:
            return Secret(value)
        raise self.error(
            account,
            key,
            field_path,
            "a literal secret is refused (allowed only for environment: sim); "
            "write ${ENV_VAR} or file:/path",
        )


def _kind_name(kind: type) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        kind, kind.__name__
    )


def _strings(reader: _Reader, mapping: _Mapping, key: str, where: str, allowed, default):
    value = mapping.get(key)
    if value is None:
        return tuple(default)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise reader.error(mapping, key, where, "expected a non-empty list of strings")
    if allowed is not None:
        for item in value:
            if item not in allowed:
                raise reader.error(
                    mapping, key, where, f"{item!r} is not one of {', '.join(allowed)}"
                )
    return tuple(value)


def _account(reader: _Reader, raw: Any, index: int) -> Account:
    where = f"accounts[{index}]"
    if not isinstance(raw, _Mapping):
        raise ConfigError(reader.path, None, where, "expected a mapping with id, api_key, ...")
    account_id = raw.get("id")
    if not isinstance(account_id, str | int) or isinstance(account_id, bool) or account_id == "":
        raise reader.error(raw, "id" if "id" in raw else None, f"{where}.id", "required string")
    account_id = str(account_id)
    environment = raw.get("environment")
    ws_url, rest_url = raw.get("ws_url"), raw.get("rest_url")
    if environment is None:
        if ws_url is None:
            raise reader.error(
                raw, None, f"{where}.environment", "required: mainnet, testnet, demo, sim or ws_url"
            )
        environment = "url"
    elif environment in ENVIRONMENTS:
        default_ws, default_rest = ENVIRONMENTS[environment]
        ws_url, rest_url = ws_url or default_ws, rest_url or default_rest
    elif environment != SIM:
        raise reader.error(
            raw,
            "environment",
            f"{where}.environment",
            f"{environment!r} is not one of mainnet, testnet, demo, sim",
        )
    for key in ("ws_url", "rest_url"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or "://" not in value):
            raise reader.error(
                raw, key, f"{where}.{key}", "expected a ws://, wss:// or https:// URL"
            )
    if ws_url is not None and not ws_url.startswith(("ws://", "wss://")):
        raise reader.error(raw, "ws_url", f"{where}.ws_url", "expected a ws:// or wss:// URL")
    simulated = environment == SIM
    if simulated and ws_url is None and "api_key" not in raw and "api_secret" not in raw:
        # The service starts the simulator, which issues this account's key.
        api_key = api_secret = Secret("")
    else:
        api_key = reader.secret(raw, "api_key", f"{where}.api_key", simulated)
        api_secret = reader.secret(raw, "api_secret", f"{where}.api_secret", simulated)
    topics = _strings(reader, raw, "topics", f"{where}.topics", TOPICS, DEFAULT_TOPICS)
    return Account(
        id=account_id,
        environment=environment,
        ws_url=ws_url,
        rest_url=rest_url,
        api_key=api_key,
        api_secret=api_secret,
        topics=topics,
        categories=_strings(
            reader, raw, "categories", f"{where}.categories", CATEGORIES, CATEGORIES
        ),
        account_types=_strings(
            reader, raw, "account_types", f"{where}.account_types", None, ("UNIFIED",)
        ),
    )


def load(
    path: str | Path,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Reads and validates `path`; environment variables, then `overrides`, win over it."""
    path = Path(path)
    env = os.environ if env is None else env
    reader = _Reader(path, env)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(path, None, "", f"cannot read: {e.strerror}") from None
    try:
        data = yaml.load(text, Loader=_LineLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        raise ConfigError(
            path, mark.line + 1 if mark else None, "", f"not valid YAML: {e.problem}"
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(path, None, "", f"not valid YAML: {e}") from None
    if not isinstance(data, _Mapping):
        raise ConfigError(path, None, "", "expected a mapping with an `accounts` list")

    known = {
        "accounts",
        "sink",
        "engine",
        "simulator",
        "allow_trading_keys",
        "shard",
        *(name for name, _ in ENV_OVERRIDES.values()),
    }
    for key in data:
        if key not in known:
            raise reader.error(
                data, key, str(key), f"unknown setting; known: {', '.join(sorted(known))}"
            )

    raw_accounts = data.get("accounts")
    if not isinstance(raw_accounts, list) or not raw_accounts:
        raise reader.error(
            data,
            "accounts" if "accounts" in data else None,
            "accounts",
            "expected a non-empty list",
        )
    accounts = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_accounts):
        account = _account(reader, raw, index)
        if account.id in seen:
            raise reader.error(
                raw,
                "id",
                f"accounts[{index}].id",
                f"duplicate id {account.id!r} (also accounts[{seen[account.id]}])",
            )
        seen[account.id] = index
        accounts.append(account)

    sink_raw = data.get("sink") or _Mapping()
    if not isinstance(sink_raw, dict):
        raise reader.error(data, "sink", "sink", "expected a mapping with kind and path")
    kind = reader.get(sink_raw, "kind", "sink.kind", str, "duckdb")
    if kind not in SINK_KINDS:
        raise reader.error(
            sink_raw, "kind", "sink.kind", f"{kind!r} is not one of {', '.join(SINK_KINDS)}"
        )
    store = reader.get(sink_raw, "path", "sink.path", str, DEFAULT_STORE[kind])
    data_path = reader.get(sink_raw, "data_path", "sink.data_path", str, None)
    if data_path is not None and kind != "ducklake":
        raise reader.error(sink_raw, "data_path", "sink.data_path", "only a ducklake sink has one")
    problem = sink_problem(kind, store)
    if problem:
        raise reader.error(sink_raw, "path", "sink.path", problem)
    shard = None
    if data.get("shard") is not None:
        try:
            shard = parse_shard(str(data["shard"]))
        except ValueError as e:
            raise reader.error(data, "shard", "shard", str(e)) from None

    engine = _tuning(reader, data, "engine", ENGINE_SETTINGS)
    if "ca_file" in engine:
        engine["ca_file"] = _ca_file(reader, data["engine"], engine["ca_file"])
    values: dict[str, Any] = {
        "engine": engine,
        "simulator": _tuning(reader, data, "simulator", SIMULATOR_SETTINGS),
        "allow_trading_keys": reader.get(
            data, "allow_trading_keys", "allow_trading_keys", bool, False
        ),
    }
    defaults = Settings(accounts=())
    for setting, kind_of in ENV_OVERRIDES.values():
        values[setting] = reader.get(data, setting, setting, kind_of, getattr(defaults, setting))
    for name, (setting, kind_of) in ENV_OVERRIDES.items():
        if env.get(name):
            values[setting] = _from_env(path, name, env[name], kind_of)
    settings = Settings(
        accounts=tuple(accounts),
        sink=Sink(kind=kind, path=store, data_path=data_path),
        shard=shard,
        source=str(path),
        **values,
    )
    _check_ranges(reader, data, settings)
    return apply_overrides(settings, overrides or {})


#: Engine settings a file may tune, all in seconds except the counts.
ENGINE_SETTINGS = {
    "ping_interval": float,
    "pong_timeout": float,
    "handshake_timeout": float,
    "backoff_base": float,
    "backoff_cap": float,
    "stable_after": float,
    "connect_budget": int,
    "connect_window": float,
    "connect_burst": int,
    "rest_timeout": float,
    "rest_attempts": int,
    #: REST requests per `rest_window` for the whole box (every collector's share of it):
    #: Bybit allows an IP 600 per 5 s and bans it for 10 minutes past that.
    "rest_budget": int,
    "rest_window": float,
    #: How far back a first start reads each account's executions and orders (s; Bybit
    #: keeps 2 years).
    "backfill_depth": float,
    "max_frame_bytes": int,
    "worker_threads": int,
    #: PEM certificates trusted besides the built-in web roots (a private CA in front of a
    #: test exchange); relative to the accounts file.
    "ca_file": str,
}


#: Simulator settings for `environment: sim` accounts: the `python -m ingestor.sim` flags.
SIMULATOR_SETTINGS = {
    "seed": int,
    "trade_rate": float,
    "tick": float,
    "grace": float,
    "truth": str,
    "drop_per_s": float,
    "drop_per_push": float,
    "refuse_auth": float,
    "broken_frame_rate": float,
    "unknown_topic_rate": float,
    "duplicate_rate": float,
    "ping_silence_after": float,
    "slow_send": float,
    "rest_error_rate": float,
}


def _ca_file(reader: _Reader, engine: _Mapping, value: str) -> str:
    """The engine's extra CA file as an absolute path, read once here so that a wrong one is
    reported against its line rather than by every collector."""
    file = Path(value).expanduser()
    if not file.is_absolute():
        file = reader.path.parent / file
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not a PEM text file"
        raise reader.error(
            engine, "ca_file", "engine.ca_file", f"cannot read {file}: {reason}"
        ) from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise reader.error(engine, "ca_file", "engine.ca_file", f"{file} holds no PEM certificate")
    return str(file)


def _tuning(
    reader: _Reader, data: _Mapping, section: str, allowed: Mapping[str, type]
) -> dict[str, Any]:
    raw = data.get(section)
    if raw is None:
        return {}
    if not isinstance(raw, _Mapping):
        raise reader.error(data, section, section, f"expected a mapping of {section} settings")
    values: dict[str, Any] = {}
    for key in raw:
        where = f"{section}.{key}"
        if key not in allowed:
            known = ", ".join(sorted(allowed))
            raise reader.error(raw, key, where, f"unknown {section} setting; known: {known}")
        value = reader.get(raw, key, where, allowed[key], None)
        if value is None:
            continue
        if allowed[key] is not str and value < 0:
            raise reader.error(raw, key, where, "must not be negative")
        values[key] = value
    return values


def _from_env(path: Path, name: str, text: str, kind: type) -> Any:
    try:
        if kind is bool:
            if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("1", "true", "yes")
        return kind(text)
    except ValueError:
        raise ConfigError(
            path, None, name, f"environment override is not {_kind_name(kind)}"
        ) from None


def _check_ranges(reader: _Reader, data: _Mapping, settings: Settings) -> None:
    positive = {
        "batch_size": settings.batch_size,
        "flush_interval": settings.flush_interval,
        "max_pending_rows": settings.max_pending_rows,
        "max_inflight_mb": settings.max_inflight_mb,
        "drain_timeout": settings.drain_timeout,
        "workers": settings.workers,
    }
    for name, value in positive.items():
        if value is not None and value <= 0:
            raise reader.error(data, name, name, "must be positive")
    if settings.metrics_port is not None and not 0 <= settings.metrics_port <= 65535:
        raise reader.error(data, "metrics_port", "metrics_port", "must be a TCP port (0-65535)")


def parse_shard(text: str) -> tuple[int, int]:
    """`i/n` with 0 <= i < n."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not i/n (this instance's shard i of n, from 0)")
    index, count = int(match.group(1)), int(match.group(2))
    if not 0 <= index < count:
        raise ValueError(f"{index}/{count}: i must be at least 0 and less than n")
    return index, count


def sink_problem(kind: str, path: str) -> str | None:
    """Why a store path cannot be used, or None."""
    if kind == "ducklake" and path.startswith("postgres:"):
        # A conninfo is printed in logs and status lines: the password belongs elsewhere.
        if re.search(r"(^|\s|:)password\s*=", path) or re.search(r"://[^/@]*:[^/@]*@", path):
            return "no password in the path: libpq reads PGPASSWORD or ~/.pgpass"
    elif path.startswith("postgres:"):
        return "only a ducklake sink can have a PostgreSQL catalog"
    return None


def apply_overrides(settings: Settings, overrides: Mapping[str, Any]) -> Settings:
    """Command-line flags: `sink` (kind), `store` (path), `shard` (i/n), any Settings field."""
    changes = {k: v for k, v in overrides.items() if v is not None}
    sink = settings.sink
    if "sink" in changes:
        kind = changes.pop("sink")
        sink = sink if sink.kind == kind else Sink(kind=kind, path=DEFAULT_STORE[kind])
    if "store" in changes:
        sink = replace(sink, path=str(changes.pop("store")))
    if "data_path" in changes:
        sink = replace(sink, data_path=str(changes.pop("data_path")))
    problem = sink_problem(sink.kind, sink.path)
    if problem:
        raise ConfigError(settings.source, None, "--store", problem)
    if isinstance(changes.get("shard"), str):
        try:
            changes["shard"] = parse_shard(changes["shard"])
        except ValueError as e:
            raise ConfigError(settings.source, None, "--shard", str(e)) from None
    return replace(settings, sink=sink, **changes)
