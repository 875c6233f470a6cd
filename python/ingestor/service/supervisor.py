"""The supervisor: starts the writer and the collectors, relays batches from the collectors'
pipes to the writer, restarts a collector that dies, shows status, and turns SIGINT/SIGTERM
into an orderly drain (a second signal exits at once, keeping what is committed)."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import signal
import time
from dataclasses import replace
from multiprocessing.connection import Connection, wait
from typing import Any

from ingestor import sinks
from ingestor.config import Account, Settings, relay_budget_bytes
from ingestor.service import collector, lifeline, malloc
from ingestor.service.downtime import downtime_events
from ingestor.service.messages import (
    BATCH,
    COLLECTOR_STATS,
    DONE,
    STORE_HEALTH,
    WRITER_STATS,
    to_ipc,
)
from ingestor.service.metrics import Server, Telemetry
from ingestor.service.start_check import run_start_check
from ingestor.service.status import Status
from ingestor.service.writer_link import WriterLink

log = logging.getLogger("ingestor.supervisor")

RESTART_DELAY_S = 1.0
#: A draining collector that sends nothing for this long (while the supervisor is reading)
#: is stopped.
COLLECTOR_DRAIN_S = 30.0
#: After the last collector is done, the writer has this long without acknowledging anything
#: (while batches wait), and `drain_timeout` in all, to commit the rest; then what is left is
#: spooled for the next start and the service exits non-zero, saying so.
WRITER_STALL_S = 60.0


#: How long a restarted collector's read of the open positions waits for the writer to let
#: go of the DuckDB file between flushes.
OPEN_POSITIONS_WAIT_S = 5.0


#: What a (re)started collector is told of each account from the store: the positions it saw
#: open (for the first resync) and up to when it holds the ledger (where the backfill starts).
Remembered = dict[str, dict[str, object]]


def remembered(settings: Settings, wait_s: float = 0.0) -> Remembered:
    kind, path = settings.sink.kind, settings.sink.path
    known = sinks.open_positions(kind, path, wait_s=wait_s)
    spooled = sinks.spooled_positions(
        kind, path, data_path=settings.sink.data_path, shard=settings.shard
    )
    ledger = sinks.ledger_complete(kind, path, wait_s=wait_s)
    return {
        a.id: {
            "open_positions": sorted(set(known.get(a.id, [])) | spooled.get(a.id, set())),
            "ledger_complete_ms": ledger.get(a.id),
        }
        for a in settings.accounts
    }


#: What a shard spreads accounts over. Each use hashes with its own salt: with one hash for
#: both, `--shard i/2` and two collectors would agree on the same low bits, and every account
#: of an instance would land in one of its collectors.
INSTANCES = b"instance"
COLLECTORS = b"collector"


def shard_of(account_id: str, shards: int, salt: bytes) -> int:
    """A stable shard (never Python's `hash`, which changes per process): the same account
    lands in the same instance, and the same collector, on every run and every box."""
    digest = hashlib.blake2b(account_id.encode(), digest_size=8, person=salt).digest()
    return int.from_bytes(digest, "big") % shards


def shard(accounts: tuple[Account, ...], shards: int) -> list[list[Account]]:
    groups: list[list[Account]] = [[] for _ in range(shards)]
    for account in accounts:
        groups[shard_of(account.id, shards, COLLECTORS)].append(account)
    return [g for g in groups if g]


def own_shard(settings: Settings) -> Settings:
    """`settings` with only this instance's accounts (all of them without `shard`)."""
    if settings.shard is None:
        return settings
    index, count = settings.shard
    mine = tuple(a for a in settings.accounts if shard_of(a.id, count, INSTANCES) == index)
    log.info(
        "shard %d/%d: this instance holds %d of the %d accounts",
        index,
        count,
        len(mine),
        len(settings.accounts),
    )
    return replace(settings, accounts=mine)


class CollectorHandle:
    def __init__(self, worker: int, accounts: list[Account]) -> None:
        self.worker = worker
        self.accounts = accounts
        self.process: multiprocessing.Process | None = None
        self.pipe: Connection | None = None
        self.stop: Any = None
        self.done = False
        self.restarts = 0
        #: When the collector last sent anything: a drain waits while it makes progress.
        self.last_heard = time.monotonic()
        #: Rows its engine held, undelivered, when it last said (COLLECTOR_STATS).
        self.undelivered = 0


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        *,
        duration: float | None = None,
        status: Status | None = None,
        unchecked: frozenset[str] = frozenset(),
    ) -> None:
        self.settings = settings
        self.duration = duration
        self.status = status or Status(settings, live=False)
        #: Accounts the start check skips (the service's own simulator issued their keys).
        self.unchecked = unchecked
        self.telemetry = Telemetry(settings)
        # fork: secrets reach the children in memory, never pickled; no tokio runtime exists
        # in this process, so forking is safe.
        self.ctx = multiprocessing.get_context("fork")
        self.stopping = False
        self.forced = False
        self.collectors = 1

    def _signal(self, signum: int, _frame: object) -> None:
        if self.stopping:
            log.warning("second %s: exiting now; what is committed stays", signal.strsignal(signum))
            self.forced = True
        else:
            log.info(
                "%s: draining: collectors hand over, the writer commits", signal.strsignal(signum)
            )
            self.stopping = True
            self.telemetry.phase("draining")

    def _start_collector(self, handle: CollectorHandle, known: Remembered | None = None) -> None:
        receive, send = self.ctx.Pipe(duplex=False)
        handle.stop = self.ctx.Event()
        if known is None:  # a restart: the writer holds the file during its flushes
            known = remembered(self.settings, wait_s=OPEN_POSITIONS_WAIT_S)
        specs = [{**a.engine_spec(), **known.get(a.id, {})} for a in handle.accounts]
        handle.process = self.ctx.Process(
            target=lifeline.run_as_child,
            args=(
                os.getpid(),
                collector.run,
                handle.worker,
                specs,
                self.settings,
                send,
                handle.stop,
                self.collectors,
            ),
            name=f"ingestor-col-{handle.worker}",  # comm: 15 bytes, "ingestor-col-99"
            daemon=True,
        )
        handle.process.start()
        send.close()  # the child holds its end; EOF here means the child is gone
        handle.pipe = receive
        handle.done = False

    def run(self) -> int:
        previous = {s: signal.signal(s, self._signal) for s in (signal.SIGINT, signal.SIGTERM)}
        lifeline.dump_stacks_on_sigusr1()
        malloc.return_large_blocks()  # before the writer and collectors are forked
        server = None
        try:
            if self.settings.metrics_port is not None:
                host, port = self.settings.metrics_host, self.settings.metrics_port
                try:
                    server = Server(self.telemetry, host, port)
                except OSError as e:
                    log.error("cannot serve metrics on %s:%d: %s", host, port, e.strerror or e)
                    return 2
                server.start()
            return self._run()
        finally:
            if server is not None:
                server.close()
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _checked_accounts(self) -> tuple[Account, ...]:
        """The accounts to capture: all, less those the start check refuses."""
        settings = self.settings
        if not settings.start_check:
            return settings.accounts
        self.telemetry.phase("checking")
        refused = run_start_check(settings, self.unchecked)
        self.telemetry.refused(refused)
        self.status.refused = refused
        return tuple(a for a in settings.accounts if a.id not in refused)

    def _run(self) -> int:
        settings = self.settings
        try:
            sinks.check_store(settings.sink.kind, settings.sink.path)
        except sinks.StoreDamaged as e:
            log.error("refusing to start: %s; nothing was written to it", e)
            return 2
        accounts = self._checked_accounts()
        if not accounts:
            log.error("every account was refused by the start check: nothing to capture")
            return 1
        if not self.stopping:
            self.telemetry.phase("capturing")
        # Read before the writer starts: once it runs it holds the DuckDB file while it
        # creates tables and flushes, and a read that meets the lock finds nothing.
        known = remembered(settings)
        # A previous run that ended without a clean stop (killed, crashed, the box down) left
        # no `disconnected`: its downtime is recorded first, so `gaps` shows it.
        downtime = downtime_events(
            settings.sink.kind,
            settings.sink.path,
            [a.id for a in accounts],
            time.time_ns() // 1000,
        )
        link = WriterLink(self.ctx, settings, budget_bytes=relay_budget_bytes(settings))
        link.on_restart = self._writer_died
        link.start()
        if downtime is not None:
            link.send("connection_events", to_ipc(downtime).to_pybytes(), downtime.num_rows)
        groups = shard(accounts, max(1, min(settings.workers, len(accounts))))
        handles = [CollectorHandle(i, group) for i, group in enumerate(groups)]
        self.collectors = len(handles)
        for handle in handles:
            self._start_collector(handle, known)
        log.info(
            "capturing %d accounts with %d collectors into %s %s",
            len(accounts),
            len(handles),
            settings.sink.kind,
            settings.sink.path,
        )
        started = time.monotonic()
        drain_started: float | None = None
        while True:
            if self.forced:
                self._kill(handles, link)
                return 1
            if self.duration is not None and time.monotonic() - started >= self.duration:
                if not self.stopping:
                    log.info("duration of %.0f s reached: draining", self.duration)
                self.stopping = True
                self.telemetry.phase("draining")
            if self.stopping and drain_started is None:
                drain_started = time.monotonic()
                for handle in handles:
                    handle.stop.set()
            self._relay(handles, link)
            self._writer_messages(link)
            link.watch()
            self._watch(handles)
            self.status.refresh()
            if drain_started is not None:
                live = [h for h in handles if h.process.is_alive() or (h.pipe and not h.done)]
                # A collector still handing over batches (a slow store holds the queue) is
                # waited for; only one silent for COLLECTOR_DRAIN_S is stopped.
                now = time.monotonic()
                stuck = [
                    h for h in live if now - max(drain_started, h.last_heard) > COLLECTOR_DRAIN_S
                ]
                for h in stuck:
                    log.error(
                        "collector %d sent nothing for %.0f s while draining; stopping it",
                        h.worker,
                        COLLECTOR_DRAIN_S,
                    )
                    h.process.kill()
                if not live or len(stuck) == len(live):
                    break
                if now - drain_started > settings.drain_timeout:
                    # A writer that takes nothing (a store that fails, a writer that cannot
                    # start) leaves the budget full and the collectors waiting on their
                    # pipes, for good without this bound.
                    held = sum(h.undelivered for h in live)
                    log.error(
                        "the drain took longer than drain_timeout (%.0f s): stopping %d "
                        "collectors that still held ~%d rows (lost: the next start's REST "
                        "resync and backfill repair the state and the ledger, not these "
                        "pushes)",
                        settings.drain_timeout,
                        len(live),
                        held,
                    )
                    for h in live:
                        h.process.kill()
                    return self._give_up(link, "drain_timeout")
        return self._finish(link, drain_started)

    def _finish(self, link: WriterLink, drain_started: float | None) -> int:
        """Every collector is done: the writer commits the rest (a restarted one too) within
        the drain's bounds (`drain_timeout` from the drain's start); what it cannot is
        spooled and reported."""
        link.end()
        ended = time.monotonic()
        bound = self.settings.drain_timeout
        started = ended if drain_started is None else drain_started
        while not link.finished() and not self.forced:
            now = time.monotonic()
            stall = min(WRITER_STALL_S, bound)
            stalled = bool(link.in_flight) and now - max(link.last_ack, ended) > stall
            if stalled or now - started > bound:
                return self._give_up(link, "stalled" if stalled else "too slow")
            wait(link.waitables(), timeout=0.2)
            self._writer_messages(link)
            link.watch()
            self.status.refresh()
        if self.forced:
            link.kill()
            return 1
        self._writer_messages(link)
        self.status.refresh(final=True)
        return 0

    def _give_up(self, link: WriterLink, why: str) -> int:
        link.kill()
        rows = link.rows
        try:
            spooled, where = link.spool_unacknowledged()
        except Exception as e:
            log.error(
                "the writer did not commit %d rows in time (%s) and they could not be spooled "
                "either (%s): they are lost",
                rows,
                why,
                e,
            )
            return 1
        if spooled:
            log.error(
                "the writer did not commit %d rows in time (%s): they wait in %s and are "
                "committed first on the next start",
                spooled,
                why,
                where,
            )
        else:
            log.error("the writer did not finish in time (%s); nothing was left uncommitted", why)
        return 1

    def _writer_died(self, how: str) -> None:
        self.status.writer_restarted(how)
        self.telemetry.writer_restarted()

    def _writer_messages(self, link: WriterLink) -> None:
        for message in link.receive():
            if message[0] == WRITER_STATS:
                self.status.writer(*message[1:5])
                self.telemetry.writer(*message[1:])
            elif message[0] == STORE_HEALTH:
                self.status.store_health(message[1], message[2])
                self.telemetry.store_health(message[1], message[2], message[3])
        self.telemetry.in_flight(link.bytes, link.rows, link.budget_bytes)

    def _relay(self, handles: list[CollectorHandle], link: WriterLink) -> None:
        if link.full():
            # In-flight bytes are at the budget: the collectors' pipes wait (and so do their
            # engines' sockets) until the writer acknowledges a commit. Silence they cannot
            # help does not count against them in a drain.
            now = time.monotonic()
            for handle in handles:
                handle.last_heard = now
            wait(link.waitables(), timeout=0.2)
            return
        pipes = {h.pipe: h for h in handles if h.pipe is not None}
        for pipe in wait([*pipes, *link.waitables()], timeout=0.2):
            handle = pipes.get(pipe)
            if handle is None:
                continue  # the writer spoke or died: the loop reads or restarts it
            try:
                message = pipe.recv()
            except (EOFError, OSError):
                handle.pipe = None  # the collector is gone; `_watch` restarts it
                continue
            handle.last_heard = time.monotonic()
            kind = message[0]
            if kind == BATCH:
                try:
                    payload = pipe.recv_bytes()  # sent right behind its header
                except (EOFError, OSError):
                    handle.pipe = None  # died between the two: the batch died with it
                    continue
                link.send(message[2], payload, message[3])
            elif kind == COLLECTOR_STATS:
                handle.undelivered = message[4]
                self.status.collector(message[1], message[2], message[3], message[4])
                self.telemetry.collector(message[1], message[2], message[3], message[4])
            elif kind == DONE:
                handle.done = True

    def _watch(self, handles: list[CollectorHandle]) -> None:
        for handle in handles:
            process = handle.process
            if process.is_alive() or handle.done or self.stopping:
                continue
            if handle.pipe is not None:
                continue  # let the relay read what is left first
            handle.restarts += 1
            log.warning(
                "collector %d died (exit code %s); restarting it with its %d accounts",
                handle.worker,
                process.exitcode,
                len(handle.accounts),
            )
            self.status.restarted(handle.worker)
            self.telemetry.restarted(handle.worker)
            time.sleep(RESTART_DELAY_S)
            self._start_collector(handle)

    def _kill(self, handles: list[CollectorHandle], link: WriterLink) -> None:
        for handle in handles:
            if handle.process.is_alive():
                handle.process.kill()
        link.kill()
