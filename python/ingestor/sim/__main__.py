"""`python -m ingestor.sim`: run the simulated exchange until a signal or `--duration`.

On start it prints one JSON line to stdout (`{"ws_url", "rest_url", "accounts", "seed"}`)
so a script can read where it listens. At `--duration` or on SIGINT/SIGTERM the market
closes and faults cease; the server keeps serving for `--grace` seconds so clients can
reconnect and resync (a second signal ends the grace early); then the truth (with fault,
push and connection counters) is written to `--truth` and the process exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import ssl
import sys
from pathlib import Path

from ingestor.service.lifeline import die_with
from ingestor.sim.accounts_file import write_accounts_file
from ingestor.sim.exchange import (
    DEFAULT_FUNDING_INTERVAL,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_ORDER_RETENTION,
    Exchange,
)
from ingestor.sim.faults import FaultConfig, parse_accounts


def parser() -> argparse.ArgumentParser:
    """The command line (every flag is documented in its help)."""
    ap = argparse.ArgumentParser(prog="python -m ingestor.sim", description=__doc__)
    ap.add_argument("--accounts", type=int, default=10, help="number of accounts (sim-0001...)")
    ap.add_argument("--seed", type=int, default=0, help="seed of keys, market and faults")
    ap.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free)")
    ap.add_argument(
        "--duration", type=float, help="seconds of market, then close (default: until a signal)"
    )
    ap.add_argument(
        "--grace", type=float, default=5.0, help="seconds to keep serving after the close"
    )
    ap.add_argument("--truth", type=Path, help="write the final truth JSON here")
    ap.add_argument(
        "--write-accounts", type=Path, help="write an accounts YAML here (+ .env beside it)"
    )
    ap.add_argument(
        "--inline-secrets", action="store_true", help="put secrets in the YAML, no env file"
    )
    ap.add_argument(
        "--sink-path", default="capture.duckdb", help="sink path written in the accounts YAML"
    )
    ap.add_argument(
        "--exit-with",
        type=int,
        metavar="PID",
        help="end as on SIGTERM when process PID, which started this one, ends (Linux)",
    )
    ap.add_argument("--tick", type=float, default=0.05, help="seconds between market steps")
    ap.add_argument("--trade-rate", type=float, default=1.0, help="trades per account per second")
    ap.add_argument("--hedge-ratio", type=float, default=0.3, help="share of hedge-mode accounts")
    ap.add_argument(
        "--funding-interval",
        type=float,
        default=DEFAULT_FUNDING_INTERVAL,
        help="seconds of market time between fundings (0: none)",
    )
    ap.add_argument(
        "--order-retention",
        type=float,
        default=DEFAULT_ORDER_RETENTION,
        help="seconds order history keeps orders cancelled without a fill",
    )
    ap.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT,
        help="seconds of client silence before a close",
    )
    ap.add_argument(
        "--firehose", action="store_true", help="pre-encoded pushes as fast as clients read"
    )
    ap.add_argument("--firehose-frames", type=int, help="frames per connection in firehose mode")
    ap.add_argument(
        "--firehose-rate",
        type=float,
        help="firehose messages per second per connection (default: as fast as clients read)",
    )
    ap.add_argument(
        "--tls-cert",
        type=Path,
        help="PEM certificate chain: serve wss:// and https:// (with --tls-key)",
    )
    ap.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    ap.add_argument(
        "--log-level", default="WARNING", help="logging level (INFO shows connections and faults)"
    )
    faults = ap.add_argument_group("faults (for --fault-accounts, default all)")
    faults.add_argument("--fault-accounts", help="comma-separated account ids the faults apply to")
    faults.add_argument(
        "--drop-per-s", type=float, default=0.0, help="connection drops per connection per second"
    )
    faults.add_argument(
        "--drop-per-push", type=float, default=0.0, help="probability a push drops the connection"
    )
    faults.add_argument(
        "--refuse-auth", type=float, default=0.0, help="probability an auth is refused"
    )
    faults.add_argument(
        "--broken-frame-rate",
        type=float,
        default=0.0,
        help="probability of a broken frame per push",
    )
    faults.add_argument(
        "--unknown-topic-rate",
        type=float,
        default=0.0,
        help="probability of an unknown-topic frame per push",
    )
    faults.add_argument(
        "--duplicate-rate", type=float, default=0.0, help="probability a push is sent twice"
    )
    faults.add_argument(
        "--ping-silence-after", type=float, help="seconds after auth when pongs and pushes stop"
    )
    faults.add_argument(
        "--pong-delay", type=float, default=0.0, help="seconds each pong comes late (pushes flow)"
    )
    faults.add_argument(
        "--slow-send", type=float, default=0.0, help="seconds of delay before every frame"
    )
    faults.add_argument(
        "--rest-error-rate", type=float, default=0.0, help="probability of REST retCode 10016"
    )
    faults.add_argument(
        "--rest-rate-limit", type=int, help="REST requests per second per key and path (default 50)"
    )
    return ap


def fault_config(args: argparse.Namespace) -> FaultConfig:
    """The single fault config the CLI can express."""
    return FaultConfig(
        accounts=parse_accounts(args.fault_accounts),
        drop_per_s=args.drop_per_s,
        drop_per_push=args.drop_per_push,
        refuse_auth=args.refuse_auth,
        broken_frame_rate=args.broken_frame_rate,
        unknown_topic_rate=args.unknown_topic_rate,
        duplicate_rate=args.duplicate_rate,
        ping_silence_after=args.ping_silence_after,
        pong_delay_s=args.pong_delay,
        slow_send_s=args.slow_send,
        rest_error_rate=args.rest_error_rate,
        rest_rate_limit=args.rest_rate_limit,
    )


def tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The server context of --tls-cert and --tls-key, or None for plain ws and http."""
    if args.tls_cert is None and args.tls_key is None:
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise SystemExit("--tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.tls_cert, args.tls_key)
    return context


async def run(args: argparse.Namespace) -> int:
    """Serve, close the market, keep serving for the grace period, write the truth."""
    exchange = Exchange(
        args.accounts,
        args.seed,
        port=args.port,
        duration=args.duration,
        tick=args.tick,
        trade_rate=args.trade_rate,
        hedge_ratio=args.hedge_ratio,
        funding_interval=args.funding_interval,
        order_retention=args.order_retention,
        idle_timeout=args.idle_timeout,
        faults=fault_config(args),
        firehose=args.firehose,
        firehose_frames=args.firehose_frames,
        firehose_rate=args.firehose_rate,
        tls=tls_context(args),
    )
    signalled = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signalled.set)
    async with exchange:
        if args.write_accounts:
            write_accounts_file(
                args.write_accounts,
                exchange.accounts,
                ws_url=exchange.ws_url,
                rest_url=exchange.rest_url,
                inline=args.inline_secrets,
                sink_path=args.sink_path,
            )
        banner = {
            "ws_url": exchange.ws_url,
            "rest_url": exchange.rest_url,
            "accounts": args.accounts,
            "seed": args.seed,
        }
        print(json.dumps(banner), flush=True)
        closed = asyncio.create_task(exchange.wait_market_closed())
        stop = asyncio.create_task(signalled.wait())
        await asyncio.wait({closed, stop}, return_when=asyncio.FIRST_COMPLETED)
        await exchange.stop_market()
        signalled.clear()
        stop.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(signalled.wait(), args.grace)
        report = exchange.report()
    if args.truth:
        args.truth.write_text(json.dumps(report, indent=1) + "\n")
    summary = {k: sum(v.values()) for k, v in report["faults"].items() if v}
    print(json.dumps({"steps": report["run"]["steps"], "faults": summary}), file=sys.stderr)
    if "firehose" in report:
        print(json.dumps({"firehose": report["firehose"]}), flush=True)
    return 0


def main() -> int:
    """Entry point."""
    args = parser().parse_args()
    if args.exit_with is not None:
        die_with(args.exit_with, signal.SIGTERM)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
