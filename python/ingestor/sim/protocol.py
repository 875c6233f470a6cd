"""Bybit V5 as the simulator speaks it: paths, topics, signatures, envelopes, answers, elements.

This is the simulator's own reading of Bybit's documentation and observed behaviour, written
independently of the capture client on purpose: if both sides shared one module, a
misreading would pass every test. Nothing here imports from the client.

Quirks reproduced on purpose (each one has bitten some public client):
- every amount and price is a decimal string; unknown or absent values are "" (liqPrice and
  bustPrice on unified accounts, sessionAvgPrice, availableToWithdraw on unified wallets);
- integers stay integers (positionIdx, tradeMode, riskId, autoAddMargin, adlRankIndicator,
  seq) and times are millisecond *strings* inside elements but an integer `creationTime`,
  except a position's `openTime`, an integer (0 while flat);
- a flat position on a unified account has side "" and size "0";
- REST `/v5/position/list` calls the entry price `avgPrice` and has no per-item `category`
  (it is at `result.category`), while the WebSocket element says `entryPrice` and
  carries `category`;
- REST with `symbol` lists that symbol's positions even when flat (or never traded); with only
  `settleCoin` it lists positions with size > 0 only;
- execution and order elements have exactly the fields of Bybit's newest examples, which
  differ between the push and REST: `/v5/execution/list` items lack category, createType,
  isLeverage and marketUnit (they carry execPnl, which Bybit's parameter table lists there
  though its examples predate it: without it a backfilled trade's realised PnL is lost);
  order items lack category, closedPnl, feeCurrency and the rpi fields but carry
  isLeverage; `extraFees` is "" (no array) when there are none;
- an order push and the execution push it came with share their envelope id; a Filled
  version can come twice, identical (a cancel racing the fill); `execution.fast` pushes
  carry no id, Trade rows only and few fields;
- a Funding row has the position's side and size, the mark as price, orderType "UNKNOWN",
  an orderId made of time, symbol and side, and execFee = execValue x feeRate, positive when
  the account pays.
Texts of failures that Bybit documents are copied; the few it does not document (e.g. a
topic it does not know) are the simulator's own wording and say so below.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from ingestor.sim.market import (
    COINS,
    CREATE_BY_USER,
    LEVERAGE,
    Account,
    Execution,
    Market,
    Order,
    Position,
    dec_str,
    q8,
)

WS_PATH = "/v5/private"
POSITION_LIST_PATH = "/v5/position/list"
WALLET_BALANCE_PATH = "/v5/account/wallet-balance"
QUERY_API_PATH = "/v5/user/query-api"
EXECUTION_LIST_PATH = "/v5/execution/list"
ORDER_HISTORY_PATH = "/v5/order/history"
ORDER_REALTIME_PATH = "/v5/order/realtime"

CATEGORIES = ("linear", "inverse", "option")
#: Topics a private connection may subscribe to. Per-category variants exist for position,
#: execution and order; wallet, greeks and dcp have none.
PRIVATE_TOPICS = frozenset(
    ["position", "execution", "execution.fast", "order", "wallet", "greeks", "dcp"]
    + [f"{base}.{cat}" for base in ("position", "execution", "order") for cat in CATEGORIES]
    + [f"execution.fast.{cat}" for cat in CATEGORIES]
)

# WebSocket failure texts.
AUTH_PARAMS_ERROR = "Params Error"  # malformed args or an `expires` already in the past
AUTH_DENIED = "Request not authorized"  # unknown key, wrong signature, refused
AUTH_REPEAT = "Repeat auth"  # sim's wording: auth on an authenticated connection
NOT_AUTHORIZED = "Request not authorized"  # subscribe before auth

# REST retCodes.
OK = 0
PARAMS_ERROR = 10001
TIMESTAMP_ERROR = 10002
INVALID_KEY = 10003
SIGN_ERROR = 10004
PERMISSION_DENIED = 10005
RATE_LIMITED = 10006
SERVER_ERROR = 10016
DEFAULT_RECV_WINDOW = 5000
#: Bybit accepts a request timestamp up to 1 s ahead of its clock.
TIMESTAMP_AHEAD_MS = 1000


def ws_signature(api_secret: str, expires: int) -> str:
    """The auth signature: hex HMAC-SHA256 of "GET/realtime" + expires."""
    return hmac.new(
        api_secret.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256
    ).hexdigest()


def rest_signature(
    api_secret: str, timestamp: str, api_key: str, recv_window: str, payload: str
) -> str:
    """The REST signature: hex HMAC-SHA256 of timestamp + key + recv_window + query/body."""
    message = f"{timestamp}{api_key}{recv_window}{payload}"
    return hmac.new(api_secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def signatures_match(expected: str, given: str) -> bool:
    """Constant-time comparison, case-insensitive like hex."""
    return hmac.compare_digest(expected.lower(), given.lower())


# ---- WebSocket control answers -------------------------------------------------------------


def _with_req_id(answer: dict[str, Any], req_id: object) -> dict[str, Any]:
    """Bybit echoes `req_id` when the request had one and leaves it out otherwise."""
    if req_id is not None:
        answer["req_id"] = req_id
    return answer


def op_answer(op: str, conn_id: str, req_id: object, ret_msg: str = "") -> dict[str, Any]:
    """Answer to auth/subscribe/unsubscribe: success when `ret_msg` is empty."""
    answer = {"success": ret_msg == "", "ret_msg": ret_msg, "op": op, "conn_id": conn_id}
    return _with_req_id(answer, req_id)


def pong(conn_id: str, req_id: object, now_ms: int) -> dict[str, Any]:
    """The private-stream pong (the public streams answer with op "ping" instead)."""
    answer: dict[str, Any] = {"op": "pong", "args": [str(now_ms)], "conn_id": conn_id}
    return _with_req_id(answer, req_id)


def unknown_topic_message(topic: str) -> str:
    """Sim's wording for a topic it does not serve."""
    return f"error:handler not found,topic:{topic}"


def already_subscribed_message(topic: str) -> str:
    """Bybit's wording for a topic subscribed twice on one connection."""
    return f"error:already subscribed,topic:{topic}"


MIXED_POSITION_TOPICS = "error:position and position.<category> cannot be in one request"
INVALID_REQUEST = "error:invalid request"  # sim's wording: a frame that is not a JSON object


def unsupported_op_message(op: object) -> str:
    """Sim's wording for an op it does not know."""
    return f"error:unsupported op:{op}"


def envelope(
    message_id: str | None, topic: str, creation_ms: int, data: list[Any]
) -> dict[str, Any]:
    """A push: id, topic, integer creationTime and an array of elements; `execution.fast`
    pushes carry no id (message_id None)."""
    if message_id is None:
        return {"topic": topic, "creationTime": creation_ms, "data": data}
    return {"id": message_id, "topic": topic, "creationTime": creation_ms, "data": data}


# ---- elements ------------------------------------------------------------------------------


def _position_fields(pos: Position, mark: Decimal) -> dict[str, Any]:
    """Fields shared by the push and the REST list (entry price name aside)."""
    value = pos.value()
    im = pos.initial_margin()
    mm = pos.maintenance_margin()
    break_even = pos.break_even()
    is_open = pos.size > 0
    return {
        "positionIdx": pos.idx,
        "tradeMode": 0,
        "riskId": 1,
        "riskLimitValue": "2000000" if not pos.instrument.inverse else "150",
        "symbol": pos.instrument.symbol,
        "side": pos.side,
        "size": dec_str(pos.size),
        "positionValue": dec_str(value),
        "leverage": dec_str(LEVERAGE),
        "breakEvenPrice": "" if break_even is None else dec_str(break_even),
        "positionBalance": dec_str(im),
        "autoAddMargin": 0,
        "markPrice": dec_str(mark),
        "positionIM": dec_str(im),
        "positionIMByMp": dec_str(im),
        "positionMM": dec_str(mm),
        "positionMMByMp": dec_str(mm),
        "liqPrice": "",
        "bustPrice": "",
        "tpslMode": "Full",
        "takeProfit": "0",
        "stopLoss": "0",
        "trailingStop": "0",
        "unrealisedPnl": dec_str(pos.unrealised(mark)),
        "sessionAvgPrice": "",
        "curRealisedPnl": dec_str(pos.cur_realised),
        "cumRealisedPnl": dec_str(pos.cum_realised),
        "positionStatus": "Normal",
        "adlRankIndicator": 2 if is_open else 0,
        "isReduceOnly": False,
        "mmrSysUpdatedTime": "",
        "leverageSysUpdatedTime": "",
        "createdTime": str(pos.created_ms),
        "updatedTime": str(pos.updated_ms),
        # An integer, unlike the other times (as Bybit sends it).
        "openTime": pos.opened_ms,
        "seq": pos.seq,
    }


def position_push_element(pos: Position, mark: Decimal) -> dict[str, Any]:
    """One element of a `position` push."""
    fields = _position_fields(pos, mark)
    fields["entryPrice"] = dec_str(pos.entry)
    fields["category"] = pos.instrument.category
    return fields


def position_rest_element(pos: Position, mark: Decimal) -> dict[str, Any]:
    """One item of `/v5/position/list`: `avgPrice`, no `category`."""
    fields = _position_fields(pos, mark)
    fields["avgPrice"] = dec_str(pos.entry)
    return fields


def _rate(numerator: Decimal, denominator: Decimal) -> str:
    """An account-level margin rate with Bybit's four decimals; "0" when nothing is at risk."""
    if denominator <= 0 or numerator == 0:
        return "0"
    return dec_str((numerator / denominator).quantize(Decimal("0.0001"), ROUND_HALF_EVEN))


def wallet_element(
    market: Market, account: Account, coins: Iterable[str] = COINS
) -> dict[str, Any]:
    """The UNIFIED account's wallet element; totals cover every coin, `coin` only those asked."""
    per_coin: dict[str, dict[str, Any]] = {}
    total_equity = total_wallet = total_upl = total_im = total_mm = Decimal(0)
    for coin in COINS:
        balance = account.coins[coin]
        upl = market.coin_unrealised(account, coin)
        equity = balance.wallet_balance + upl
        positions = [p for p in account.positions.values() if p.instrument.settle_coin == coin]
        im = sum((p.initial_margin() for p in positions), Decimal(0))
        mm = sum((p.maintenance_margin() for p in positions), Decimal(0))
        usd = market.usd_price(coin)
        total_equity += q8(equity * usd)
        total_wallet += q8(balance.wallet_balance * usd)
        total_upl += q8(upl * usd)
        total_im += q8(im * usd)
        total_mm += q8(mm * usd)
        per_coin[coin] = {
            "coin": coin,
            "equity": dec_str(equity),
            "usdValue": dec_str(q8(equity * usd)),
            "walletBalance": dec_str(balance.wallet_balance),
            "availableToWithdraw": "",
            "availableToBorrow": "",
            "borrowAmount": "0",
            "accruedInterest": "0",
            "totalOrderIM": "0",
            "totalPositionIM": dec_str(im),
            "totalPositionMM": dec_str(mm),
            "unrealisedPnl": dec_str(upl),
            "cumRealisedPnl": dec_str(balance.cum_realised),
            "bonus": "0",
            "collateralSwitch": True,
            "marginCollateral": True,
            "locked": "0",
            "spotHedgingQty": "0",
            # No platform collateral restriction on either coin.
            "colRes": "0",
            "spotBorrow": "0",
        }
    margin_balance = total_wallet + total_upl
    return {
        "accountType": "UNIFIED",
        "accountLTV": "0",
        "accountIMRate": _rate(total_im, margin_balance),
        "accountIMRateByMp": _rate(total_im, margin_balance),
        "accountMMRate": _rate(total_mm, margin_balance),
        "accountMMRateByMp": _rate(total_mm, margin_balance),
        "totalEquity": dec_str(total_equity),
        "totalWalletBalance": dec_str(total_wallet),
        "totalMarginBalance": dec_str(margin_balance),
        "totalAvailableBalance": dec_str(margin_balance - total_im),
        "totalPerpUPL": dec_str(total_upl),
        "totalInitialMargin": dec_str(total_im),
        "totalInitialMarginByMp": dec_str(total_im),
        "totalMaintenanceMargin": dec_str(total_mm),
        "totalMaintenanceMarginByMp": dec_str(total_mm),
        "coin": [per_coin[c] for c in coins if c in per_coin],
    }


def _execution_fields(e: Execution) -> dict[str, Any]:
    """Fields of an execution shared by the push and `/v5/execution/list`, in Bybit's order."""
    inst = e.instrument
    return {
        "symbol": inst.symbol,
        "closedSize": dec_str(e.closed_size),
        "execFee": dec_str(e.fee),
        "execId": e.exec_id,
        "execPrice": dec_str(e.price),
        "execQty": dec_str(e.qty),
        "execType": e.exec_type,
        "execValue": dec_str(e.value),
        "feeRate": dec_str(e.fee_rate),
        "tradeIv": "",
        "markIv": "",
        "blockTradeId": "",
        "markPrice": dec_str(e.mark),
        "indexPrice": "",
        "underlyingPrice": "",
        "leavesQty": dec_str(e.leaves_qty),
        "orderId": e.order_id,
        "orderLinkId": "",
        "orderPrice": dec_str(e.order_price),
        "orderQty": dec_str(e.order_qty),
        "orderType": e.order_type,
        "stopOrderType": "UNKNOWN",
        "side": e.side,
        "execTime": str(e.time_ms),
        "isMaker": e.is_maker,
        "seq": e.seq,
        # No Indian GST here: Bybit sends "" rather than an empty array.
        "extraFees": "",
        "feeCurrency": inst.settle_coin,
    }


def execution_element(e: Execution) -> dict[str, Any]:
    """One element of an `execution` push (the fields of Bybit's newest example)."""
    fields = _execution_fields(e)
    fields.update(
        category=e.instrument.category,
        isLeverage="0",
        marketUnit="",
        execPnl=dec_str(e.exec_pnl),
        createType=e.create_type,
    )
    return fields


def execution_rest_element(e: Execution) -> dict[str, Any]:
    """One item of `/v5/execution/list`: no category (it is at `result.category`), and none
    of createType, isLeverage, marketUnit, which Bybit's examples never show there; execPnl,
    which its parameter table lists (the examples are older than the field)."""
    return {**_execution_fields(e), "execPnl": dec_str(e.exec_pnl)}


def execution_fast_element(e: Execution) -> dict[str, Any]:
    """One element of `execution.fast`: Trade rows only, no fee, no PnL, few fields."""
    return {
        "category": e.instrument.category,
        "symbol": e.instrument.symbol,
        "execId": e.exec_id,
        "execPrice": dec_str(e.price),
        "execQty": dec_str(e.qty),
        "orderId": e.order_id,
        "isMaker": e.is_maker,
        "orderLinkId": "",
        "side": e.side,
        "execTime": str(e.time_ms),
        "seq": e.seq,
    }


def _order_fields(order: Order) -> dict[str, Any]:
    """Fields of an order version shared by the push and the REST order lists."""
    filled = order.cum_qty > 0
    return {
        "symbol": order.instrument.symbol,
        "orderId": order.order_id,
        "side": order.side,
        "orderType": order.order_type,
        "cancelType": order.cancel_type,
        "price": dec_str(order.price),
        "qty": dec_str(order.qty),
        "orderIv": "",
        "timeInForce": "GTC" if order.order_type == "Limit" else "IOC",
        "orderStatus": order.status,
        "orderLinkId": "",
        "lastPriceOnCreated": dec_str(order.price),
        # The exchange's own orders (liquidation, ADL) only ever reduce the position.
        "reduceOnly": order.create_type != CREATE_BY_USER,
        "leavesQty": dec_str(order.leaves_qty),
        "leavesValue": dec_str(order.value_of(order.leaves_qty)),
        "cumExecQty": dec_str(order.cum_qty),
        "cumExecValue": dec_str(order.cum_value),
        # Every execution of an order is at its price (see `market`); "" until one is.
        "avgPrice": dec_str(order.price) if filled else "",
        "blockTradeId": "",
        "positionIdx": order.idx,
        "cumExecFee": dec_str(order.cum_fee),
        "createdTime": str(order.created_ms),
        "updatedTime": str(order.updated_ms),
        "rejectReason": "EC_NoError",
        "stopOrderType": "",
        "tpslMode": "",
        "triggerPrice": "",
        "takeProfit": "",
        "stopLoss": "",
        "tpTriggerBy": "",
        "slTriggerBy": "",
        "tpLimitPrice": "",
        "slLimitPrice": "",
        "triggerDirection": 0,
        "triggerBy": "",
        "closeOnTrigger": False,
        "placeType": "",
        "smpType": "None",
        "smpGroup": 0,
        "smpOrderId": "",
        "cumFeeDetail": {order.instrument.settle_coin: dec_str(order.cum_fee)} if filled else {},
    }


def order_element(order: Order) -> dict[str, Any]:
    """One element of an `order` push (the fields of Bybit's newest example)."""
    fields = _order_fields(order)
    fields.update(
        category=order.instrument.category,
        closedPnl=dec_str(order.closed_pnl),
        feeCurrency="",
        rpiTakerAccess=False,
        rpiMatchedQty="0",
    )
    return fields


def order_rest_element(order: Order) -> dict[str, Any]:
    """One item of `/v5/order/realtime` and `/v5/order/history`: no category, and
    `isLeverage` (spot margin only, "" here), as Bybit's newest example has them."""
    fields = _order_fields(order)
    fields["isLeverage"] = ""
    return fields


# ---- REST ----------------------------------------------------------------------------------


def rest_answer(
    now_ms: int, result: dict[str, Any] | None = None, ret_code: int = OK, ret_msg: str = "OK"
) -> dict[str, Any]:
    """Bybit's REST envelope; failures carry an empty `result`."""
    return {
        "retCode": ret_code,
        "retMsg": ret_msg,
        "result": result if result is not None else {},
        "retExtInfo": {},
        "time": now_ms,
    }


def timestamp_error_message(req_ts: str, server_ms: int, recv_window: str) -> str:
    """Bybit's 10002 text (it names both clocks and the window)."""
    return (
        "invalid request, please check your server timestamp or recv_window param. "
        f"req_timestamp[{req_ts}],server_timestamp[{server_ms}],recv_window[{recv_window}]"
    )


def sign_error_message(origin: str) -> str:
    """Bybit's 10004 text; the origin string holds no secret (timestamp, key, window, query)."""
    return f"error sign! origin_string[{origin}]"


#: The ledger's REST windows (Bybit's rules for execution list and order history).
DAY_MS = 86_400_000
WINDOW_MS = 7 * DAY_MS
#: Orders with fills (and executions) are kept this long; cancelled ones without fills for
#: a day only (the retention is the server's parameter, so a test can shorten it).
KEEP_MS = 730 * DAY_MS
#: Statuses order history lists when asked for none: the final ones.
FINAL_STATUSES = ("Filled", "Cancelled", "PartiallyFilledCanceled", "Rejected", "Deactivated")
#: Final statuses without fills that order history forgets after a day.
SHORT_LIVED_STATUSES = ("Cancelled", "Rejected", "Deactivated")
#: `/v5/order/realtime?openOnly=1` lists this many recently closed orders per category.
RECENT_CLOSED = 500
WINDOW_TOO_LONG = "params error: endTime - startTime must be at most 7 days"  # sim's wording


def time_window(query: Any, now_ms: int) -> tuple[int, int] | str:
    """The [start, end] a ledger request covers, by Bybit's 7-day rule, or the error text.

    No times: the last 7 days; startTime only: start .. start + 7 d; endTime only:
    end - 7 d .. end; both: as given, if end - start <= 7 d (both bounds inclusive).
    """
    try:
        start = int(query["startTime"]) if query.get("startTime") else None
        end = int(query["endTime"]) if query.get("endTime") else None
    except ValueError:
        return "params error: startTime and endTime are integers (ms)"
    if start is None and end is None:
        return now_ms - WINDOW_MS, now_ms
    if end is None:
        assert start is not None
        return start, start + WINDOW_MS
    if start is None:
        return end - WINDOW_MS, end
    if end < start:
        return "params error: endTime is before startTime"  # sim's wording
    if end - start > WINDOW_MS:
        return WINDOW_TOO_LONG
    return start, end


INVALID_KEY_MESSAGE = "API key is invalid."
RATE_LIMIT_MESSAGE = "Too many visits!"
SERVER_ERROR_MESSAGE = "Server error."
MISSING_SYMBOL_OR_SETTLE = "Missing some parameters that must be filled in, symbol or settleCoin"
UNIFIED_ONLY = "accountType only support UNIFIED."


def api_key_info(account: Account) -> dict[str, Any]:
    """`/v5/user/query-api` result for the key: read-only flag and permission groups."""
    read_only = account.permission == "read"
    wallet = ["AccountTransfer", "SubMemberTransfer"]
    if account.permission == "withdraw":
        wallet.append("Withdraw")
    return {
        "id": str(account.user_id % 10**7),
        "note": f"ingestor.sim {account.account_id}",
        "apiKey": account.api_key,
        "readOnly": 1 if read_only else 0,
        "secret": "",
        "permissions": {
            "ContractTrade": ["Order", "Position"],
            "Spot": ["SpotTrade"],
            "Wallet": wallet,
            "Options": ["OptionsTrade"],
            "Derivatives": ["DerivativesTrade"],
            "CopyTrading": [],
            "BlockTrade": [],
            "Exchange": ["ExchangeHistory"],
            "NFT": [],
            "Affiliate": [],
            "Earn": [],
        },
        "ips": ["*"],
        "type": 1,
        "deadlineDay": 90,
        "expiredAt": "",
        "createdAt": _iso(account.created_ms),
        "unified": 0,
        "uta": 1,
        "userID": account.user_id,
        "inviterID": 0,
        "vipLevel": "No VIP",
        "mktMakerLevel": "0",
        "affiliateID": 0,
        "rsaPublicKey": "",
        "isMaster": True,
        "parentUid": "0",
        "kycLevel": "LEVEL_DEFAULT",
        "kycRegion": "",
    }


def _iso(ms: int) -> str:
    """Bybit's ISO-8601 UTC timestamps in key info."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
