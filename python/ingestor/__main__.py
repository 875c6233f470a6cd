"""`ingestor` (the console script) or `python -m ingestor`: capture (the default), or `query`,
`report`, `check` or `compact` a store. Both spellings take the same arguments.

ingestor --accounts accounts.yaml [--sink duckdb] [--store PATH] [--duration S]
         [--metrics-port N] [--no-check]
ingestor query latest-positions|latest-wallets|gaps|"SQL" --store PATH
         [--format table|csv|json|parquet] [--output FILE] [--limit N]
ingestor report --store PATH [--sink KIND] [--from T] [--to T] [--accounts a,b,...]
         [--out report.html]   (one self-contained HTML file: charts and totals)
ingestor check --accounts accounts.yaml   (pre-flight: auth and key rights)
ingestor compact --store ROOT [--date D] [--table T] [--target-mb N]   (Parquet)
ingestor --version
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ingestor import config


def program() -> str:
    """How this process was started, for usage lines: `python -m ingestor` or `ingestor`."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    if name in ("", "-c", "__main__.py"):
        return "python -m ingestor"
    return name


def version() -> str:
    """The installed distribution's version (Cargo's, through maturin)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("ingestor")
    except PackageNotFoundError:  # a source tree on sys.path, not installed
        from ingestor import __version__

        return __version__


def setup_logging(level: str) -> None:
    from ingestor.service import logs

    logs.setup(level)


def capture_parser() -> argparse.ArgumentParser:
    prog = program()
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Capture Bybit V5 private streams into DuckDB, Parquet or DuckLake.",
        epilog=f"Other commands: `{prog} query --help`, `{prog} report --help`, "
        f"`{prog} check --help`, `{prog} compact --help`.",
    )
    parser.add_argument("--version", action="version", version=f"ingestor {version()}")
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


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def query_parser() -> argparse.ArgumentParser:
    from ingestor import query_output
    from ingestor.queries import NAMED_QUERIES

    width = max(len(name) for name in NAMED_QUERIES)
    named = "\n".join(
        f"  {name.ljust(width)}  {description}" for name, (description, _) in NAMED_QUERIES.items()
    )
    parser = argparse.ArgumentParser(
        prog=f"{program()} query",
        description="Answer a named query or any SQL from a store (read-only), as a table\n"
        "for people, CSV, JSON Lines or Parquet.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"""named queries:
{named}

Amounts print exact, as people write them (0.22223041: no trailing zeros, no exponent);
times in UTC with the offset shown (2023-10-19 02:25:17.038+00:00; ISO 8601 with a T in
CSV and JSON). csv: a header row, NULL as an empty field. json: JSON Lines, one object a
row, amounts as strings (exact), NULL as null. parquet: the answer's own types
(DECIMAL(38,18), TIMESTAMPTZ in UTC); needs --output.""",
    )
    parser.add_argument("query", help="a named query (below) or any SQL")
    parser.add_argument(
        "--store",
        required=True,
        help="the store: DuckDB file, Parquet root, lake folder or postgres:<conninfo>",
    )
    parser.add_argument(
        "--sink", choices=config.SINK_KINDS, default="duckdb", help="the kind of store"
    )
    parser.add_argument(
        "--format",
        choices=query_output.FORMATS,
        default="table",
        help="what to write (default: table)",
    )
    parser.add_argument(
        "--output", type=Path, metavar="FILE", help="write to FILE (replaced whole) not stdout"
    )
    parser.add_argument(
        "--limit",
        type=non_negative,
        metavar="N",
        help=f"rows at most (the table: {query_output.TABLE_ROWS}; other formats: all)",
    )
    return parser


def run_query(argv: list[str]) -> int:
    import duckdb

    from ingestor import query_output
    from ingestor.queries import NAMED_QUERIES
    from ingestor.sinks import open_reader, store_exists

    parser = query_parser()
    args = parser.parse_args(argv)
    if args.format == "parquet" and args.output is None:
        parser.error("--format parquet needs --output FILE")
    if not store_exists(args.sink, args.store):
        print(f"error: {args.store} does not exist", file=sys.stderr)
        return 2
    sql = NAMED_QUERIES[args.query][1] if args.query in NAMED_QUERIES else args.query
    try:
        with open_reader(args.sink, args.store) as con:
            query_output.use_display_time_zone(con)
            relation = con.sql(sql)
            if relation is None:
                return 0
            query_output.write(relation, args.format, output=args.output, limit=args.limit)
    except duckdb.Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader of our stdout (`| head`) has what it wanted; say nothing more.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as e:  # --output's folder missing or not writable, a full disk, ...
        where = f"{args.output}: " if args.output is not None else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
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
    if argv and argv[0] == "report":
        from ingestor.report import run_report

        return run_report(argv[1:])
    if argv and argv[0] == "check":
        from ingestor.check import run_check

        return run_check(argv[1:])
    if argv and argv[0] == "compact":
        from ingestor.sinks.parquet_compact import run_compact

        return run_compact(argv[1:])
    if argv and argv[0] == "run":
        argv = argv[1:]
    return run_capture(argv)


def entry() -> int:
    """The `ingestor` console script."""
    return main()


if __name__ == "__main__":
    sys.exit(main())
