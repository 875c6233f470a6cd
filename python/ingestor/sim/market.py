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

Orders and executions. Every trade is an `Order` with versions: a taker (Market) order fills
at once (its one version pushed: Filled); a maker (Limit) order now and then rests and fills
in 2-3 executions over later steps (New, PartiallyFilled..., Filled), or is cancelled while
partly filled (Cancelled with cumExecQty > 0: Bybit's `PartiallyFilledCanceled` is a spot
status, derivatives say Cancelled); a limit order placed away from the market is cancelled
unfilled (New, Cancelled). An account with a working order does nothing else until it ends.
Every execution of an order is at the order's price, so its avgPrice is that price. Now and
then a fill's Filled version is pushed twice, identical (a cancel racing the fill). Now and
then an open position is liquidated (`BustTrade` at the bust price, taker fee) or
auto-deleveraged (`AdlTrade` at the mark, no fee). Every `funding_every` steps each open
position pays or receives funding (`Funding`: execQty the position size, execPrice the mark,
side the position's, feeRate the rate the account pays (the symbol's rate for a long, its
negation for a short), execFee = execValue x feeRate: positive paid, negative received;
closedSize and execPnl 0; orderId `<funding time s>-<symbol>-<round>-<side>`, no order).

The ledger identity (what a client can check): a coin's walletBalance changes only through
executions, by execPnl - execFee each, so over a run

    walletBalance(end) - walletBalance(start) = sum(execPnl) - sum(execFee)

over the account's executions settled in that coin (Trade, BustTrade, AdlTrade, Funding).
execPnl is Bybit's (the transaction log's cashFlow): the PnL of the closed part, closedSize x
(price - entry) for a long, the opposite for a short (inverse: closedSize x (1/entry -
1/price)), rounded to 8 decimals; 0 on opening fills and on Funding. execFee is the trading
fee (execValue x feeRate, rounded to 8 decimals) or, on Funding, the funding fee: realised
PnL - fees - funding is sum(execPnl) - sum(execFee). A position's and a coin's
cumRealisedPnl move by the same amounts.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import string
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
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
#: A maker order that rests and fills in 2-3 executions over later steps, this often.
PARTIAL_PROBABILITY = 0.3
#: An order's Filled version pushed twice (a cancel racing the last fill), this often.
DOUBLE_FILLED_PROBABILITY = 0.05
#: Liquidations and ADLs per step of an account, as a share of its trade probability.
LIQUIDATION_SHARE = 0.02
ADL_SHARE = 0.02
#: Default steps between fundings: 5 s at the default 0.05 s tick, so a 30 s run funds 6 times.
DEFAULT_FUNDING_EVERY = 100
#: Funding rates are drawn per symbol and round from this range, in millionths.
FUNDING_RATE_MICROS = (-300, 500)
MICRO = Decimal("0.000001")
OPEN_STATUSES = ("New", "PartiallyFilled")
CREATE_BY_USER = "CreateByUser"
CREATE_BY_LIQ = "CreateByLiq"
CREATE_BY_ADL = "CreateByAdl_PassThrough"


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
    #: Every order's latest version, in placement order.
    orders: dict[str, Order] = field(default_factory=dict)
    #: Every execution, in the order they happened.
    executions: list[Execution] = field(default_factory=list)
    #: The order still being filled, if any (the account trades nothing else meanwhile).
    working: str | None = None

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
class Order:
    """One version of an order; the market replaces it (`dataclasses.replace`) on every change.

    `pending` holds the sizes of the executions still to come (the market's plan, not Bybit's).
    """

    order_id: str
    instrument: Instrument
    idx: int
    side: str
    order_type: Literal["Limit", "Market"]
    price: Decimal
    qty: Decimal
    created_ms: int
    updated_ms: int
    create_type: str = CREATE_BY_USER
    status: str = "New"
    cancel_type: str = "UNKNOWN"
    cum_qty: Decimal = ZERO
    cum_value: Decimal = ZERO
    cum_fee: Decimal = ZERO
    #: Realised PnL minus fees of the order's closing executions (Bybit's `closedPnl`).
    closed_pnl: Decimal = ZERO
    pending: tuple[Decimal, ...] = ()

    @property
    def is_open(self) -> bool:
        """New or PartiallyFilled: still on the book."""
        return self.status in OPEN_STATUSES

    @property
    def leaves_qty(self) -> Decimal:
        """What is left to fill; 0 once the order has ended, however it ended."""
        return self.qty - self.cum_qty if self.is_open else ZERO

    def value_of(self, qty: Decimal) -> Decimal:
        """The settle-coin value of `qty` at the order's price."""
        return value_at(self.instrument, qty, self.price)


def value_at(instrument: Instrument, qty: Decimal, price: Decimal) -> Decimal:
    """Value of `qty` contracts at `price` in the settle coin: USDT linear, BTC inverse."""
    return q8(qty / price) if instrument.inverse else q8(qty * price)


@dataclass(frozen=True)
class Execution:
    """One execution of an account: a fill of an order, a liquidation, an ADL or a funding."""

    account_id: str
    exec_id: str
    exec_type: Literal["Trade", "BustTrade", "AdlTrade", "Funding"]
    order_id: str
    instrument: Instrument
    idx: int
    side: str
    qty: Decimal
    price: Decimal
    value: Decimal
    fee: Decimal
    fee_rate: Decimal
    is_maker: bool
    closed_size: Decimal
    exec_pnl: Decimal
    mark: Decimal
    time_ms: int
    seq: int
    #: The order's type, price, size and what it has left after this execution; "UNKNOWN"
    #: and zeros for Funding, which belongs to no order (as Bybit lists it).
    order_type: str
    order_price: Decimal
    order_qty: Decimal
    leaves_qty: Decimal
    create_type: str


@dataclass(frozen=True)
class Event:
    """A state change of one account, for the server to push.

    fill: order versions (in order), one execution, its position, then the wallet;
    cancel: order versions, each followed by the position (Bybit pushes it on every order
    change); funding: the executions, the funded positions, the wallet; mark: the wallet.
    """

    account_id: str
    kind: Literal["fill", "cancel", "funding", "mark"]
    positions: tuple[Position, ...] = ()
    orders: tuple[Order, ...] = ()
    executions: tuple[Execution, ...] = ()


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


def bust_price(pos: Position) -> Decimal:
    """Where the position's initial margin is gone at the fixed leverage, on the tick grid:
    entry x (1 - 1/leverage) for a long, x (1 + 1/leverage) for a short."""
    inst = pos.instrument
    step = 1 / LEVERAGE if pos.side == "Sell" else -1 / LEVERAGE
    ticks = (pos.entry * (1 + step) / inst.tick).quantize(Decimal(1), ROUND_HALF_EVEN)
    return max(inst.tick, ticks * inst.tick)


class Market:
    """Seeded prices and trading of every account; the single owner of the true state."""

    def __init__(
        self,
        accounts: list[Account],
        seed: int,
        *,
        trade_probability: float,
        cancel_probability: float = 0.05,
        funding_every: int = DEFAULT_FUNDING_EVERY,
    ) -> None:
        """funding_every: steps between fundings (0: never)."""
        self.accounts = {a.account_id: a for a in accounts}
        self.prices: dict[str, Decimal] = {i.symbol: i.start_price for i in INSTRUMENTS}
        self.steps = 0
        self.fundings = 0
        self._rng = random.Random(f"{seed}:market")
        self._trade_probability = trade_probability
        self._cancel_probability = cancel_probability
        self._funding_every = funding_every
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
        """Advance one step: move every price, let each account maybe act, maybe fund."""
        self.steps += 1
        rng = self._rng
        for inst in INSTRUMENTS:
            ticks = round(rng.gauss(0, 4))
            floor = inst.start_price / 4
            self.prices[inst.symbol] = max(floor, self.prices[inst.symbol] + ticks * inst.tick)
        trade, cancel = self._trade_probability, self._cancel_probability
        liquidate = trade * LIQUIDATION_SHARE
        events: list[Event] = []
        for account in self.accounts.values():
            roll = rng.random()
            if account.working is not None:
                order = account.orders[account.working]
                if roll < trade:
                    events.append(self._execute(account, order, now_ms))
                elif roll < trade + cancel:
                    events.append(self._cancel_working(account, order, now_ms))
            elif roll < trade:
                events.append(self._trade(account, now_ms))
            elif roll < trade + cancel:
                events.extend(self._place_and_cancel(account, now_ms))
            elif roll < trade + cancel + liquidate:
                events.extend(self._forced_close(account, "BustTrade", now_ms))
            elif roll < trade + cancel + liquidate + trade * ADL_SHARE:
                events.extend(self._forced_close(account, "AdlTrade", now_ms))
        # Funding comes last in its step, so the pushes of the step's trades already show it.
        if self._funding_every and self.steps % self._funding_every == 0:
            events.extend(self._funding(now_ms))
        return events

    def _trade(self, account: Account, now_ms: int) -> Event:
        """A new order that opens, grows, reduces, closes or flips a position."""
        rng = self._rng
        inst = rng.choice(INSTRUMENTS)
        idx = rng.choice(account.slots(inst))
        pos = account.position(inst, idx, now_ms)
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
        pieces: tuple[Decimal, ...] = (qty,)
        if is_maker and qty >= 2 * inst.qty_step and rng.random() < PARTIAL_PROBABILITY:
            pieces = self._pieces(inst, qty)
        order = Order(
            order_id=self._uuid(),
            instrument=inst,
            idx=idx,
            side=side,
            order_type="Limit" if is_maker else "Market",
            price=self.prices[inst.symbol],
            qty=qty,
            created_ms=now_ms,
            updated_ms=now_ms,
            pending=pieces,
        )
        # A resting order is seen New first; one filled at once pushes only its end state.
        return self._execute(account, order, now_ms, placed=len(pieces) > 1)

    def _pieces(self, inst: Instrument, qty: Decimal) -> tuple[Decimal, ...]:
        """`qty` cut into 2 or 3 positive multiples of the quantity step."""
        lots = int(qty / inst.qty_step)
        count = min(lots, self._rng.choice((2, 3)))
        cuts = sorted(self._rng.sample(range(1, lots), count - 1))
        bounds = [0, *cuts, lots]
        return tuple(inst.qty_step * (b - a) for a, b in itertools.pairwise(bounds))

    def _execute(
        self,
        account: Account,
        order: Order,
        now_ms: int,
        *,
        placed: bool = False,
        exec_type: Literal["Trade", "BustTrade", "AdlTrade"] = "Trade",
    ) -> Event:
        """The order's next planned execution, booked, and the order's new version."""
        qty, rest = order.pending[0], order.pending[1:]
        pos = account.position(order.instrument, order.idx, now_ms)
        execution = self._apply(account, pos, order, qty, exec_type, now_ms)
        versions = (order,) if placed else ()
        order = replace(
            order,
            status="PartiallyFilled" if rest else "Filled",
            cum_qty=order.cum_qty + qty,
            cum_value=order.cum_value + execution.value,
            cum_fee=order.cum_fee + execution.fee,
            closed_pnl=order.closed_pnl
            + (execution.exec_pnl - execution.fee if execution.closed_size else ZERO),
            pending=rest,
            updated_ms=now_ms,
        )
        account.orders[order.order_id] = order
        account.working = order.order_id if rest else None
        versions += (order,)
        if not rest and self._rng.random() < DOUBLE_FILLED_PROBABILITY:
            versions += (order,)
        return Event(
            account.account_id,
            "fill",
            positions=(pos,),
            orders=versions,
            executions=(execution,),
        )

    def _apply(
        self,
        account: Account,
        pos: Position,
        order: Order,
        qty: Decimal,
        exec_type: Literal["Trade", "BustTrade", "AdlTrade"],
        now_ms: int,
    ) -> Execution:
        """Book one execution: position size/side/entry, realised PnL and fee into the wallet."""
        inst = pos.instrument
        side, price = order.side, order.price
        is_maker = order.order_type == "Limit"
        # Bybit charges no fee on an ADL; a liquidation pays the taker rate.
        fee_rate = ZERO if exec_type == "AdlTrade" else MAKER_FEE if is_maker else TAKER_FEE
        value = value_at(inst, qty, price)
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
        execution = Execution(
            account_id=account.account_id,
            exec_id=self._uuid(),
            exec_type=exec_type,
            order_id=order.order_id,
            instrument=inst,
            idx=pos.idx,
            side=side,
            qty=qty,
            price=price,
            value=value,
            fee=fee,
            fee_rate=fee_rate,
            is_maker=is_maker,
            closed_size=closed,
            exec_pnl=pnl,
            mark=self.prices[inst.symbol],
            time_ms=now_ms,
            seq=pos.seq,
            order_type=order.order_type,
            order_price=price,
            order_qty=order.qty,
            leaves_qty=order.qty - order.cum_qty - qty,
            create_type=order.create_type,
        )
        account.executions.append(execution)
        return execution

    def _cancel_working(self, account: Account, order: Order, now_ms: int) -> Event:
        """The partly filled order is cancelled: Cancelled, with what it did fill."""
        cancelled = replace(
            order, status="Cancelled", cancel_type="CancelByUser", pending=(), updated_ms=now_ms
        )
        account.orders[order.order_id] = cancelled
        account.working = None
        pos = account.position(order.instrument, order.idx, now_ms)
        return Event(account.account_id, "cancel", positions=(pos,), orders=(cancelled,))

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
        placed = Order(
            order_id=self._uuid(),
            instrument=inst,
            idx=pos.idx,
            side=side,
            order_type="Limit",
            price=max(inst.tick, price),
            qty=inst.qty_step * rng.randint(1, inst.max_lots),
            created_ms=now_ms,
            updated_ms=now_ms,
        )
        cancelled = replace(placed, status="Cancelled", cancel_type="CancelByUser")
        account.orders[placed.order_id] = cancelled
        yield Event(account.account_id, "cancel", positions=(pos,), orders=(placed, cancelled))

    def _forced_close(
        self, account: Account, exec_type: Literal["BustTrade", "AdlTrade"], now_ms: int
    ) -> Iterator[Event]:
        """Close one open position by the exchange: a liquidation at the bust price, or an
        auto-deleverage at the mark. Neither depends on the price having got there: the
        simulator only needs them to happen now and then, with Bybit's shapes."""
        open_positions = [p for p in account.positions.values() if p.size > 0]
        if not open_positions:
            return
        pos = self._rng.choice(open_positions)
        inst = pos.instrument
        price = self.prices[inst.symbol] if exec_type == "AdlTrade" else bust_price(pos)
        order = Order(
            order_id=self._uuid(),
            instrument=inst,
            idx=pos.idx,
            side="Sell" if pos.side == "Buy" else "Buy",
            order_type="Market",
            price=price,
            qty=pos.size,
            created_ms=now_ms,
            updated_ms=now_ms,
            create_type=CREATE_BY_LIQ if exec_type == "BustTrade" else CREATE_BY_ADL,
            pending=(pos.size,),
        )
        yield self._execute(account, order, now_ms, exec_type=exec_type)

    def _funding(self, now_ms: int) -> Iterator[Event]:
        """Every open position pays (or receives) its symbol's funding at the mark."""
        self.fundings += 1
        low, high = FUNDING_RATE_MICROS
        rates = {i.symbol: self._rng.randint(low, high) * MICRO for i in INSTRUMENTS}
        for account in self.accounts.values():
            # One event per category: its pushes go to that category's topics.
            for category in ("linear", "inverse"):
                funded = tuple(
                    p
                    for p in account.positions.values()
                    if p.size > 0 and p.instrument.category == category
                )
                if funded:
                    executions = tuple(
                        self._fund(account, pos, rates[pos.instrument.symbol], now_ms)
                        for pos in funded
                    )
                    yield Event(
                        account.account_id, "funding", positions=funded, executions=executions
                    )

    def _fund(self, account: Account, pos: Position, rate: Decimal, now_ms: int) -> Execution:
        """Book one funding: the fee leaves (or, negative, enters) the wallet."""
        inst = pos.instrument
        mark = self.prices[inst.symbol]
        # A positive rate: longs pay shorts. feeRate is the rate from the account's side.
        fee_rate = rate if pos.side == "Buy" else -rate
        value = value_at(inst, pos.size, mark)
        fee = q8(value * fee_rate)
        coin = account.coins[inst.settle_coin]
        coin.wallet_balance -= fee
        coin.cum_realised -= fee
        pos.cum_realised -= fee
        pos.cur_realised -= fee
        pos.updated_ms = now_ms
        pos.seq = self._next_seq(inst.symbol)
        execution = Execution(
            account_id=account.account_id,
            exec_id=self._uuid(),
            exec_type="Funding",
            order_id=f"{now_ms // 1000}-{inst.symbol}-{self.fundings}-{pos.side}",
            instrument=inst,
            idx=pos.idx,
            side=pos.side,
            qty=pos.size,
            price=mark,
            value=value,
            fee=fee,
            fee_rate=fee_rate,
            is_maker=False,
            closed_size=ZERO,
            exec_pnl=ZERO,
            mark=mark,
            time_ms=now_ms,
            seq=pos.seq,
            order_type="UNKNOWN",
            order_price=ZERO,
            order_qty=ZERO,
            leaves_qty=ZERO,
            create_type="",
        )
        account.executions.append(execution)
        return execution

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
        return {
            "positions": positions,
            "wallets": wallets,
            "executions": [
                execution_truth(e) for a in self.accounts.values() for e in a.executions
            ],
            "orders": [
                {
                    "account_id": account.account_id,
                    "order_id": order.order_id,
                    "order_status": order.status,
                    "cum_exec_qty": dec_str(order.cum_qty),
                }
                for account in self.accounts.values()
                for order in account.orders.values()
            ],
        }


def execution_truth(e: Execution) -> dict[str, str | int]:
    """One execution in the truth's shape (see the package docstring)."""
    return {
        "account_id": e.account_id,
        "exec_id": e.exec_id,
        "exec_type": e.exec_type,
        "category": e.instrument.category,
        "symbol": e.instrument.symbol,
        "side": e.side,
        "exec_qty": dec_str(e.qty),
        "exec_price": dec_str(e.price),
        "exec_fee": dec_str(e.fee),
        "exec_time": e.time_ms,
    }
