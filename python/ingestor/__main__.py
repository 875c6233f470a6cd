"""`python -m ingestor`: capture (the default), or `query` a store.

python -m ingestor --accounts accounts.yaml [--sink duckdb] [--store PATH] [--duration S]
                   [--metrics-port N] [--no-check]
python -m ingestor query latest-positions|latest-wallets|gaps|"SQL" --store PATH
python -m ingestor check --accounts accounts.yaml   (pre-flight: auth and key rights)
python -m ingestor compact --store ROOT [--date D] [--table T] [--target-mb N]   (Parquet)
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ingestor import config

LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"


def setup_logging(level: str) -> None:
    import multiprocessing_logging

    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stderr)
    # Every process's records go through one handler in this process, to one stream.
    multiprocessing_logging.install_mp_handler()


def capture_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ingestor",
        description="Capture Bybit V5 private streams into DuckDB, Parquet or DuckLake.",
        epilog="Other commands: `python -m ingestor query --help`, `... check --help`.",
    )
    parser.add_argument("--accounts", required=True, type=Path, help="accounts.yaml")
    parser.add_argument("--sink", choices=config.SINK_KINDS, help="overrides the file's sink")
    parser.add_argument("--store", help="store path (file, folder or lake); overrides the file")
    parser.add_argument(
        "--data-path", help="a lake's data folder (PostgreSQL catalog); overrides the file"
    )
    parser.add_argument(
        "--shard",
        metavar="I/N",
        help="capture only the accounts whose stable hash mod N is I (N instances, one lake)",
    )
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--workers", type=int, help="collector processes (default: cores)")
    parser.add_argument(
        "--status",
        choices=("auto", "table", "log"),
        default="auto",
        help="a live table on a terminal (auto), or a log line every 10 s",
    )
    parser.add_argument(
        "--metrics-port", type=int, help="serve /metrics, /healthz, /readyz on this port (0: any)"
    )
    parser.add_argument("--metrics-host", help="address the metrics server binds (127.0.0.1)")
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="capture without checking every account's key first",
    )
    parser.add_argument("--log-level", default="info")
    return parser


def query_parser() -> argparse.ArgumentParser:
    from ingestor.queries import NAMED_QUERIES

    parser = argparse.ArgumentParser(
        prog="python -m ingestor query", description="Print a query's answer as a table."
    )
    parser.add_argument("query", help=f"{', '.join(NAMED_QUERIES)} or any SQL")
    parser.add_argument(
        "--store",
        required=True,
        help="the store: DuckDB file, Parquet root, lake folder or postgres:<conninfo>",
    )
    parser.add_argument(
        "--sink", choices=config.SINK_KINDS, default="duckdb", help="the kind of store"
    )
    parser.add_argument("--limit", type=int, default=1000, help="rows shown at most")
    return parser


def run_query(argv: list[str]) -> int:
    import duckdb

    from ingestor.queries import NAMED_QUERIES
    from ingestor.sinks import open_reader, store_exists

    args = query_parser().parse_args(argv)
    if not store_exists(args.sink, args.store):
        print(f"error: {args.store} does not exist", file=sys.stderr)
        return 2
    sql = NAMED_QUERIES.get(args.query, args.query)
    try:
        with open_reader(args.sink, args.store) as con:
            relation = con.sql(sql)
            if relation is None:
                return 0
            relation.show(max_rows=args.limit, max_width=10_000)
    except duckdb.Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def run_capture(argv: list[str]) -> int:
    from ingestor.service.status import Status
    from ingestor.service.supervisor import Supervisor

    args = capture_parser().parse_args(argv)
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        print("error: --metrics-port must be a TCP port (0-65535)", file=sys.stderr)
        return 2
    try:
        settings = config.load(
            args.accounts,
            overrides={
                "sink": args.sink,
                "store": args.store,
                "workers": args.workers,
                "metrics_port": args.metrics_port,
                "metrics_host": args.metrics_host,
                "start_check": False if args.no_check else None,
                "data_path": args.data_path,
                "shard": args.shard,
            },
        )
    except config.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    setup_logging(args.log_level)
    from ingestor.service.supervisor import own_shard

    settings = own_shard(settings)
    if not settings.accounts:
        print(f"error: shard {args.shard or settings.shard} holds no accounts", file=sys.stderr)
        return 2
    live = args.status == "table" or (args.status == "auto" and sys.stdout.isatty())
    from ingestor.service.simulator import simulated

    # The simulator the service starts issues these accounts' keys: nothing to check.
    own = frozenset(a.id for a in settings.accounts if a.simulated and a.ws_url is None)
    with simulated(settings) as ready:
        status = Status(ready, live=live)
        return Supervisor(ready, duration=args.duration, status=status, unchecked=own).run()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "query":
        return run_query(argv[1:])
    if argv and argv[0] == "check":
        from ingestor.check import run_check

        return run_check(argv[1:])
    if argv and argv[0] == "compact":
        from ingestor.sinks.parquet_compact import run_compact

        return run_compact(argv[1:])
    if argv and argv[0] == "run":
        argv = argv[1:]
    return run_capture(argv)


if __name__ == "__main__":
    sys.exit(main())
