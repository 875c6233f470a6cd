"""Decode benchmark: `ingestor.decode` against the decoders a user would write instead.

Run with `make bench-decode`. All contenders decode the same realistic frames in the same run
(a mix of position pushes and multi-coin wallet pushes), timed in CPU seconds, best of a few
rounds, and are reported as ratios to `ingestor.decode`, because shared machines are noisy.
Execution and order pushes (shaped like Bybit's newest documented ones, nested fee values
included) are then timed per element against the position push, in the same run:

- ingestor.decode   the Rust core, frames to Arrow record batches
- reference         the best plain-Python way: orjson + decimal.Decimal + pyarrow batches
- seed-style        json + one Python object per row (floats for money, as seeds do)
- rust parse-only   the same frames parsed into typed structs, no Arrow: the floor
- rust decode       the Rust decoder without the Python call around it
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ingestor  # noqa: E402
from benches.pipelines.seed_style import to_number  # noqa: E402
from tests import reference_decoder  # noqa: E402

CHUNK = 10_000  # frames per decode call, about what a collector cuts into one batch
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "BTCUSD"]
COINS = ["USDT", "USDC", "BTC", "ETH", "SOL"]


def money(rng: random.Random, whole: int, places: int) -> str:
    return f"{rng.uniform(0, whole):.{places}f}"


def position_element(rng: random.Random, now_ms: int, seq: int) -> dict:
    size = money(rng, 5, 3)
    entry = money(rng, 60_000, 2)
    return {
        "positionIdx": rng.choice([0, 1, 2]),
        "tradeMode": 0,
        "riskId": 1,
        "riskLimitValue": "2000000",
        "symbol": rng.choice(SYMBOLS),
        "side": rng.choice(["Buy", "Sell", ""]),
        "size": size,
        "entryPrice": entry,
        "sessionAvgPrice": "",
        "leverage": "10",
        "positionValue": money(rng, 300_000, 4),
        "positionBalance": money(rng, 30_000, 8),
        "markPrice": money(rng, 60_000, 2),
        "positionIM": money(rng, 30_000, 8),
        "positionIMByMp": money(rng, 30_000, 8),
        "positionMM": money(rng, 3_000, 8),
        "positionMMByMp": money(rng, 3_000, 8),
        "takeProfit": "0",
        "stopLoss": "0",
        "trailingStop": "0",
        "unrealisedPnl": money(rng, 1_000, 8),
        "curRealisedPnl": money(rng, 100, 8),
        "cumRealisedPnl": money(rng, 10_000, 8),
        "createdTime": str(now_ms - 86_400_000),
        "updatedTime": str(now_ms),
        "tpslMode": "Full",
        "liqPrice": "",
        "bustPrice": "",
        "category": "linear",
        "positionStatus": "Normal",
        "adlRankIndicator": 2,
        "autoAddMargin": 0,
        "leverageSysUpdatedTime": "",
        "mmrSysUpdatedTime": "",
        "seq": seq,
        "isReduceOnly": False,
    }


def wallet_element(rng: random.Random) -> dict:
    coins = []
    for coin in rng.sample(COINS, rng.randint(2, 5)):
        balance = money(rng, 50_000, 8)
        coins.append(
            {
                "coin": coin,
                "equity": balance,
                "usdValue": money(rng, 50_000, 8),
                "walletBalance": balance,
                "availableToWithdraw": "",
                "availableToBorrow": "",
                "borrowAmount": "0",
                "accruedInterest": "0",
                "totalOrderIM": "0",
                "totalPositionIM": money(rng, 1_000, 8),
                "totalPositionMM": money(rng, 100, 8),
                "unrealisedPnl": money(rng, 500, 8),
                "cumRealisedPnl": money(rng, 500, 8),
                "bonus": "0",
                "collateralSwitch": True,
                "marginCollateral": True,
                "locked": "0",
                "spotHedgingQty": "0",
            }
        )
    return {
        "accountIMRate": "0.0123",
        "accountIMRateByMp": "0.0123",
        "accountMMRate": "0.0012",
        "accountMMRateByMp": "0.0012",
        "totalEquity": money(rng, 100_000, 8),
        "totalWalletBalance": money(rng, 100_000, 8),
        "totalMarginBalance": money(rng, 100_000, 8),
        "totalAvailableBalance": money(rng, 100_000, 8),
        "totalPerpUPL": money(rng, 1_000, 8),
        "totalInitialMargin": money(rng, 5_000, 8),
        "totalInitialMarginByMp": money(rng, 5_000, 8),
        "totalMaintenanceMargin": money(rng, 500, 8),
        "totalMaintenanceMarginByMp": money(rng, 500, 8),
        "coin": coins,
        "accountLTV": "0",
        "accountType": "UNIFIED",
    }


def execution_element(rng: random.Random, now_ms: int, seq: int) -> dict:
    """A linear fill shaped like the newest documented one (2025: `extraFees`, `execPnl`)."""
    qty = money(rng, 5, 3)
    price = money(rng, 60_000, 1)
    return {
        "category": "linear",
        "symbol": rng.choice(SYMBOLS),
        "closedSize": qty,
        "execFee": money(rng, 30, 7),
        "execId": f"{rng.getrandbits(128):032x}",
        "execPrice": price,
        "execQty": qty,
        "execType": "Trade",
        "execValue": money(rng, 300_000, 2),
        "feeRate": "0.00055",
        "tradeIv": "",
        "markIv": "",
        "blockTradeId": "",
        "markPrice": money(rng, 60_000, 2),
        "indexPrice": "",
        "underlyingPrice": "",
        "leavesQty": "0",
        "orderId": f"{rng.getrandbits(128):032x}",
        "orderLinkId": "",
        "orderPrice": price,
        "orderQty": qty,
        "orderType": "Market",
        "stopOrderType": "UNKNOWN",
        "side": rng.choice(["Buy", "Sell"]),
        "execTime": str(now_ms - 2),
        "isLeverage": "0",
        "isMaker": False,
        "seq": seq,
        "marketUnit": "",
        "execPnl": money(rng, 100, 8),
        "createType": "CreateByUser",
        "extraFees": [
            {
                "feeCoin": "USDT",
                "feeType": "GST",
                "subFeeType": "IND_GST",
                "feeRate": "0.0000675",
                "fee": money(rng, 1, 9),
            }
        ],
        "feeCurrency": "USDT",
    }


def order_element(rng: random.Random, now_ms: int) -> dict:
    """A linear order version shaped like the newest documented one (`cumFeeDetail`, RPI)."""
    qty = money(rng, 5, 3)
    return {
        "category": "linear",
        "symbol": rng.choice(SYMBOLS),
        "orderId": f"{rng.getrandbits(128):032x}",
        "side": rng.choice(["Buy", "Sell"]),
        "orderType": "Limit",
        "cancelType": "UNKNOWN",
        "price": money(rng, 60_000, 1),
        "qty": qty,
        "orderIv": "",
        "timeInForce": "GTC",
        "orderStatus": rng.choice(["New", "PartiallyFilled", "Filled"]),
        "orderLinkId": "",
        "lastPriceOnCreated": money(rng, 60_000, 1),
        "reduceOnly": False,
        "leavesQty": qty,
        "leavesValue": money(rng, 300_000, 2),
        "cumExecQty": "0",
        "cumExecValue": "0",
        "avgPrice": "",
        "blockTradeId": "",
        "positionIdx": 0,
        "cumExecFee": money(rng, 30, 7),
        "closedPnl": "0",
        "createdTime": str(now_ms - 5_000),
        "updatedTime": str(now_ms),
        "rejectReason": "EC_NoError",
        "stopOrderType": "",
        "tpslMode": "",
        "triggerPrice": "",
        "takeProfit": "",
        "stopLoss": "",
        "tpTriggerBy": "",
        "slTriggerBy": "",
        "tpLimitPrice": "",
        "slLimitPrice": "",
        "triggerDirection": 0,
        "triggerBy": "",
        "closeOnTrigger": False,
        "placeType": "",
        "smpType": "None",
        "smpGroup": 0,
        "smpOrderId": "",
        "feeCurrency": "",
        "cumFeeDetail": {"USDT": money(rng, 30, 7)},
        "rpiTakerAccess": False,
        "rpiMatchedQty": "0",
    }


def make_frames(count: int, wallet_share: float, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    now_ms = 1_760_000_000_000
    frames = []
    for i in range(count):
        now_ms += rng.randint(0, 50)
        if rng.random() < wallet_share:
            topic, data = "wallet", [wallet_element(rng)]
        else:
            topic, data = "position", [position_element(rng, now_ms, 8_000_000 + i)]
        frames.append(
            orjson.dumps(
                {"id": f"{i:08x}-bench", "topic": topic, "creationTime": now_ms, "data": data}
            )
        )
    # Laid out back to back, as a reader allocates frames one after another off a socket.
    # Built one by one above, each frame sits among the generator's dicts, and reading them
    # cost every decoder here cache and TLB misses no receiver pays (ingestor.decode 1.23 vs
    # 0.87 µs a position push in one run).
    return b"\n".join(frames).split(b"\n")


def make_single_frames(count: int, topic: str, seed: int) -> list[bytes]:
    """`count` pushes of one element each of `topic` (position, execution or order)."""
    rng = random.Random(seed)
    now_ms = 1_760_000_000_000
    frames = []
    for i in range(count):
        now_ms += rng.randint(0, 50)
        if topic == "position":
            element = position_element(rng, now_ms, 8_000_000 + i)
        elif topic == "execution":
            element = execution_element(rng, now_ms, 8_000_000 + i)
        else:
            element = order_element(rng, now_ms)
        frames.append(
            orjson.dumps(
                {"id": f"{i:08x}-bench", "topic": topic, "creationTime": now_ms, "data": [element]}
            )
        )
    return b"\n".join(frames).split(b"\n")


class SeedRow:
    """One object per row, floats for money: how capture scripts usually start."""

    def __init__(self, account_id: str, fields: dict) -> None:
        self.account_id = account_id
        self.fields = {k: to_number(v) for k, v in fields.items() if k != "coin"}


def seed_style(frames: list[bytes]) -> int:
    rows = []
    for frame in frames:
        message = json.loads(frame)
        for element in message.get("data", []):
            if message.get("topic") == "wallet":
                rows.extend(SeedRow("acct", {**element, **c}) for c in element["coin"])
            else:
                rows.append(SeedRow("acct", element))
    return len(rows)


def reference(frames: list[bytes]) -> int:
    schemas = ingestor.schemas()
    tables = reference_decoder.decode(frames, "acct", 1_760_000_000_000_000)
    batches = [
        reference_decoder.to_batch(tables[name], schemas[name])
        for name in ("position_snapshots", "wallet_snapshots")
    ]
    return sum(b.num_rows for b in batches)


def ingestor_decode(frames: list[bytes]) -> int:
    out = ingestor.decode(frames, account_id="acct")
    assert out["rejects"].num_rows == 0, out["rejects"].to_pylist()[:1]
    return sum(batch.num_rows for name, batch in out.items() if name != "rejects")


def cpu_per_frame(fn: Callable[[list[bytes]], int], frames: list[bytes], rounds: int) -> float:
    """Best-of-`rounds` CPU seconds per frame, decoding in collector-sized chunks."""
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for i in range(0, len(frames), CHUNK):
            fn(frames[i : i + CHUNK])
        best = min(best, (time.process_time() - start) / len(frames))
    return best


def rust_floor(frames: list[bytes], *mode: str) -> Any:
    """decode_floor's figures for `frames` (a dict; with `mode` "decode", only the decoder's
    ns per frame)."""
    with tempfile.NamedTemporaryFile("wb", suffix=".ndjson", delete=False) as f:
        f.write(b"\n".join(frames))
    try:
        out = subprocess.run(
            [
                "cargo",
                "run",
                "--quiet",
                "--release",
                "-p",
                "ingestor-core",
                "--example",
                "decode_floor",
                "--",
                f.name,
                *mode,
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        os.unlink(f.name)
    return json.loads(out)


def report(title: str, frames: list[bytes], rounds: int, slow_rounds: int) -> list[str]:
    ours = cpu_per_frame(ingestor_decode, frames, rounds)
    results = [("ingestor.decode", ours)]
    results.append(
        ("reference (orjson+Decimal+pyarrow)", cpu_per_frame(reference, frames, slow_rounds))
    )
    results.append(
        ("seed-style (json+object per row)", cpu_per_frame(seed_style, frames, slow_rounds))
    )
    floor = rust_floor(frames)
    results.append(("rust decode (no Python call)", floor["decode_ns"] / 1e9))
    results.append(("rust parse-only (floor)", floor["parse_only_ns"] / 1e9))
    lines = [
        f"### {title}: {len(frames):,} frames",
        "",
        "| decoder | µs CPU / msg | msgs / s | ingestor.decode is |",
        "|---|---:|---:|---:|",
    ]
    for name, seconds in results:
        ratio = seconds / ours
        relation = (
            "—"
            if name == "ingestor.decode"
            else (f"{ratio:.1f}× faster" if ratio >= 1 else f"{1 / ratio:.2f}× slower")
        )
        lines.append(f"| {name} | {seconds * 1e6:.3f} | {1 / seconds:,.0f} | {relation} |")
    lines.append("")
    return lines


def report_per_element(count: int, rounds: int) -> list[str]:
    """Execution and order pushes against the position push, one element each, same run."""
    kinds = [("position", 8), ("execution", 9), ("order", 10)]
    timed = []
    for topic, seed in kinds:
        frames = make_single_frames(count, topic, seed)
        size = sum(map(len, frames)) / len(frames)
        ours = cpu_per_frame(ingestor_decode, frames, rounds)
        rust = rust_floor(frames, "decode") / 1e9
        timed.append((topic, size, ours, rust))
    position, rust_position = timed[0][2], timed[0][3]
    lines = [
        f"### per element: {count:,} pushes of one element each, by topic",
        "",
        "Goal: an execution or order element within 1.5× of a position push.",
        "",
        "| push | bytes / frame | ingestor.decode µs CPU | × position | rust decode µs "
        "| × position |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for topic, size, ours, rust in timed:
        lines.append(
            f"| {topic} | {size:,.0f} | {ours * 1e6:.3f} | {ours / position:.2f}× "
            f"| {rust * 1e6:.3f} | {rust / rust_position:.2f}× |"
        )
    lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5, help="best of N for the fast decoders")
    parser.add_argument("--slow-rounds", type=int, default=1, help="best of N for the baselines")
    parser.add_argument("--out", type=Path, default=ROOT / "benches" / "results" / "decode.md")
    args = parser.parse_args()

    lines = [
        "## Decode benchmark",
        "",
        f"`make bench-decode` on {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}. CPU time, best of rounds.",
        "",
    ]
    mixed = make_frames(args.frames, wallet_share=0.2)
    lines += report(
        "mixed (80% position, 20% multi-coin wallet)", mixed, args.rounds, args.slow_rounds
    )
    positions = make_frames(args.frames, wallet_share=0.0, seed=8)
    lines += report("position pushes only", positions, args.rounds, args.slow_rounds)
    lines += report_per_element(args.frames // 2, args.rounds)
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
