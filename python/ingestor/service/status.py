"""What the service shows while it runs: a table refreshed each second on a terminal, a log
line every so often otherwise."""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from ingestor.config import Settings

log = logging.getLogger("ingestor.status")


class Status:
    def __init__(self, settings: Settings, *, live: bool, log_every: float = 10.0) -> None:
        self.settings = settings
        self.log_every = log_every
        self.accounts: dict[int, list[dict[str, Any]]] = {}
        self.connect_queue: dict[int, int] = {}
        self.undelivered: dict[int, int] = {}
        self.restarts = 0
        #: Accounts the start check refused (not captured) -> reason.
        self.refused: dict[str, str] = {}
        self.rows_written = 0
        self.last_flush_s = 0.0
        self.spooled = 0
        self.writer_pending = 0
        self.writer_restarts = 0
        #: Why the store is failing, while it is (empty when healthy).
        self.store_problem = ""
        self._frames_then: tuple[float, int] | None = None
        self.messages_per_s = 0.0
        self._next_render = 0.0
        self._live = None
        if live:
            from rich.live import Live

            self._live = Live(self._table(), refresh_per_second=1, transient=False)
            self._live.start()

    def collector(self, worker: int, accounts: list[dict], queued: int, undelivered: int) -> None:
        self.accounts[worker] = accounts
        self.connect_queue[worker] = queued
        self.undelivered[worker] = undelivered

    def writer(self, rows: int, last_flush_s: float, spooled: int, pending: int) -> None:
        self.rows_written, self.last_flush_s = rows, last_flush_s
        self.spooled, self.writer_pending = spooled, pending

    def restarted(self, worker: int) -> None:
        self.restarts += 1

    def writer_restarted(self, how: str) -> None:
        self.writer_restarts += 1

    def store_health(self, healthy: bool, reason: str) -> None:
        self.store_problem = "" if healthy else reason

    def totals(self) -> dict[str, Any]:
        every = [a for accounts in self.accounts.values() for a in accounts]
        states = Counter(a["state"] for a in every)
        if self.refused:
            states["refused at start"] = len(self.refused)
        return {
            "states": states,
            "frames": sum(a["frames"] for a in every),
            "rejects": sum(a["rejects"] for a in every),
            "reconnects": sum(a["reconnects"] for a in every),
        }

    def refresh(self, final: bool = False) -> None:
        now = time.monotonic()
        if now < self._next_render and not final:
            return
        totals = self.totals()
        if self._frames_then is not None and now > self._frames_then[0]:
            then, frames = self._frames_then
            self.messages_per_s = (totals["frames"] - frames) / (now - then)
        self._frames_then = (now, totals["frames"])
        if self._live is not None:
            self._live.update(self._table())
            self._next_render = now + 1.0
            if final:
                self._live.stop()
        else:
            log.info("%s", self.line(totals))
            self._next_render = now + self.log_every

    def line(self, totals: dict[str, Any] | None = None) -> str:
        totals = totals or self.totals()
        states = ", ".join(f"{n} {s}" for s, n in sorted(totals["states"].items())) or "starting"
        return (
            f"accounts: {states} | {self.messages_per_s:,.0f} msg/s | "
            f"rows written {self.rows_written:,} | rejects {totals['rejects']:,} | "
            f"reconnects {totals['reconnects']:,} | writer lag {self.writer_pending:,} rows"
            + (f" | spooled {self.spooled} files" if self.spooled else "")
            + (f" | collector restarts {self.restarts}" if self.restarts else "")
            + (f" | writer restarts {self.writer_restarts}" if self.writer_restarts else "")
            + (f" | STORE FAILING: {self.store_problem}" if self.store_problem else "")
        )

    def _table(self):
        from rich.table import Table

        totals = self.totals()
        table = Table(title=f"ingestor → {self.settings.sink.kind} {self.settings.sink.path}")
        table.add_column("what")
        table.add_column("now", justify="right")
        for state, n in sorted(totals["states"].items()):
            table.add_row(f"accounts {state}", f"{n:,}")
        table.add_row("messages / s", f"{self.messages_per_s:,.0f}")
        table.add_row("rows written", f"{self.rows_written:,}")
        table.add_row("rejects", f"{totals['rejects']:,}")
        table.add_row("reconnects", f"{totals['reconnects']:,}")
        table.add_row("writer lag (rows)", f"{self.writer_pending:,}")
        table.add_row("last flush (s)", f"{self.last_flush_s:.3f}")
        table.add_row("connects queued", f"{sum(self.connect_queue.values()):,}")
        if self.spooled:
            table.add_row("spooled files", f"{self.spooled}")
        if self.restarts:
            table.add_row("collector restarts", f"{self.restarts}")
        if self.writer_restarts:
            table.add_row("writer restarts", f"{self.writer_restarts}")
        if self.store_problem:
            table.add_row("store failing", self.store_problem)
        return table
