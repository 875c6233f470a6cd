"""The simulator's newer position and wallet fields (`breakEvenPrice`, `openTime`, `colRes`):
consistent with the holding they describe, and decoded by the capture into their columns."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson

import ingestor
from ingestor.sim import protocol as p
from ingestor.sim.market import TAKER_FEE, Execution, Market, Position, make_accounts

START_MS = 1_780_000_000_000


def test_break_even_and_open_time_follow_each_holding() -> None:
    accounts = make_accounts(4, 5, hedge_ratio=0.5, permissions=None, now_ms=START_MS)
    market = Market(accounts, 5, trade_probability=0.9)
    opened: dict[tuple[str, tuple[str, str, int]], int] = {}
    checked = 0
    for step in range(1, 400):
        now = START_MS + step * 1000
        for event in market.step(now):
            execution = event.executions[0] if event.kind == "fill" else None
            for pos in event.positions:
                checked += check_position(pos, market, now, opened, event.account_id, execution)
    assert checked > 100


def check_position(
    pos: Position,
    market: Market,
    now: int,
    opened: dict[tuple[str, tuple[str, str, int]], int],
    account_id: str,
    execution: Execution | None,
) -> int:
    """Check one pushed position's openTime and breakEvenPrice; 1 if it was open."""
    mark = market.prices[pos.instrument.symbol]
    element = p.position_push_element(pos, mark)
    assert isinstance(element["openTime"], int)
    key = (account_id, pos.key)
    if pos.size == 0:
        assert element["openTime"] == 0 and element["breakEvenPrice"] == ""
        opened.pop(key, None)
        return 0
    # The open time is the holding's: new when it opens from flat or flips, kept while it
    # grows or shrinks (or an order is cancelled on it, or it pays funding).
    flipped = execution is not None and execution.closed_size > 0 and execution.side == pos.side
    if key not in opened or flipped:
        assert element["openTime"] == now, element
    else:
        assert element["openTime"] == opened[key], element
    opened[key] = element["openTime"]
    # Closing all of it at the break-even price, at the taker fee, nets the holding's
    # realised PnL (fees and funding included) to zero, up to the 8-decimal rounding.
    price = Decimal(element["breakEvenPrice"])
    direction = 1 if pos.side == "Buy" else -1
    if pos.instrument.inverse:
        pnl = direction * (pos.size / pos.entry - pos.size / price)
        fee = pos.size / price * TAKER_FEE
    else:
        pnl = direction * (price - pos.entry) * pos.size
        fee = price * pos.size * TAKER_FEE
    net = pos.cur_realised + pnl - fee
    assert abs(net) <= pos.size * Decimal("1e-8"), (element, net)
    return 1


def test_the_capture_decodes_the_new_fields() -> None:
    accounts = make_accounts(2, 8, hedge_ratio=0.0, permissions=None, now_ms=START_MS)
    market = Market(accounts, 8, trade_probability=1.0)
    events = [e for step in range(1, 20) for e in market.step(START_MS + step * 1000)]
    pushes, rests = [], []
    for n, pos in enumerate(pos for event in events for pos in event.positions):
        mark = market.prices[pos.instrument.symbol]
        push = p.envelope(f"m{n}", "position", START_MS, [p.position_push_element(pos, mark)])
        pushes.append(orjson.dumps(push))
        rests.append(p.position_rest_element(pos, mark))
    account = market.accounts[accounts[0].account_id]
    pushes.append(
        orjson.dumps(p.envelope("w", "wallet", START_MS, [p.wallet_element(market, account)]))
    )
    out = ingestor.decode(pushes, account_id="a", received_at=datetime.now(UTC))
    assert out["rejects"].num_rows == 0
    rows = out["position_snapshots"].to_pylist()
    assert len(rows) == len(rests)
    for row, element in zip(rows, rests, strict=True):
        want = element["breakEvenPrice"]
        assert row["break_even_price"] == (Decimal(want) if want else None)
        opened = datetime.fromtimestamp(element["openTime"] / 1000, UTC)
        assert row["open_ts"] == opened
    coins = out["wallet_snapshots"].to_pylist()
    assert coins and all(c["col_res"] == 0 for c in coins)
