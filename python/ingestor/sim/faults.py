"""Fault injection: what may go wrong, for which accounts, and a count of every fault made.

A test proves a client survives a fault only if it knows the fault happened, so every
injection goes through `FaultBook.hit`, which counts it per kind and per account. Faults
never touch the ground truth: an injected frame is sent *in addition* to the real push (a
broken or unknown-topic frame, a duplicate), and a lost push only happens together with a
lost connection (drop, silence), after which a client must resync over REST.

Decisions use their own seeded random stream, separate from the market's, so turning faults
on or off never changes what the market does.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

FaultKind = Literal[
    "drop",
    "refuse_auth",
    "broken_frame",
    "unknown_topic",
    "duplicate",
    "ping_silence",
    "pong_delay",
    "slow_send",
    "rest_error",
    "rest_rate_limit",
]
FAULT_KINDS: tuple[FaultKind, ...] = (
    "drop",
    "refuse_auth",
    "broken_frame",
    "unknown_topic",
    "duplicate",
    "ping_silence",
    "pong_delay",
    "slow_send",
    "rest_error",
    "rest_rate_limit",
)


@dataclass(frozen=True)
class FaultConfig:
    """Fault rates for a set of accounts (`accounts=None`: every account).

    Rates are probabilities in [0, 1] unless named per second. Several configs may be given
    to an exchange; an account takes the first one whose `accounts` contains it.
    """

    accounts: frozenset[str] | None = None
    #: Each authenticated connection is dropped (TCP abort, no close frame) at this rate.
    drop_per_s: float = 0.0
    #: Probability that a connection is dropped instead of sending a push (the push is lost).
    drop_per_push: float = 0.0
    #: Probability that an auth attempt is refused although its signature is right.
    refuse_auth: float = 0.0
    #: Probability of a broken (truncated JSON) frame before a push.
    broken_frame_rate: float = 0.0
    #: Probability of a well-formed frame of a topic nobody subscribed to, before a push.
    unknown_topic_rate: float = 0.0
    #: Probability that a push is sent twice.
    duplicate_rate: float = 0.0
    #: Seconds after auth when a connection turns zombie: open, but no pongs and no pushes.
    ping_silence_after: float | None = None
    #: Seconds each pong comes late while pushes keep flowing: a busy connection, whose pong
    #: waits behind the pushes queued before it.
    pong_delay_s: float = 0.0
    #: Delay before every frame sent to the account's connections.
    slow_send_s: float = 0.0
    #: Probability that a signed REST request gets retCode 10016.
    rest_error_rate: float = 0.0
    #: Requests per second per key and endpoint before retCode 10006 (None: Bybit's 50).
    rest_rate_limit: int | None = None

    def covers(self, account_id: str) -> bool:
        """True when this config applies to the account."""
        return self.accounts is None or account_id in self.accounts


NO_FAULTS = FaultConfig()
DEFAULT_REST_RATE_LIMIT = 50


@dataclass
class FaultBook:
    """The configs in force, the seeded decision stream and the counters."""

    configs: Sequence[FaultConfig]
    seed: int
    enabled: bool = True
    counts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def __post_init__(self) -> None:
        self._rng = random.Random(f"{self.seed}:faults")

    def config(self, account_id: str) -> FaultConfig:
        """The faults in force for an account (none once the book is disabled)."""
        if not self.enabled:
            return NO_FAULTS
        for config in self.configs:
            if config.covers(account_id):
                return config
        return NO_FAULTS

    def roll(self, probability: float) -> bool:
        """One seeded decision; a zero rate never consumes randomness."""
        return probability > 0 and self._rng.random() < probability

    def expovariate(self, rate: float) -> float:
        """Seeded waiting time for an event at `rate` per second."""
        return self._rng.expovariate(rate)

    def hit(self, kind: FaultKind, account_id: str, n: int = 1) -> None:
        """Count an injected fault."""
        self.counts[kind][account_id] += n

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Every kind (also the ones never hit) with its per-account counts."""
        return {kind: dict(sorted(self.counts[kind].items())) for kind in FAULT_KINDS}


def parse_accounts(text: str | None) -> frozenset[str] | None:
    """CLI helper: "sim-0001,sim-0002" → a set; empty or None → every account."""
    if not text:
        return None
    return frozenset(part.strip() for part in text.split(",") if part.strip())


def normalise(faults: FaultConfig | Iterable[FaultConfig] | None) -> tuple[FaultConfig, ...]:
    """Accept one config, several, or none."""
    if faults is None:
        return ()
    if isinstance(faults, FaultConfig):
        return (faults,)
    return tuple(faults)
