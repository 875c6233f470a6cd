"""`Exchange`: the simulator as one object with a lifecycle, for tests, the CLI and benches.

It owns the event loop side of the simulator: the aiohttp site on 127.0.0.1, the market
clock that runs numbered steps at a fixed interval, the fault book, and the firehose. The
market clock runs steps on a fixed grid (start + k·tick); if the loop falls behind it catches
up, so a run of `duration` seconds always has `round(duration / tick)` steps and the same
seed gives the same truth.

Synchronous code (pybit's threaded clients, a supervisor test) uses `running_in_thread()`:
the exchange then lives in a private event loop thread, and the read-only accessors
(`truth()`, `fault_counts()`, ...) hop onto that loop so they never read state mid-step.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import ssl
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self, TypeVar

from aiohttp import web

from ingestor.sim.faults import FaultBook, FaultConfig, normalise
from ingestor.sim.firehose import Firehose, FirehoseStats
from ingestor.sim.market import Account, Market, Permission, make_accounts
from ingestor.sim.protocol import WS_PATH
from ingestor.sim.server import Server, now_ms

log = logging.getLogger("ingestor.sim")
T = TypeVar("T")

DEFAULT_IDLE_TIMEOUT = 600.0
#: Seconds of market time between fundings: a 30 s `make run` sees six.
DEFAULT_FUNDING_INTERVAL = 5.0
#: Seconds order history keeps an order cancelled without a fill, as Bybit: a day.
DEFAULT_ORDER_RETENTION = 86_400.0


class Exchange:
    """A Bybit V5 private-stream exchange on loopback.

    `async with Exchange(accounts=5, seed=1) as ex:` starts the server and (unless
    `market=False`) the market clock; `ex.ws_url` and `ex.rest_url` are ready inside.
    """

    def __init__(
        self,
        accounts: int = 10,
        seed: int = 0,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        duration: float | None = None,
        tick: float = 0.05,
        trade_rate: float = 1.0,
        hedge_ratio: float = 0.3,
        permissions: dict[str, Permission] | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        faults: FaultConfig | Iterable[FaultConfig] | None = None,
        market: bool = True,
        firehose: bool = False,
        firehose_frames: int | None = None,
        firehose_rate: float | None = None,
        tls: ssl.SSLContext | None = None,
        funding_interval: float = DEFAULT_FUNDING_INTERVAL,
        order_retention: float = DEFAULT_ORDER_RETENTION,
    ) -> None:
        """Configure a run; nothing listens until `start()`.

        accounts: how many accounts (ids sim-0001...).
        seed: drives keys, modes, prices, trades and fault decisions.
        duration: seconds of market (None: until `stop_market()`); firehose stops then too.
        tick: seconds between market steps. trade_rate: trades per account per second.
        hedge_ratio: share of accounts in hedge mode. permissions: per-account key rights.
        idle_timeout: seconds without client data before a connection is closed.
        faults: one FaultConfig or several (first match per account).
        market: False leaves the clock off; drive it with `advance()`.
        firehose: serve pre-encoded pushes as fast as clients read instead of a market.
        firehose_rate: firehose messages per second per connection instead (None: no pacing).
        tls: a server context: serve wss:// and https:// (as Bybit does) instead of ws/http.
        funding_interval: seconds of market time between fundings of every open position
            (Bybit: 8 h; here 5 s, so a short run sees several); 0 never funds.
        order_retention: seconds order history keeps orders cancelled without a fill (24 h).
        """
        if host != "127.0.0.1":
            raise ValueError("the simulator only binds to 127.0.0.1")
        self.seed = seed
        self._host, self._port = host, port
        self._tls = tls
        self._duration = duration
        self._tick = tick
        self._autorun = market and not firehose
        self._accounts = make_accounts(
            accounts, seed, hedge_ratio=hedge_ratio, permissions=permissions, now_ms=now_ms()
        )
        funding_every = max(1, round(funding_interval / tick)) if funding_interval > 0 else 0
        self.market = Market(
            self._accounts,
            seed,
            trade_probability=min(1.0, trade_rate * tick),
            funding_every=funding_every,
        )
        self._faults = FaultBook(normalise(faults), seed)
        self._firehose = Firehose(self.market, firehose_frames, firehose_rate) if firehose else None
        self._server = Server(
            self.market,
            self._faults,
            idle_timeout=idle_timeout,
            on_subscribed=self._firehose.on_subscribed if self._firehose else None,
            order_retention_ms=round(order_retention * 1000),
        )
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clock: asyncio.Task[None] | None = None
        self._stop_requested: asyncio.Event | None = None
        self._stopped: asyncio.Event | None = None
        self._market_open = False

    # ---- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on 127.0.0.1 and start the market clock."""
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        self._stopped = asyncio.Event()
        self._runner = web.AppRunner(
            self._server.app, handle_signals=False, access_log=None, lingering_time=0
        )
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self._host, self._port, reuse_address=True, ssl_context=self._tls
        )
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self._port = server.sockets[0].getsockname()[1]
        self._market_open = True
        if self._autorun or (self._firehose and self._duration is not None):
            self._clock = asyncio.create_task(self._run_clock(), name="ingestor.sim clock")
        log.info(
            "listening on %s (%d accounts, seed %d)", self.ws_url, len(self._accounts), self.seed
        )

    async def close(self) -> None:
        """Stop the market, close every connection with 1001 and stop listening."""
        await self.stop_market()
        if self._clock is not None:
            await self._clock
        await self._server.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @contextmanager
    def running_in_thread(self, timeout: float = 10.0) -> Iterator[Self]:
        """Run the exchange on a private event loop thread, for synchronous callers."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="ingestor.sim", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout)
            try:
                yield self
            finally:
                asyncio.run_coroutine_threadsafe(self.close(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            loop.close()

    def run_sync(self, coroutine: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run one of the async methods from another thread (see `running_in_thread`)."""
        assert self._loop is not None, "the exchange is not running"
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def _on_loop(self, fn: Callable[[], T]) -> T:
        """Call `fn` on the exchange's loop (directly when already on it)."""
        loop = self._loop
        if loop is None or not loop.is_running():
            return fn()
        try:
            if asyncio.get_running_loop() is loop:
                return fn()
        except RuntimeError:
            pass
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the caller's thread
                future.set_exception(exc)

        loop.call_soon_threadsafe(call)
        return future.result(10.0)

    # ---- the market ----------------------------------------------------------------------

    async def _run_clock(self) -> None:
        """Steps on a fixed grid until the duration is over or a stop is requested."""
        loop = asyncio.get_running_loop()
        assert self._stop_requested is not None
        total = None if self._duration is None else round(self._duration / self._tick)
        start = loop.time()
        done = 0
        while total is None or done < total:
            delay = start + (done + 1) * self._tick - loop.time()
            if delay > 0:
                try:
                    await asyncio.wait_for(self._stop_requested.wait(), delay)
                    break
                except TimeoutError:
                    pass
            elif self._stop_requested.is_set():
                break
            if self._autorun:
                self._step()
            done += 1
        await self.stop_market()

    def _step(self) -> None:
        self._server.publish(self.market.step(now_ms()))

    async def advance(self, steps: int = 1) -> None:
        """Run market steps now (for `market=False`); their pushes are queued on return."""
        if not self._market_open:
            raise RuntimeError("the market is closed")
        for _ in range(steps):
            self._step()
            await asyncio.sleep(0)

    async def stop_market(self) -> None:
        """Close the market: no more trades, faults cease, one closing wallet push each.

        The server keeps serving (REST, reconnects, auth, pings) until `close()`.
        Idempotent; also what `duration` does when it runs out.
        """
        if self._stop_requested is not None:
            self._stop_requested.set()
        if not self._market_open:
            return
        self._market_open = False
        self._faults.enabled = False
        if self._firehose is not None:
            self._firehose.stop()
        else:
            self._server.publish(self.market.closing_marks())
        if self._stopped is not None:
            self._stopped.set()
        log.info("market closed after %d steps", self.market.steps)

    async def wait_market_closed(self, timeout: float | None = None) -> None:
        """Wait until the market has closed (duration over or `stop_market()`)."""
        assert self._stopped is not None, "the exchange is not running"
        await asyncio.wait_for(self._stopped.wait(), timeout)

    @property
    def market_open(self) -> bool:
        """True while the market trades (and faults are injected)."""
        return self._market_open

    # ---- what a test reads ---------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port (the real one once started with port=0)."""
        return self._port

    @property
    def ws_url(self) -> str:
        """ws://127.0.0.1:PORT/v5/private (wss:// with TLS)"""
        scheme = "wss" if self._tls else "ws"
        return f"{scheme}://{self._host}:{self._port}{WS_PATH}"

    @property
    def rest_url(self) -> str:
        """http://127.0.0.1:PORT (https:// with TLS; REST paths are Bybit's, under it)"""
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{self._host}:{self._port}"

    @property
    def accounts(self) -> list[Account]:
        """Every account with its key and secret (never logged by the simulator)."""
        return list(self._accounts)

    def account(self, account_id: str) -> Account:
        """One account by id (e.g. "sim-0001")."""
        return self.market.accounts[account_id]

    def truth(self) -> dict[str, Any]:
        """Positions ever opened, every wallet coin, every execution and every order's final
        state, decimals as strings (see the package docstring)."""
        return self._on_loop(self.market.truth)

    def fault_counts(self) -> dict[str, dict[str, int]]:
        """{kind: {account_id: n}} for every kind, including those never injected."""
        return self._on_loop(self._faults.snapshot)

    def push_counts(self) -> dict[str, dict[str, int]]:
        """{account_id: {topic: n}}: real pushes written to connections (faults excluded)."""
        return self._on_loop(lambda: {a: dict(c) for a, c in sorted(self._server.pushes.items())})

    def counters(self) -> dict[str, dict[str, int]]:
        """{account_id: {name: n}}: auth_ok, auth_failed, subscribed, ping, idle_timeout,
        rest_requests, rest_denied ("-" collects what had no known key)."""
        return self._on_loop(lambda: {a: dict(c) for a, c in sorted(self._server.counters.items())})

    def connections(self, account_id: str | None = None) -> int:
        """Open authenticated connections (of one account)."""
        return self._on_loop(
            lambda: sum(
                1
                for s in self._server.sessions
                if s.account and not s.cut and account_id in (None, s.account_id)
            )
        )

    def drop_connections(self, account_id: str | None = None) -> int:
        """Abort the authenticated connections now (counted as `drop` faults)."""
        return self._on_loop(lambda: self._server.drop(account_id))

    def firehose_stats(self) -> FirehoseStats:
        """Server-side messages, bytes, seconds and CPU of the firehose."""
        if self._firehose is None:
            raise RuntimeError("not a firehose exchange")
        return self._on_loop(self._firehose.stats)

    def report(self) -> dict[str, Any]:
        """Truth plus the run's counters, as the CLI writes it."""

        def build() -> dict[str, Any]:
            report = self.market.truth()
            report["faults"] = self._faults.snapshot()
            report["pushes"] = {a: dict(c) for a, c in sorted(self._server.pushes.items())}
            report["counters"] = {a: dict(c) for a, c in sorted(self._server.counters.items())}
            report["run"] = {
                "seed": self.seed,
                "accounts": len(self._accounts),
                "steps": self.market.steps,
            }
            if self._firehose is not None:
                report["firehose"] = self._firehose.stats().as_dict()
            return report

        return self._on_loop(build)
