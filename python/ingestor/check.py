"""`python -m ingestor check --accounts accounts.yaml`: the pre-flight check of every account.

For each account, concurrently (bounded) and each within its own timeout:

1. WebSocket: connect to `ws_url`, send the `auth` op, read the answer, close.
2. REST: signed `GET {rest_url}/v5/user/query-api`, the key's `readOnly` flag, `permissions`
   and `expiredAt` (Bybit: "Get API Key Information"; any key may call it).

A verdict per account: `pass`; `warning` (the key expires within `warn_days`, or it can trade
or withdraw and the file allows that with `allow_trading_keys: true`) which still passes;
`refused` (auth failed, REST error, no answer in time, a key that can trade or withdraw); and
`skipped` for `environment: sim` accounts without a `ws_url` (the service starts their
simulator, so there is nothing to connect to yet).

Secrets are revealed only to sign; every text that came from the exchange or the network is
scrubbed of the account's key and secret before it is kept (Bybit's 10004 answer echoes the
API key in its `origin_string`).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import ssl
import sys
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from ingestor import config

QUERY_API_PATH = "/v5/user/query-api"
#: How far ahead the WebSocket auth's `expires` lies (the Rust engine uses the same).
WS_AUTH_VALIDITY_MS = 10_000
RECV_WINDOW_MS = 5_000
DEFAULT_TIMEOUT = 10.0
DEFAULT_WARN_DAYS = 14.0
DEFAULT_CONCURRENCY = 50

PASS, WARNING, REFUSED, SKIPPED = "pass", "warning", "refused", "skipped"
SIM_SKIP_REASON = "simulated accounts are checked when the service starts the simulator"
#: Wallet permissions that move funds out of the account.
WITHDRAW = "Withdraw"


@dataclass(frozen=True)
class AccountCheck:
    """One account's verdict; `reason` never holds a key or a secret."""

    account_id: str
    verdict: str  # pass | warning | refused | skipped
    reason: str
    read_only: bool | None = None
    #: Non-empty permission groups of the key, as Bybit lists them.
    permissions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Days until the key expires (None: no expiry known).
    days_left: float | None = None
    #: Refused for want of an answer (network, timeout, exchange-side error), not for the key.
    transient: bool = False

    @property
    def ok(self) -> bool:
        """True unless refused: warnings and skips do not fail the check."""
        return self.verdict != REFUSED


class CheckFailed(Exception):
    """A step of the check failed; the message is scrubbed of the key and the secret.
    `transient`: no answer on the key itself (network, timeout, exchange-side error)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


#: Bybit retCodes that say nothing about the key: server timeout, rate limit, server error.
TRANSIENT_CODES = frozenset({10000, 10006, 10016})


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _sign(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def ws_auth_request(api_key: str, api_secret: str, expires_ms: int) -> dict[str, Any]:
    """Bybit's `auth` op: HMAC-SHA256(secret, "GET/realtime" + expires), lowercase hex."""
    signature = _sign(api_secret, f"GET/realtime{expires_ms}")
    return {"req_id": uuid.uuid4().hex[:16], "op": "auth", "args": [api_key, expires_ms, signature]}


def rest_headers(
    api_key: str, api_secret: str, query: str, timestamp_ms: int, recv_window: int = RECV_WINDOW_MS
) -> dict[str, str]:
    """Bybit's signed-GET headers: HMAC(secret, timestamp + key + recv_window + query)."""
    signature = _sign(api_secret, f"{timestamp_ms}{api_key}{recv_window}{query}")
    return {
        "X-BAPI-API-KEY": api_key,
        "X-BAPI-TIMESTAMP": str(timestamp_ms),
        "X-BAPI-RECV-WINDOW": str(recv_window),
        "X-BAPI-SIGN": signature,
    }


def _scrub(text: str, account: config.Account) -> str:
    """The text without the account's key or secret, on one line."""
    for secret in (account.api_secret.reveal(), account.api_key.reveal()):
        if secret:
            text = text.replace(secret, "***")
    return " ".join(text.split())


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def ws_authenticate(session: aiohttp.ClientSession, account: config.Account) -> None:
    """Connects, authenticates and closes; raises `CheckFailed` with Bybit's answer on failure."""
    if not account.ws_url:
        raise CheckFailed("no ws_url to connect to")
    try:
        async with session.ws_connect(account.ws_url, autoping=True, heartbeat=None) as ws:
            request = ws_auth_request(
                account.api_key.reveal(),
                account.api_secret.reveal(),
                _now_ms() + WS_AUTH_VALIDITY_MS,
            )
            await ws.send_str(json.dumps(request))
            while True:
                message = await ws.receive()
                if message.type != aiohttp.WSMsgType.TEXT:
                    raise CheckFailed(
                        f"WebSocket closed before the auth answer ({message.type.name.lower()})",
                        transient=True,
                    )
                try:
                    answer = json.loads(message.data)
                except ValueError:
                    continue
                if isinstance(answer, dict) and answer.get("op") == "auth":
                    break
    except aiohttp.WSServerHandshakeError as e:
        message = _scrub(f"HTTP {e.status} {e.message}", account)
        raise CheckFailed(
            f"WebSocket handshake refused: {message}", transient=e.status >= 500
        ) from None
    except (aiohttp.ClientError, OSError) as e:
        raise CheckFailed(
            f"WebSocket connect failed: {_scrub(_describe(e), account)}", transient=True
        ) from None
    if answer.get("success") is not True:
        message = _scrub(str(answer.get("ret_msg") or "no reason given"), account)
        raise CheckFailed(f"auth failed: {message}")


async def query_api_key_info(
    session: aiohttp.ClientSession, account: config.Account
) -> dict[str, Any]:
    """The signed `GET /v5/user/query-api` result; raises `CheckFailed` on any failure."""
    if not account.rest_url:
        raise CheckFailed("no rest_url: the key's permissions cannot be read")
    url = account.rest_url.rstrip("/") + QUERY_API_PATH
    headers = rest_headers(account.api_key.reveal(), account.api_secret.reveal(), "", _now_ms())
    try:
        async with session.get(url, headers=headers) as response:
            body = await response.text()
            status = response.status
    except (aiohttp.ClientError, OSError) as e:
        raise CheckFailed(
            f"query-api request failed: {_scrub(_describe(e), account)}", transient=True
        ) from None
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise CheckFailed(
            f"query-api: HTTP {status}, not a Bybit answer: {_scrub(body[:120], account)}",
            transient=True,
        )
    code, message = answer.get("retCode"), _scrub(str(answer.get("retMsg", "")), account)
    if code != 0:
        raise CheckFailed(
            f"query-api refused: retCode {code}: {message}", transient=code in TRANSIENT_CODES
        )
    result = answer.get("result")
    if not isinstance(result, dict):
        raise CheckFailed("query-api: the answer has no result")
    return result


def _expiry_days(info: Mapping[str, Any], now_ms: int) -> float | None:
    """Days until the key expires: `expiredAt` when set, else a positive `deadlineDay`."""
    expired_at = info.get("expiredAt")
    if isinstance(expired_at, str) and expired_at.strip():
        try:
            when = datetime.fromisoformat(expired_at.strip())
        except ValueError:
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return (when.timestamp() * 1000 - now_ms) / 86_400_000
    deadline = info.get("deadlineDay")
    if isinstance(deadline, int) and not isinstance(deadline, bool) and deadline > 0:
        return float(deadline)
    return None


def judge(
    account_id: str,
    info: Mapping[str, Any],
    *,
    allow_trading_keys: bool,
    warn_days: float = DEFAULT_WARN_DAYS,
    now_ms: int | None = None,
) -> AccountCheck:
    """The verdict on a `/v5/user/query-api` result (readOnly 1: read only, 0: read-write)."""
    now_ms = _now_ms() if now_ms is None else now_ms
    raw_permissions = info.get("permissions")
    permissions: dict[str, tuple[str, ...]] = {}
    if isinstance(raw_permissions, Mapping):
        for group, rights in raw_permissions.items():
            if isinstance(rights, list) and rights:
                permissions[str(group)] = tuple(str(r) for r in rights)
    read_only_flag = info.get("readOnly")
    days_left = _expiry_days(info, now_ms)
    facts = {"permissions": permissions, "days_left": days_left}
    if read_only_flag not in (0, 1) or isinstance(read_only_flag, bool):
        return AccountCheck(
            account_id, REFUSED, f"query-api: unexpected readOnly {read_only_flag!r}", **facts
        )
    read_only = read_only_flag == 1
    facts["read_only"] = read_only
    withdraw = WITHDRAW in permissions.get("Wallet", ())
    rights = [r for r, has in (("trade", not read_only), ("withdraw", withdraw)) if has]
    warnings: list[str] = []
    if rights:
        what = " and ".join(rights)
        detail = f"key can {what} (readOnly={read_only_flag}{', Wallet: Withdraw' * withdraw})"
        if not allow_trading_keys:
            return AccountCheck(
                account_id,
                REFUSED,
                f"{detail}; capture needs a read-only key (or allow_trading_keys: true)",
                **facts,
            )
        warnings.append(f"{detail}, allowed by allow_trading_keys")
    if days_left is not None and days_left <= 0:
        return AccountCheck(account_id, REFUSED, "key has expired", **facts)
    if days_left is not None and days_left <= warn_days:
        warnings.append(f"key expires in {days_left:.1f} days")
    if warnings:
        return AccountCheck(account_id, WARNING, "; ".join(warnings), **facts)
    expiry = f"expires in {days_left:.0f} days" if days_left is not None else "no expiry"
    kind = "read-only key" if read_only else "key"
    return AccountCheck(account_id, PASS, f"authenticated; {kind}, {expiry}", **facts)


async def check_account(
    session: aiohttp.ClientSession,
    account: config.Account,
    *,
    allow_trading_keys: bool = False,
    warn_days: float = DEFAULT_WARN_DAYS,
    timeout: float = DEFAULT_TIMEOUT,
    websocket: bool = True,
) -> AccountCheck:
    """Auth over WebSocket, then read the key's rights over REST, within `timeout` seconds.
    Without `websocket`, the signed REST request alone proves the key and secret."""
    if account.simulated and account.ws_url is None:
        return AccountCheck(account.id, SKIPPED, SIM_SKIP_REASON)
    step = "WebSocket auth"
    try:
        async with asyncio.timeout(timeout):
            if websocket:
                await ws_authenticate(session, account)
            step = "query-api"
            info = await query_api_key_info(session, account)
    except CheckFailed as e:
        return AccountCheck(account.id, REFUSED, str(e), transient=e.transient)
    except TimeoutError:
        return AccountCheck(
            account.id, REFUSED, f"{step}: no answer within {timeout:g} s", transient=True
        )
    return judge(account.id, info, allow_trading_keys=allow_trading_keys, warn_days=warn_days)


def tls_context(settings: config.Settings) -> ssl.SSLContext:
    """The system's roots, and the engine's `ca_file` if the file names one: the check trusts
    what the capture will trust."""
    context = ssl.create_default_context()
    ca_file = settings.engine.get("ca_file")
    if ca_file:
        context.load_verify_locations(cafile=str(ca_file))
    return context


async def check_accounts(
    settings: config.Settings,
    *,
    warn_days: float = DEFAULT_WARN_DAYS,
    timeout: float = DEFAULT_TIMEOUT,
    concurrency: int = DEFAULT_CONCURRENCY,
    websocket: bool = True,
    skip: frozenset[str] = frozenset(),
) -> list[AccountCheck]:
    """Every account's verdict, in the file's order, at most `concurrency` at a time.
    `skip`: accounts of the simulator the service itself started (skipped like sim ones)."""
    limit = asyncio.Semaphore(max(1, concurrency))
    connector = aiohttp.TCPConnector(limit=max(1, concurrency), ssl=tls_context(settings))
    client_timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout)

    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:

        async def one(account: config.Account) -> AccountCheck:
            if account.id in skip:
                return AccountCheck(account.id, SKIPPED, SIM_SKIP_REASON)
            async with limit:
                return await check_account(
                    session,
                    account,
                    allow_trading_keys=settings.allow_trading_keys,
                    warn_days=warn_days,
                    timeout=timeout,
                    websocket=websocket,
                )

        return list(await asyncio.gather(*(one(a) for a in settings.accounts)))


def format_report(checks: list[AccountCheck]) -> list[str]:
    """One line per account (`id  verdict  reason`) and a summary line."""
    width = max((len(c.account_id) for c in checks), default=2)
    lines = [f"{c.account_id:<{width}}  {c.verdict:<7}  {c.reason}" for c in checks]
    counts = Counter(c.verdict for c in checks)
    lines.append(
        f"{len(checks)} accounts: {counts[PASS]} passed, {counts[WARNING]} with warnings, "
        f"{counts[REFUSED]} refused, {counts[SKIPPED]} skipped"
    )
    return lines


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m ingestor check",
        description="Check every account before a capture: the file, secrets, auth, key rights.",
        epilog="Exit status: 0 every account passes (warnings pass), 1 one is refused, "
        "2 the file is invalid.",
    )
    ap.add_argument("--accounts", required=True, type=Path, help="accounts.yaml")
    ap.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per account (10)"
    )
    ap.add_argument(
        "--warn-days",
        type=float,
        default=DEFAULT_WARN_DAYS,
        help="warn when a key expires within this many days (14)",
    )
    ap.add_argument(
        "--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="accounts checked at once"
    )
    return ap


def run_check(argv: list[str]) -> int:
    """The `check` command; returns the exit status."""
    args = parser().parse_args(argv)
    try:
        settings = config.load(args.accounts)
    except config.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    checks = asyncio.run(
        check_accounts(
            settings,
            warn_days=args.warn_days,
            timeout=args.timeout,
            concurrency=args.concurrency,
        )
    )
    for line in format_report(checks):
        print(line)
    return 0 if all(c.ok for c in checks) else 1
