"""The simulator's sockets: one aiohttp app serving `/v5/private` and the REST endpoints.

Each WebSocket connection is a `Session` with its own outbound queue and writer task, so a
slow reader (or an injected slow send) never stalls the market or other connections, and the
order of frames on one connection is exactly the order they were queued in. Pushes fan out
from `Server.publish`, called once per market step with that step's events.

Idle timeout: like Bybit's `max_active_time`, a connection that sends nothing (no JSON
ping, no request) for that long is closed with code 1000. WebSocket-level ping frames are
answered but do not count as activity: Bybit asks for the JSON `ping` op.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from ingestor.sim import protocol as p
from ingestor.sim.faults import DEFAULT_REST_RATE_LIMIT, FaultBook
from ingestor.sim.market import BY_SYMBOL, Account, Event, Instrument, Market, Order, Position

log = logging.getLogger("ingestor.sim")

MIN_ACTIVE_S = 30.0
MAX_ACTIVE_S = 600.0
UNKNOWN_TOPIC = "sim.unknown"
CLOSE_IDLE = WSCloseCode.OK
CLOSE_SHUTDOWN = WSCloseCode.GOING_AWAY


def new_id() -> str:
    """A push's message id (Bybit's are opaque; a UUID is one of its shapes)."""
    return str(uuid.uuid4())


def now_ms() -> int:
    """Wall-clock milliseconds, as every Bybit timestamp."""
    return time.time_ns() // 1_000_000


def parse_max_active_time(text: str) -> float | None:
    """`30s`..`600s` or `1m`..`10m` → seconds, clamped to Bybit's range; None if malformed."""
    match = re.fullmatch(r"(\d+)([sm])", text.strip())
    if not match:
        return None
    seconds = float(match.group(1)) * (60 if match.group(2) == "m" else 1)
    return min(MAX_ACTIVE_S, max(MIN_ACTIVE_S, seconds))


@dataclass(eq=False)
class Session:
    """One WebSocket connection: its auth state, subscriptions and outbound queue."""

    conn_id: str
    ws: web.WebSocketResponse
    request: web.Request
    account: Account | None = None
    topics: set[str] = field(default_factory=set)
    zombie: bool = False
    cut: bool = False
    queue: asyncio.Queue[tuple[bytes, str | None]] = field(default_factory=asyncio.Queue)
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def account_id(self) -> str:
        """The authenticated account, or "-" before auth (for logs and counters)."""
        return self.account.account_id if self.account else "-"

    def send(self, frame: bytes, topic: str | None = None) -> None:
        """Queue a frame; `topic` marks a real push, counted once it is written."""
        self.queue.put_nowait((frame, topic))

    def abort(self) -> None:
        """Cut the TCP connection without a close frame, as a network fault does."""
        self.cut = True
        transport = self.request.transport
        if transport is not None:
            transport.abort()


class Server:
    """Protocol endpoints over the market, with faults and counters."""

    def __init__(
        self,
        market: Market,
        faults: FaultBook,
        *,
        idle_timeout: float,
        on_subscribed: Callable[[Session], None] | None = None,
        order_retention_ms: int = p.DAY_MS,
    ) -> None:
        """order_retention_ms: how long order history keeps orders cancelled without a fill
        (Bybit: 24 h)."""
        self.market = market
        self.faults = faults
        self.idle_timeout = idle_timeout
        self.order_retention_ms = order_retention_ms
        self.by_key = {a.api_key: a for a in market.accounts.values()}
        self.sessions: set[Session] = set()
        self.by_account: dict[str, set[Session]] = defaultdict(set)
        self.pushes: dict[str, Counter[str]] = defaultdict(Counter)
        self.counters: dict[str, Counter[str]] = defaultdict(Counter)
        self._on_subscribed = on_subscribed
        self._conn_seq = 0
        self._rate: dict[tuple[str, str], tuple[int, int]] = {}
        self.app = web.Application()
        self.app.router.add_get(p.WS_PATH, self._ws_handler)
        self._rest_routes: dict[str, Callable[[Account, Any], dict[str, Any] | tuple[int, str]]]
        self._rest_routes = {
            p.POSITION_LIST_PATH: self._position_list,
            p.WALLET_BALANCE_PATH: self._wallet_balance,
            p.QUERY_API_PATH: lambda account, _query: p.api_key_info(account),
            p.EXECUTION_LIST_PATH: self._execution_list,
            p.ORDER_HISTORY_PATH: self._order_history,
            p.ORDER_REALTIME_PATH: self._order_realtime,
        }
        for path in self._rest_routes:
            self.app.router.add_get(path, self._rest_handler)

    # ---- pushes --------------------------------------------------------------------------

    def publish(self, events: list[Event]) -> None:
        """Fan a step's events out to every subscribed session of each account.

        A message is built only when a session of its account subscribed its topic, and
        encoded once per topic; its id is the same on every connection, as on Bybit.
        """
        created = now_ms()
        for event in events:
            sessions = self.by_account.get(event.account_id)
            if not sessions:
                continue
            wanted = set().union(*(s.topics for s in sessions))
            for base, category, data, message_id in self._messages(event, wanted):
                frames: dict[str, bytes] = {}
                for session in list(sessions):
                    for topic in (base, f"{base}.{category}" if category else None):
                        if topic and topic in session.topics:
                            if topic not in frames:
                                message = p.envelope(message_id, topic, created, data)
                                frames[topic] = orjson.dumps(message)
                            self._deliver(session, topic, frames[topic])

    def _messages(
        self, event: Event, wanted: set[str]
    ) -> list[tuple[str, str | None, list[Any], str | None]]:
        """The pushes of one event in Bybit's order (order, execution, position, wallet), as
        (topic, category, data, message id), leaving out topics nobody subscribed to.

        An order version and the execution it came with share their envelope id, as Bybit's
        do; `execution.fast` carries none.
        """
        account = self.market.accounts[event.account_id]

        def on(base: str, category: str | None = None) -> bool:
            return base in wanted or (category is not None and f"{base}.{category}" in wanted)

        messages: list[tuple[str, str | None, list[Any], str | None]] = []
        wallet = "wallet" in wanted
        if event.kind == "mark":
            return [self._wallet_message(account)] if wallet else []
        category = event.positions[0].instrument.category
        position = None
        if on("position", category):
            position = [self._position_element(pos) for pos in event.positions]
        if event.kind == "cancel":
            for order in event.orders:
                if on("order", category):
                    messages.append(("order", category, [p.order_element(order)], new_id()))
                if position is not None:
                    messages.append(("position", category, position, new_id()))
            return messages
        shared = new_id()
        # The version the execution made is the last one, or the one before it when the last
        # is its repeat (the double Filled): a placement's New and the repeat get ids of
        # their own.
        concurrent = event.orders.index(event.orders[-1]) if event.orders else -1
        if on("order", category):
            for n, order in enumerate(event.orders):
                message_id = shared if n == concurrent else new_id()
                messages.append(("order", category, [p.order_element(order)], message_id))
        if on("execution", category):
            data = [p.execution_element(e) for e in event.executions]
            messages.append(("execution", category, data, shared))
        trades = [e for e in event.executions if e.exec_type == "Trade"]
        if trades and on("execution.fast", category):
            data = [p.execution_fast_element(e) for e in trades]
            messages.append(("execution.fast", category, data, None))
        if position is not None:
            messages.append(("position", category, position, new_id()))
        if wallet:
            messages.append(self._wallet_message(account))
        return messages

    def _position_element(self, pos: Position) -> dict[str, Any]:
        return p.position_push_element(pos, self.market.prices[pos.instrument.symbol])

    def _wallet_message(self, account: Account) -> tuple[str, None, list[Any], str]:
        return ("wallet", None, [p.wallet_element(self.market, account)], new_id())

    def _deliver(self, session: Session, topic: str, frame: bytes) -> None:
        """Queue one push, with whatever faults the account's config rolls for it."""
        account_id = session.account_id
        config = self.faults.config(account_id)
        if session.zombie or session.cut:
            return
        if self.faults.roll(config.drop_per_push):
            self.faults.hit("drop", account_id)
            log.info("fault: drop %s (%s)", session.conn_id, account_id)
            session.abort()
            return
        if self.faults.roll(config.broken_frame_rate):
            self.faults.hit("broken_frame", account_id)
            session.send(frame[: len(frame) // 2])
        if self.faults.roll(config.unknown_topic_rate):
            self.faults.hit("unknown_topic", account_id)
            extra = p.envelope(str(uuid.uuid4()), UNKNOWN_TOPIC, now_ms(), [{"sim": "fault"}])
            session.send(orjson.dumps(extra))
        session.send(frame, topic)
        if self.faults.roll(config.duplicate_rate):
            self.faults.hit("duplicate", account_id)
            session.send(frame)

    def drop(self, account_id: str | None = None) -> int:
        """Abort every authenticated connection (of one account); each one counts as a fault."""
        dropped = 0
        for session in list(self.sessions):
            if session.account and not session.cut and account_id in (None, session.account_id):
                self.faults.hit("drop", session.account_id)
                session.abort()
                dropped += 1
        return dropped

    async def close_all(self) -> None:
        """Close every connection with 1001 (going away), as a server shutting down does."""
        await asyncio.gather(
            *(s.ws.close(code=CLOSE_SHUTDOWN, message=b"server shutdown") for s in self.sessions),
            return_exceptions=True,
        )

    # ---- WebSocket -----------------------------------------------------------------------

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        """Upgrade, then read requests until the client leaves or the idle timer fires."""
        idle = self.idle_timeout
        if "max_active_time" in request.query:
            idle = parse_max_active_time(request.query["max_active_time"]) or idle
        ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        self._conn_seq += 1
        session = Session(f"{uuid.uuid4().hex[:20]}-{self._conn_seq}", ws, request)
        self.sessions.add(session)
        writer = asyncio.create_task(self._write_loop(session))
        try:
            await self._read_loop(session, idle)
        finally:
            self.sessions.discard(session)
            if session.account:
                self.by_account[session.account_id].discard(session)
            for timer in session.timers:
                timer.cancel()
            for task in [writer, *session.tasks]:
                task.cancel()
            await asyncio.gather(writer, *session.tasks, return_exceptions=True)
        return ws

    async def _read_loop(self, session: Session, idle: float) -> None:
        loop = asyncio.get_running_loop()
        ws = session.ws
        deadline = loop.time() + idle
        while True:
            try:
                msg = await ws.receive(timeout=max(0.001, deadline - loop.time()))
            except TimeoutError:
                self.counters[session.account_id]["idle_timeout"] += 1
                log.info("idle timeout %s (%s)", session.conn_id, session.account_id)
                await ws.close(code=CLOSE_IDLE, message=b"idle timeout")
                return
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                deadline = loop.time() + idle
                self._on_request(session, msg.data)
            elif msg.type is WSMsgType.PING:
                if not session.zombie:
                    await ws.pong(msg.data)
            elif msg.type is not WSMsgType.PONG:
                return

    async def _write_loop(self, session: Session) -> None:
        """Send queued frames in order; slow-send faults wait before each frame."""
        ws = session.ws
        while True:
            frame, topic = await session.queue.get()
            delay = self.faults.config(session.account_id).slow_send_s if session.account else 0
            if delay > 0:
                self.faults.hit("slow_send", session.account_id)
                await asyncio.sleep(delay)
            try:
                await ws.send_frame(frame, WSMsgType.TEXT)
            except ConnectionError:
                return
            if topic is not None:
                self.pushes[session.account_id][topic] += 1

    def _on_request(self, session: Session, data: str | bytes) -> None:
        """Dispatch one client request frame."""
        try:
            request = orjson.loads(data)
        except orjson.JSONDecodeError:
            request = None
        if not isinstance(request, dict):
            self._answer(session, p.op_answer("", session.conn_id, None, p.INVALID_REQUEST))
            return
        op = request.get("op")
        req_id = request.get("req_id")
        args = request.get("args")
        if op == "ping":
            self.counters[session.account_id]["ping"] += 1
            if not session.zombie:
                self._pong(session, req_id)
        elif op == "auth":
            ret_msg = self._auth(session, args)
            self._answer(session, p.op_answer("auth", session.conn_id, req_id, ret_msg))
        elif op == "subscribe":
            ret_msg = self._subscribe(session, args)
            self._answer(session, p.op_answer("subscribe", session.conn_id, req_id, ret_msg))
            if not ret_msg and self._on_subscribed is not None:
                self._on_subscribed(session)
        elif op == "unsubscribe":
            ret_msg = p.NOT_AUTHORIZED if session.account is None else ""
            if not ret_msg and isinstance(args, list):
                session.topics.difference_update(a for a in args if isinstance(a, str))
            self._answer(session, p.op_answer("unsubscribe", session.conn_id, req_id, ret_msg))
        else:
            message = p.unsupported_op_message(op)
            self._answer(session, p.op_answer(str(op), session.conn_id, req_id, message))

    def _answer(self, session: Session, answer: dict[str, Any]) -> None:
        session.send(orjson.dumps(answer))

    def _pong(self, session: Session, req_id: object) -> None:
        pong = p.pong(session.conn_id, req_id, now_ms())
        delay = self.faults.config(session.account_id).pong_delay_s if session.account else 0
        if delay <= 0:
            self._answer(session, pong)
            return
        self.faults.hit("pong_delay", session.account_id)
        timer = asyncio.get_running_loop().call_later(delay, self._answer, session, pong)
        session.timers.append(timer)

    def _auth(self, session: Session, args: object) -> str:
        """Check an auth request; "" on success, else Bybit's failure text."""
        if session.account is not None:
            return p.AUTH_REPEAT
        if not (
            isinstance(args, list)
            and len(args) == 3
            and isinstance(args[0], str)
            and isinstance(args[2], str)
            and isinstance(args[1], int | str)
            and not isinstance(args[1], bool)
        ):
            return p.AUTH_PARAMS_ERROR
        api_key, raw_expires, signature = args
        try:
            expires = int(raw_expires)
        except ValueError:
            return p.AUTH_PARAMS_ERROR
        account = self.by_key.get(api_key)
        counters = self.counters[account.account_id if account else "-"]
        if expires <= now_ms():
            counters["auth_failed"] += 1
            return p.AUTH_PARAMS_ERROR
        if account is None or not p.signatures_match(
            p.ws_signature(account.api_secret, expires), signature
        ):
            counters["auth_failed"] += 1
            log.info("auth denied %s (key %s)", session.conn_id, api_key[:6])
            return p.AUTH_DENIED
        config = self.faults.config(account.account_id)
        if self.faults.roll(config.refuse_auth):
            self.faults.hit("refuse_auth", account.account_id)
            counters["auth_failed"] += 1
            return p.AUTH_DENIED
        session.account = account
        counters["auth_ok"] += 1
        self.by_account[account.account_id].add(session)
        loop = asyncio.get_running_loop()
        if config.ping_silence_after is not None:
            session.timers.append(
                loop.call_later(config.ping_silence_after, self._silence, session)
            )
        if config.drop_per_s > 0:
            wait = self.faults.expovariate(config.drop_per_s)
            session.timers.append(loop.call_later(wait, self._timed_drop, session))
        return ""

    def _silence(self, session: Session) -> None:
        """Turn a connection into a zombie: open, but no pongs and no pushes any more."""
        if self.faults.config(session.account_id).ping_silence_after is None:
            return
        session.zombie = True
        self.faults.hit("ping_silence", session.account_id)
        log.info("fault: ping silence %s (%s)", session.conn_id, session.account_id)

    def _timed_drop(self, session: Session) -> None:
        config = self.faults.config(session.account_id)
        if config.drop_per_s > 0 and session in self.sessions and not session.cut:
            self.faults.hit("drop", session.account_id)
            log.info("fault: drop %s (%s)", session.conn_id, session.account_id)
            session.abort()

    def _subscribe(self, session: Session, args: object) -> str:
        """All-or-nothing subscription; "" on success, else the failure text."""
        if session.account is None:
            return p.NOT_AUTHORIZED
        if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
            return p.INVALID_REQUEST
        if "position" in args and any(a.startswith("position.") for a in args):
            return p.MIXED_POSITION_TOPICS
        for topic in args:
            if topic not in p.PRIVATE_TOPICS:
                return p.unknown_topic_message(topic)
            if topic in session.topics:
                return p.already_subscribed_message(topic)
        session.topics.update(args)
        self.counters[session.account_id]["subscribed"] += 1
        return ""

    # ---- REST ----------------------------------------------------------------------------

    async def _rest_handler(self, request: web.Request) -> web.Response:
        """Verify Bybit's header signature scheme, apply limits and faults, then answer."""
        now = now_ms()
        headers: dict[str, str] = {}
        account, failure = self._rest_auth(request, now)
        if account is None:
            code, message = failure
            return self._json(p.rest_answer(now, ret_code=code, ret_msg=message))
        counters = self.counters[account.account_id]
        counters["rest_requests"] += 1
        config = self.faults.config(account.account_id)
        limit = config.rest_rate_limit or DEFAULT_REST_RATE_LIMIT
        second = now // 1000
        window, used = self._rate.get((account.api_key, request.path), (second, 0))
        used = used + 1 if window == second else 1
        self._rate[(account.api_key, request.path)] = (second, used)
        headers["X-Bapi-Limit"] = str(limit)
        headers["X-Bapi-Limit-Status"] = str(max(0, limit - used))
        headers["X-Bapi-Limit-Reset-Timestamp"] = str((second + 1) * 1000)
        if used > limit:
            self.faults.hit("rest_rate_limit", account.account_id)
            answer = p.rest_answer(now, ret_code=p.RATE_LIMITED, ret_msg=p.RATE_LIMIT_MESSAGE)
            return self._json(answer, headers)
        if self.faults.roll(config.rest_error_rate):
            self.faults.hit("rest_error", account.account_id)
            answer = p.rest_answer(now, ret_code=p.SERVER_ERROR, ret_msg=p.SERVER_ERROR_MESSAGE)
            return self._json(answer, headers)
        result = self._rest_routes[request.path](account, request.query)
        if isinstance(result, tuple):
            code, message = result
            return self._json(p.rest_answer(now, ret_code=code, ret_msg=message), headers)
        return self._json(p.rest_answer(now, result), headers)

    def _rest_auth(self, request: web.Request, now: int) -> tuple[Account | None, tuple[int, str]]:
        """The account of a correctly signed, fresh request, or Bybit's (retCode, retMsg)."""
        api_key = request.headers.get("X-BAPI-API-KEY", "")
        timestamp = request.headers.get("X-BAPI-TIMESTAMP", "")
        recv_window = request.headers.get("X-BAPI-RECV-WINDOW", str(p.DEFAULT_RECV_WINDOW))
        signature = request.headers.get("X-BAPI-SIGN", "")
        account = self.by_key.get(api_key)
        if account is None:
            self.counters["-"]["rest_denied"] += 1
            return None, (p.INVALID_KEY, p.INVALID_KEY_MESSAGE)
        try:
            ts, window = int(timestamp), int(recv_window)
        except ValueError:
            self.counters[account.account_id]["rest_denied"] += 1
            return None, (p.PARAMS_ERROR, "params error: X-BAPI-TIMESTAMP or recv_window")
        if not (now - window <= ts < now + p.TIMESTAMP_AHEAD_MS):
            self.counters[account.account_id]["rest_denied"] += 1
            message = p.timestamp_error_message(timestamp, now, recv_window)
            return None, (p.TIMESTAMP_ERROR, message)
        query = request.rel_url.raw_query_string
        expected = p.rest_signature(account.api_secret, timestamp, api_key, recv_window, query)
        if not p.signatures_match(expected, signature):
            self.counters[account.account_id]["rest_denied"] += 1
            origin = f"{timestamp}{api_key}{recv_window}{query}"
            return None, (p.SIGN_ERROR, p.sign_error_message(origin))
        return account, (p.OK, "OK")

    @staticmethod
    def _json(answer: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(
            body=orjson.dumps(answer), content_type="application/json", headers=headers
        )

    def _position_list(self, account: Account, query: Any) -> dict[str, Any] | tuple[int, str]:
        """`/v5/position/list` with Bybit's symbol/settleCoin rules and cursor paging."""
        category = query.get("category", "")
        if category not in p.CATEGORIES:
            return p.PARAMS_ERROR, f"params error: category {category!r} is invalid"
        symbol = query.get("symbol", "")
        settle = query.get("settleCoin", "")
        if category == "linear" and not symbol and not settle:
            return p.PARAMS_ERROR, p.MISSING_SYMBOL_OR_SETTLE
        try:
            limit = int(query.get("limit", "20"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 200:
            return p.PARAMS_ERROR, "params error: limit must be 1..200"
        after = decode_cursor(query.get("cursor", ""))
        if after is False:
            return p.PARAMS_ERROR, "params error: cursor is invalid"
        rows = self._positions_for(account, category, symbol, settle)
        rows.sort(key=lambda pos: (pos.instrument.symbol, pos.idx))
        if after is not None:
            rows = [r for r in rows if (r.instrument.symbol, r.idx) > after]
        page = rows[:limit]
        more = len(rows) > limit
        last = page[-1] if page else None
        return {
            "category": category,
            "list": [
                p.position_rest_element(pos, self.market.prices[pos.instrument.symbol])
                for pos in page
            ],
            "nextPageCursor": encode_cursor(last.instrument.symbol, last.idx)
            if more and last
            else "",
        }

    def _positions_for(
        self, account: Account, category: str, symbol: str, settle: str
    ) -> list[Position]:
        """With a symbol: its slots, flat or not; otherwise open positions only."""
        if symbol:
            inst = BY_SYMBOL.get(symbol)
            if inst is None or inst.category != category:
                return []
            return [
                account.positions.get((category, symbol, idx))
                or Position(inst, idx, created_ms=account.created_ms, updated_ms=account.created_ms)
                for idx in account.slots(inst)
            ]
        return [
            pos
            for pos in account.positions.values()
            if pos.instrument.category == category
            and pos.size > 0
            and (not settle or pos.instrument.settle_coin == settle)
        ]

    def _wallet_balance(self, account: Account, query: Any) -> dict[str, Any] | tuple[int, str]:
        """`/v5/account/wallet-balance`: UNIFIED only, optional `coin=A,B` filter."""
        account_type = query.get("accountType", "")
        if not account_type:
            return p.PARAMS_ERROR, "params error: accountType is required"
        if account_type != "UNIFIED":
            return p.PARAMS_ERROR, p.UNIFIED_ONLY
        coins = [c for c in query.get("coin", "").split(",") if c] or list(account.coins)
        return {"list": [p.wallet_element(self.market, account, coins)]}

    # ---- the ledger over REST: executions and orders ------------------------------------

    def _execution_list(self, account: Account, query: Any) -> dict[str, Any] | tuple[int, str]:
        """`/v5/execution/list`: Bybit's 7-day window, filters, newest first, cursor paging."""
        request = ledger_request(query, max_limit=100, default_limit=50)
        if not isinstance(request, LedgerRequest):
            return request
        category, limit, start, end, after = request
        order_id, symbol = query.get("orderId", ""), query.get("symbol", "")
        exec_type = query.get("execType", "")
        rows = [
            e
            for e in account.executions
            if e.instrument.category == category
            and start <= e.time_ms <= end
            # orderId outranks symbol, as on Bybit (the other is then ignored).
            and (e.order_id == order_id if order_id else symbol in ("", e.instrument.symbol))
            and exec_type in ("", e.exec_type)
        ]
        page, cursor = newest_first(rows, lambda e: (e.time_ms, e.exec_id), limit, after)
        return {
            "nextPageCursor": cursor,
            "category": category,
            "list": [p.execution_rest_element(e) for e in page],
        }

    def _order_history(self, account: Account, query: Any) -> dict[str, Any] | tuple[int, str]:
        """`/v5/order/history`: final orders (or `orderStatus`) created in the window, those
        cancelled without fills only for the retention (24 h), the others for 2 years."""
        request = ledger_request(query, max_limit=50, default_limit=20)
        if not isinstance(request, LedgerRequest):
            return request
        category, limit, start, end, after = request
        now = now_ms()
        statuses = (query["orderStatus"],) if query.get("orderStatus") else p.FINAL_STATUSES
        rows = [
            o
            for o in self._orders_for(account, category, query)
            if start <= o.created_ms <= end and o.status in statuses and self._kept(o, now)
        ]
        page, cursor = newest_first(rows, lambda o: (o.created_ms, o.order_id), limit, after)
        return {
            "list": [p.order_rest_element(o) for o in page],
            "nextPageCursor": cursor,
            "category": category,
        }

    def _kept(self, order: Order, now: int) -> bool:
        """Whether order history still has the order."""
        if order.cum_qty == 0 and order.status in p.SHORT_LIVED_STATUSES:
            return now - order.updated_ms <= self.order_retention_ms
        return now - order.created_ms <= p.KEEP_MS

    def _order_realtime(self, account: Account, query: Any) -> dict[str, Any] | tuple[int, str]:
        """`/v5/order/realtime`: open orders (openOnly=0, the default), or the category's 500
        most recent closed ones (openOnly=1); linear needs symbol, baseCoin or settleCoin."""
        category = query.get("category", "")
        if category not in LEDGER_CATEGORIES:
            return p.PARAMS_ERROR, f"params error: category {category!r} is invalid"
        if category == "linear" and not any(
            query.get(k) for k in ("symbol", "baseCoin", "settleCoin", "orderId")
        ):
            return p.PARAMS_ERROR, p.MISSING_SYMBOL_OR_SETTLE
        limit = page_limit(query, 50, 20)
        if limit is None:
            return p.PARAMS_ERROR, "params error: limit must be 1..50"
        after = decode_ledger_cursor(query.get("cursor", ""))
        if after is False:
            return p.PARAMS_ERROR, "params error: cursor is invalid"
        open_only = query.get("openOnly", "0")
        if open_only not in ("0", "1"):
            return p.PARAMS_ERROR, "params error: openOnly must be 0 or 1"
        if open_only == "0":
            rows = [o for o in self._orders_for(account, category, query) if o.is_open]
        else:
            closed = [
                o
                for o in account.orders.values()
                if o.instrument.category == category and not o.is_open
            ]
            closed.sort(key=lambda o: (o.created_ms, o.order_id), reverse=True)
            recent = {o.order_id for o in closed[: p.RECENT_CLOSED]}
            rows = [o for o in self._orders_for(account, category, query) if o.order_id in recent]
        page, cursor = newest_first(rows, lambda o: (o.created_ms, o.order_id), limit, after)
        return {
            "list": [p.order_rest_element(o) for o in page],
            "nextPageCursor": cursor,
            "category": category,
        }

    @staticmethod
    def _orders_for(account: Account, category: str, query: Any) -> list[Order]:
        """The account's orders of a category by orderId (which outranks the rest), else by
        symbol, baseCoin and settleCoin."""
        order_id = query.get("orderId", "")
        symbol, base, settle = (query.get(k, "") for k in ("symbol", "baseCoin", "settleCoin"))
        return [
            o
            for o in account.orders.values()
            if o.instrument.category == category
            and (
                o.order_id == order_id
                if order_id
                else symbol in ("", o.instrument.symbol)
                and base in ("", base_coin(o.instrument))
                and settle in ("", o.instrument.settle_coin)
            )
        ]


#: Categories the ledger endpoints take (spot and option: nothing traded, empty lists).
LEDGER_CATEGORIES = ("linear", "inverse", "option", "spot")


def base_coin(instrument: Instrument) -> str:
    """BTCUSDT and BTCUSD → BTC: the symbol without its quote."""
    quote = "USDT" if instrument.category == "linear" else "USD"
    return instrument.symbol.removesuffix(quote)


def page_limit(query: Any, max_limit: int, default: int) -> int | None:
    """The page size asked for, or None when it is not an integer in 1..max_limit."""
    try:
        limit = int(query.get("limit", str(default)))
    except ValueError:
        return None
    return limit if 1 <= limit <= max_limit else None


class LedgerRequest(NamedTuple):
    """An execution or order history request, checked."""

    category: str
    limit: int
    start: int
    end: int
    after: tuple[int, str] | None


def ledger_request(
    query: Any, *, max_limit: int, default_limit: int
) -> LedgerRequest | tuple[int, str]:
    """The checked request, or Bybit's (retCode, retMsg)."""
    category = query.get("category", "")
    if category not in LEDGER_CATEGORIES:
        return p.PARAMS_ERROR, f"params error: category {category!r} is invalid"
    limit = page_limit(query, max_limit, default_limit)
    if limit is None:
        return p.PARAMS_ERROR, f"params error: limit must be 1..{max_limit}"
    window = p.time_window(query, now_ms())
    if isinstance(window, str):
        return p.PARAMS_ERROR, window
    after = decode_ledger_cursor(query.get("cursor", ""))
    if after is False:
        return p.PARAMS_ERROR, "params error: cursor is invalid"
    return LedgerRequest(category, limit, window[0], window[1], after)


T = TypeVar("T")


def newest_first(
    rows: list[T], key: Callable[[T], tuple[int, str]], limit: int, after: tuple[int, str] | None
) -> tuple[list[T], str]:
    """One page of `rows` newest first (ties: the id, descending) after the cursor's row,
    and the cursor of the next page ("" on the last). Rows are never edited in their key and
    new ones are newer, so paging while the market trades lists every row once."""
    rows = sorted(rows, key=key, reverse=True)
    if after is not None:
        rows = [r for r in rows if key(r) < after]
    page = rows[:limit]
    more = len(rows) > limit
    return page, encode_ledger_cursor(*key(page[-1])) if more else ""


def encode_ledger_cursor(time_ms: int, ident: str) -> str:
    """An opaque, URL-safe cursor naming the last row of a ledger page."""
    return base64.urlsafe_b64encode(f"{time_ms},{ident}".encode()).decode().rstrip("=")


def decode_ledger_cursor(cursor: str) -> tuple[int, str] | bool | None:
    """The (time, id) a ledger cursor names; None for no cursor; False when it is not ours."""
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        time_ms, ident = text.split(",", 1)
        return int(time_ms), ident
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return False


def encode_cursor(symbol: str, idx: int) -> str:
    """An opaque, URL-safe cursor naming the last position of a page."""
    return base64.urlsafe_b64encode(f"{symbol},{idx}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, int] | bool | None:
    """The (symbol, idx) a cursor names; None for no cursor; False when it is not ours."""
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        symbol, idx = text.split(",")
        return symbol, int(idx)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return False
