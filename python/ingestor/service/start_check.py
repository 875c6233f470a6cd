"""The start check: `python -m ingestor check`'s verdicts (check.py), taken by the service before
it captures. An account the check refuses (a key that can trade or withdraw without
`allow_trading_keys`, a key or signature the exchange refuses, an expired key) is reported and
not captured; the others start as usual.

Only the signed REST request (`/v5/user/query-api`) is made: it proves the key and secret and
reads the key's rights, and it spends none of the WebSocket connections Bybit allows an IP per
five minutes (the engine connects right after anyway; a refused WebSocket auth then shows as
the account's `failing` state with Bybit's message). A check that gets no answer on the key
(network, timeout, an exchange-side error) does not keep the account out: it is captured and
a warning says the check was inconclusive.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from ingestor import check
from ingestor.config import Settings

log = logging.getLogger("ingestor.start_check")

#: Seconds per account and accounts at once: the check takes at most
#: ceil(accounts / CONCURRENCY) * TIMEOUT_S, and in practice one round trip per CONCURRENCY.
TIMEOUT_S = 5.0
CONCURRENCY = 100


def run_start_check(settings: Settings, skip: frozenset[str]) -> dict[str, str]:
    """Checks every account but those in `skip` (the service's own simulator's); logs each
    finding and returns the refused accounts with their reasons (never a secret)."""
    checks = asyncio.run(
        check.check_accounts(
            settings, timeout=TIMEOUT_S, concurrency=CONCURRENCY, websocket=False, skip=skip
        )
    )
    refused: dict[str, str] = {}
    counts: Counter = Counter()
    for c in checks:
        if c.verdict == check.REFUSED and c.transient:
            counts["inconclusive"] += 1
            log.warning(
                "account %s: start check inconclusive (%s); capturing it", c.account_id, c.reason
            )
        elif c.verdict == check.REFUSED:
            counts["refused"] += 1
            refused[c.account_id] = c.reason
            log.error("account %s not captured: start check refused it: %s", c.account_id, c.reason)
        else:
            counts[c.verdict] += 1
            if c.verdict == check.WARNING:
                log.warning("account %s: %s", c.account_id, c.reason)
    log.info(
        "start check: %d passed, %d with warnings, %d refused (not captured), "
        "%d inconclusive, %d skipped",
        counts[check.PASS],
        counts[check.WARNING],
        counts["refused"],
        counts["inconclusive"],
        counts[check.SKIPPED],
    )
    return refused
