"""The simulated exchange's ground truth: instruments, prices, accounts, trades, balances.

Everything here is exact: amounts are `decimal.Decimal`, every computed value is quantised
the same way every time, so the state a client rebuilds from pushes and REST answers can be
compared to `Market.truth()` with `==` on Decimals.

Quantisation (the rules a reader of the truth needs):
- prices move on each instrument's tick; sizes are multiples of its quantity step;
- entry prices are the volume-weighted average (harmonic for inverse contracts), rounded
  half-even to 8 decimals;
- fees, realised PnL, balances, values and margins are rounded half-even to 8 decimals;
- decimal strings come from `dec_str`: plain notation (never an exponent), no trailing zeros,
  so zero is "0" and 1.50 is "1.5".

The market is a sequence of numbered steps. Step k's price moves and trades depend only on
the seed and k, never on wall-clock time, so the same seed and the same number of steps give
the same final state; only timestamps differ between runs. No network code lives here: the
server turns the `Event`s a step returns into pushes.
"""

from __future__ import annotations

import hashlib
import random
import string
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal

Category = Literal["linear", "inverse"]
Permission = Literal["read", "trade", "withdraw"]

EIGHT = Decimal("0.00000001")
ZERO = Decimal(0)
LEVERAGE = Decimal(10)
MAINTENANCE_RATE = Decimal("0.005")
TAKER_FEE = Decimal("0.00055")
MAKER_FEE = Decimal("0.0002")
#: Bybit's break-even formula takes the taker fee rate, but at least this.
BREAK_EVEN_FEE_FLOOR = Decimal("0.00055")
COINS = ("USDT", "BTC")


def q8(value: Decimal) -> Decimal:
    """Round to 8 decimals, half-even: the one rounding rule of every amount here."""
    return value.quantize(EIGHT, rounding=ROUND_HALF_EVEN)


def dec_str(value: Decimal) -> str:
    """Bybit-style decimal string: plain notation, no exponent, no trailing zeros."""
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


@dataclass(frozen=True)
class Instrument:
    """A tradable contract with its price grid and size grid."""

    symbol: str
    category: Category
    settle_coin: str
    tick: Decimal
    qty_step: Decimal
    start_price: Decimal
    max_lots: int

    @property
    def inverse(self) -> bool:
        """Inverse contracts are sized in USD and settle PnL in the base coin."""
        return self.category == "inverse"


INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument("BTCUSDT", "linear", "USDT", Decimal("0.1"), Decimal("0.001"), Decimal(60000), 50),
    Instrument("ETHUSDT", "linear", "USDT", Decimal("0.01"), Decimal("0.01"), Decimal(3000), 80),
    Instrument("SOLUSDT", "linear", "USDT", Decimal("0.01"), Decimal("0.1"), Decimal(150), 100),
    Instrument("BTCUSD", "inverse", "BTC", Decimal("0.5"), Decimal(1), Decimal(60000), 3000),
)
BY_SYMBOL: dict[str, Instrument] = {i.symbol: i for i in INSTRUMENTS}


@dataclass
class Position:
    """One position slot: (category, symbol, position_idx) of one account."""

    instrument: Instrument
    idx: int
    created_ms: int
    side: str = ""
    size: Decimal = ZERO
    entry: Decimal = ZERO
    cur_realised: Decimal = ZERO
    cum_realised: Decimal = ZERO
    updated_ms: int = 0
    seq: int = 0
    ever_open: bool = False
    #: When the current holding opened (Bybit's `openTime`); 0 while flat, Bybit's default.
    opened_ms: int = 0

    @property
    def key(self) -> tuple[str, str, int]:
        """The natural key of a position on Bybit."""
        return (self.instrument.category, self.instrument.symbol, self.idx)

    def value(self) -> Decimal:
        """Position value at entry: USDT for linear, BTC for inverse."""
        if self.size == 0:
            return ZERO
        if self.instrument.inverse:
            return q8(self.size / self.entry)
        return q8(self.size * self.entry)

    def unrealised(self, mark: Decimal) -> Decimal:
        """Unrealised PnL at `mark`, in the settle coin."""
        if self.size == 0:
            return ZERO
        direction = 1 if self.side == "Buy" else -1
        if self.instrument.inverse:
            return q8(direction * (self.size / self.entry - self.size / mark))
        return q8(direction * (mark - self.entry) * self.size)

    def initial_margin(self) -> Decimal:
        """Initial margin of the position at the fixed leverage."""
        return q8(self.value() / LEVERAGE)

    def maintenance_margin(self) -> Decimal:
        """Maintenance margin of the position at the fixed rate."""
        return q8(self.value() * MAINTENANCE_RATE)

    def break_even(self) -> Decimal | None:
        """The price at which closing the whole position at the taker fee leaves the current
        holding's realised PnL at zero (Bybit's `breakEvenPrice`); None while flat.

        Bybit's formula for linear contracts, (entry * qty - realised) / (qty - |qty| * fee)
        with qty negative when short; inverse ones solve the same balance in the coin:
        qty * (1 +- fee) / (qty / entry +- realised).
        """
        if self.size == 0:
            return None
        fee = max(TAKER_FEE, BREAK_EVEN_FEE_FLOOR)
        long = self.side == "Buy"
        if self.instrument.inverse:
            numerator = self.size * (1 + fee if long else 1 - fee)
            denominator = self.size / self.entry + (
                self.cur_realised if long else -self.cur_realised
            )
        else:
            qty = self.size if long else -self.size
            numerator = self.entry * qty - self.cur_realised
            denominator = qty - self.size * fee
        if denominator == 0 or numerator / denominator <= 0:
            return None
        return q8(numerator / denominator)


@dataclass
class CoinBalance:
    """One coin of a unified wallet."""

    coin: str
    wallet_balance: Decimal
    cum_realised: Decimal = ZERO


@dataclass
class Account:
    """A simulated account with its key, position mode and book."""

    account_id: str
    api_key: str
    api_secret: str
    hedge: bool
    permission: Permission
    user_id: int
    created_ms: int
    coins: dict[str, CoinBalance] = field(default_factory=dict)
    positions: dict[tuple[str, str, int], Position] = field(default_factory=dict)

    def __repr__(self) -> str:
        """Never show the secret, not even in a traceback."""
        return f"Account({self.account_id!r}, key={self.api_key!r}, hedge={self.hedge})"

    def slots(self, instrument: Instrument) -> tuple[int, ...]:
        """The position indexes this account has for an instrument (hedge: linear only)."""
        if self.hedge and not instrument.inverse:
            return (1, 2)
        return (0,)

    def position(self, instrument: Instrument, idx: int, now_ms: int) -> Position:
        """The position slot, created flat on first use (as Bybit reports never-traded ones)."""
        key = (instrument.category, instrument.symbol, idx)
        pos = self.positions.get(key)
        if pos is None:
            pos = Position(instrument, idx, created_ms=now_ms, updated_ms=now_ms)
            self.positions[key] = pos
        return pos


@dataclass(frozen=True)
class Fill:
    """One execution of one order, with everything the pushes need to describe it."""

    order_id: str
    exec_id: str
    instrument: Instrument
    idx: int
    side: str
    qty: Decimal
    price: Decimal
    fee: Decimal
    fee_rate: Decimal
    is_maker: bool
    closed_size: Decimal
    exec_pnl: Decimal
    time_ms: int
    seq: int

    @property
    def order_type(self) -> str:
        """Maker fills come from resting limit orders, taker fills from market orders."""
        return "Limit" if self.is_maker else "Market"

    @property
    def value(self) -> Decimal:
        """Executed value in the settle coin."""
        if self.instrument.inverse:
            return q8(self.qty / self.price)
        return q8(self.qty * self.price)


@dataclass(frozen=True)
class CancelledOrder:
    """A limit order that was placed and cancelled: on Bybit this still pushes the position."""

    order_id: str
    instrument: Instrument
    idx: int
    side: str
    qty: Decimal
    price: Decimal
    time_ms: int


@dataclass(frozen=True)
class Event:
    """A state change of one account, for the server to push."""

    account_id: str
    kind: Literal["fill", "cancel", "mark"]
    position: Position | None = None
    fill: Fill | None = None
    cancel: CancelledOrder | None = None


def _key_material(seed: int, index: int, what: str, length: int) -> str:
    """Deterministic, Bybit-shaped key or secret text (letters and digits)."""
    alphabet = string.ascii_letters + string.digits
    digest = hashlib.sha256(f"ingestor.sim:{seed}:{index}:{what}".encode()).digest()
    digest += hashlib.sha256(digest).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:length])


def make_accounts(
    count: int,
    seed: int,
    *,
    hedge_ratio: float,
    permissions: dict[str, Permission] | None,
    now_ms: int,
) -> list[Account]:
    """The run's accounts: ids `sim-0001`..., keys from the seed, a seeded mix of modes.

    Permissions default to a mix (mostly read-only, some trade, a few withdraw) so a client
    can be tested on warning about over-privileged keys; `permissions` overrides per id.
    """
    rng = random.Random(f"{seed}:accounts")
    accounts = []
    for i in range(1, count + 1):
        account_id = f"sim-{i:04d}"
        default: Permission = "withdraw" if i % 10 == 0 else "trade" if i % 5 == 0 else "read"
        permission = (permissions or {}).get(account_id, default)
        account = Account(
            account_id=account_id,
            api_key=_key_material(seed, i, "key", 18),
            api_secret=_key_material(seed, i, "secret", 36),
            hedge=rng.random() < hedge_ratio,
            permission=permission,
            user_id=100000000 + rng.randrange(10**8),
            created_ms=now_ms,
        )
        usdt = Decimal(rng.randrange(5_000, 50_000))
        btc = Decimal(rng.randrange(10_000_000, 100_000_000)) * EIGHT
        account.coins = {"USDT": CoinBalance("USDT", usdt), "BTC": CoinBalance("BTC", btc)}
        accounts.append(account)
    return accounts


class Market:
    """Seeded prices and trading of every account; the single owner of the true state."""

    def __init__(
        self,
        accounts: list[Account],
        seed: int,
        *,
        trade_probability: float,
        cancel_probability: float = 0.05,
    ) -> None:
        self.accounts = {a.account_id: a for a in accounts}
        self.prices: dict[str, Decimal] = {i.symbol: i.start_price for i in INSTRUMENTS}
        self.steps = 0
        self._rng = random.Random(f"{seed}:market")
        self._trade_probability = trade_probability
        self._cancel_probability = cancel_probability
        self._seq: dict[str, int] = {
            i.symbol: 1_000_000 * (n + 1) for n, i in enumerate(INSTRUMENTS)
        }

    def _uuid(self) -> str:
        """Order and execution ids: UUID-shaped, drawn from the market's seeded stream."""
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _next_seq(self, symbol: str) -> int:
        """Bybit's cross sequence: strictly increasing per symbol across all accounts."""
        self._seq[symbol] += self._rng.randint(1, 7)
        return self._seq[symbol]

    def step(self, now_ms: int) -> list[Event]:
        """Advance one step: move every price, then let each account maybe trade."""
        self.steps += 1
        rng = self._rng
        for inst in INSTRUMENTS:
            ticks = round(rng.gauss(0, 4))
            floor = inst.start_price / 4
            self.prices[inst.symbol] = max(floor, self.prices[inst.symbol] + ticks * inst.tick)
        events: list[Event] = []
        for account in self.accounts.values():
            roll = rng.random()
            if roll < self._trade_probability:
                events.extend(self._trade(account, now_ms))
            elif roll < self._trade_probability + self._cancel_probability:
                events.extend(self._place_and_cancel(account, now_ms))
        return events

    def _trade(self, account: Account, now_ms: int) -> Iterator[Event]:
        """One taker or maker fill that opens, grows, reduces, closes or flips a position."""
        rng = self._rng
        inst = rng.choice(INSTRUMENTS)
        idx = rng.choice(account.slots(inst))
        pos = account.position(inst, idx, now_ms)
        price = self.prices[inst.symbol]
        lots = rng.randint(1, inst.max_lots)
        qty = inst.qty_step * lots
        if idx == 0:
            side = rng.choice(("Buy", "Sell"))
            if pos.size > 0 and rng.random() < 0.25:
                side, qty = ("Sell" if pos.side == "Buy" else "Buy"), pos.size
        else:
            # Hedge mode: slot 1 is the long side, slot 2 the short side; a trade either
            # opens/adds on the slot's side or reduces it, never flips it.
            opening = "Buy" if idx == 1 else "Sell"
            closing = "Sell" if idx == 1 else "Buy"
            if pos.size > 0 and rng.random() < 0.4:
                side, qty = closing, min(qty, pos.size)
                if rng.random() < 0.4:
                    qty = pos.size
            else:
                side = opening
        is_maker = rng.random() < 0.3
        fee_rate = MAKER_FEE if is_maker else TAKER_FEE
        fill = self._apply(account, pos, side, qty, price, fee_rate, is_maker, now_ms)
        yield Event(account.account_id, "fill", position=pos, fill=fill)

    def _apply(
        self,
        account: Account,
        pos: Position,
        side: str,
        qty: Decimal,
        price: Decimal,
        fee_rate: Decimal,
        is_maker: bool,
        now_ms: int,
    ) -> Fill:
        """Book a fill: position size/side/entry, realised PnL and fee into the wallet."""
        inst = pos.instrument
        value = q8(qty / price) if inst.inverse else q8(qty * price)
        fee = q8(value * fee_rate)
        closed = ZERO
        pnl = ZERO
        flipped = False
        opening = pos.size == 0
        if pos.size > 0 and pos.side != side:
            closed = min(qty, pos.size)
            direction = 1 if pos.side == "Buy" else -1
            if inst.inverse:
                pnl = q8(direction * (closed / pos.entry - closed / price))
            else:
                pnl = q8(direction * (price - pos.entry) * closed)
            pos.size -= closed
            remainder = qty - closed
            if pos.size == 0:
                pos.side, pos.entry = "", ZERO
            if remainder > 0:
                pos.side, pos.size, pos.entry = side, remainder, price
                flipped = True
        elif pos.size > 0:
            new_size = pos.size + qty
            if inst.inverse:
                pos.entry = q8(new_size / (pos.size / pos.entry + qty / price))
            else:
                pos.entry = q8((pos.size * pos.entry + qty * price) / new_size)
            pos.size = new_size
        else:
            pos.side, pos.size, pos.entry = side, qty, price
        booked = pnl - fee
        coin = account.coins[inst.settle_coin]
        coin.wallet_balance += booked
        coin.cum_realised += booked
        pos.cum_realised += booked
        # curRealisedPnl belongs to the current holding: a close or a flip starts it afresh.
        pos.cur_realised = ZERO if pos.size == 0 or flipped else pos.cur_realised + booked
        if pos.size > 0:
            pos.ever_open = True
        # A new holding (opened from flat, or the remainder of a flip) has its own open time.
        if pos.size == 0:
            pos.opened_ms = 0
        elif flipped or opening:
            pos.opened_ms = now_ms
        pos.updated_ms = now_ms
        pos.seq = self._next_seq(inst.symbol)
        return Fill(
            order_id=self._uuid(),
            exec_id=self._uuid(),
            instrument=inst,
            idx=pos.idx,
            side=side,
            qty=qty,
            price=price,
            fee=fee,
            fee_rate=fee_rate,
            is_maker=is_maker,
            closed_size=closed,
            exec_pnl=pnl,
            time_ms=now_ms,
            seq=pos.seq,
        )

    def _place_and_cancel(self, account: Account, now_ms: int) -> Iterator[Event]:
        """A limit order placed away from the market and cancelled, on a known position.

        Only positions that were opened before are used, so that the "position push even when
        nothing changed" quirk never makes a client record a position absent from the truth.
        """
        known = [p for p in account.positions.values() if p.ever_open]
        if not known:
            return
        rng = self._rng
        pos = rng.choice(known)
        inst = pos.instrument
        side = rng.choice(("Buy", "Sell"))
        offset = inst.tick * rng.randint(50, 500)
        price = self.prices[inst.symbol] + (-offset if side == "Buy" else offset)
        order = CancelledOrder(
            order_id=self._uuid(),
            instrument=inst,
            idx=pos.idx,
            side=side,
            qty=inst.qty_step * rng.randint(1, inst.max_lots),
            price=max(inst.tick, price),
            time_ms=now_ms,
        )
        yield Event(account.account_id, "cancel", position=pos, cancel=order)

    def closing_marks(self) -> list[Event]:
        """One wallet event per account when the market stops.

        Bybit does not push for unrealised-PnL changes alone, so without this a connected
        client would hold the equity of its last trade while REST (and the truth) show the
        equity at the final marks. The closing mark makes both agree.
        """
        return [Event(account_id, "mark") for account_id in self.accounts]

    def usd_price(self, coin: str) -> Decimal:
        """USD value of one coin: USDT at par, BTC at the BTCUSDT mark."""
        return Decimal(1) if coin == "USDT" else self.prices["BTCUSDT"]

    def coin_unrealised(self, account: Account, coin: str) -> Decimal:
        """Unrealised PnL of every open position settled in `coin`."""
        return sum(
            (
                p.unrealised(self.prices[p.instrument.symbol])
                for p in account.positions.values()
                if p.instrument.settle_coin == coin
            ),
            ZERO,
        )

    def coin_equity(self, account: Account, coin: str) -> Decimal:
        """Wallet balance plus unrealised PnL at the current marks."""
        return account.coins[coin].wallet_balance + self.coin_unrealised(account, coin)

    def truth(self) -> dict[str, list[dict[str, str | int]]]:
        """The final state in the documented truth shape (see the package docstring)."""
        positions: list[dict[str, str | int]] = []
        wallets: list[dict[str, str | int]] = []
        for account in self.accounts.values():
            for pos in sorted(account.positions.values(), key=lambda p: p.key):
                if not pos.ever_open:
                    continue
                positions.append(
                    {
                        "account_id": account.account_id,
                        "category": pos.instrument.category,
                        "symbol": pos.instrument.symbol,
                        "position_idx": pos.idx,
                        "side": pos.side,
                        "size": dec_str(pos.size),
                        "entry_price": dec_str(pos.entry),
                    }
                )
            for coin in COINS:
                wallets.append(
                    {
                        "account_id": account.account_id,
                        "coin": coin,
                        "wallet_balance": dec_str(account.coins[coin].wallet_balance),
                        "equity": dec_str(self.coin_equity(account, coin)),
                    }
                )
        return {"positions": positions, "wallets": wallets}
