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
  `settleCoin` it lists positions with size > 0 only.
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
    LEVERAGE,
    Account,
    CancelledOrder,
    Fill,
    Market,
    Position,
    dec_str,
    q8,
)

WS_PATH = "/v5/private"
POSITION_LIST_PATH = "/v5/position/list"
WALLET_BALANCE_PATH = "/v5/account/wallet-balance"
QUERY_API_PATH = "/v5/user/query-api"

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


def envelope(message_id: str, topic: str, creation_ms: int, data: list[Any]) -> dict[str, Any]:
    """A push: id, topic, integer creationTime and an array of elements."""
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


def execution_element(fill: Fill, mark: Decimal) -> dict[str, Any]:
    """One element of an `execution` push for a fill."""
    inst = fill.instrument
    return {
        "category": inst.category,
        "symbol": inst.symbol,
        "isLeverage": "",
        "orderId": fill.order_id,
        "orderLinkId": "",
        "side": fill.side,
        "orderPrice": dec_str(fill.price),
        "orderQty": dec_str(fill.qty),
        "leavesQty": "0",
        "createType": "CreateByUser",
        "orderType": fill.order_type,
        "stopOrderType": "",
        "execFee": dec_str(fill.fee),
        "execFeeV2": "",
        "execId": fill.exec_id,
        "execPrice": dec_str(fill.price),
        "execQty": dec_str(fill.qty),
        "execPnl": dec_str(fill.exec_pnl),
        "execType": "Trade",
        "execValue": dec_str(fill.value),
        "execTime": str(fill.time_ms),
        "isMaker": fill.is_maker,
        "feeRate": dec_str(fill.fee_rate),
        "feeCurrency": "",
        "tradeIv": "",
        "markIv": "",
        "markPrice": dec_str(mark),
        "indexPrice": "",
        "underlyingPrice": "",
        "blockTradeId": "",
        "closedSize": dec_str(fill.closed_size),
        "seq": fill.seq,
        "marketUnit": "",
    }


def _order_common(
    *,
    order_id: str,
    category: str,
    symbol: str,
    side: str,
    idx: int,
    order_type: str,
    price: Decimal,
    qty: Decimal,
    time_ms: int,
) -> dict[str, Any]:
    """Order fields that do not depend on how the order ended."""
    return {
        "category": category,
        "symbol": symbol,
        "orderId": order_id,
        "orderLinkId": "",
        "blockTradeId": "",
        "isLeverage": "",
        "side": side,
        "positionIdx": idx,
        "orderType": order_type,
        "price": dec_str(price),
        "qty": dec_str(qty),
        "timeInForce": "GTC" if order_type == "Limit" else "IOC",
        "triggerPrice": "",
        "triggerBy": "",
        "triggerDirection": 0,
        "takeProfit": "",
        "stopLoss": "",
        "tpTriggerBy": "",
        "slTriggerBy": "",
        "tpLimitPrice": "",
        "slLimitPrice": "",
        "tpslMode": "",
        "stopOrderType": "",
        "orderIv": "",
        "lastPriceOnCreated": dec_str(price),
        "reduceOnly": False,
        "closeOnTrigger": False,
        "placeType": "",
        "smpType": "None",
        "smpGroup": 0,
        "smpOrderId": "",
        "feeCurrency": "",
        "createdTime": str(time_ms),
        "updatedTime": str(time_ms),
    }


def order_filled_element(fill: Fill) -> dict[str, Any]:
    """The `order` element of a filled order."""
    element = _order_common(
        order_id=fill.order_id,
        category=fill.instrument.category,
        symbol=fill.instrument.symbol,
        side=fill.side,
        idx=fill.idx,
        order_type=fill.order_type,
        price=fill.price,
        qty=fill.qty,
        time_ms=fill.time_ms,
    )
    element.update(
        orderStatus="Filled",
        cancelType="UNKNOWN",
        rejectReason="EC_NoError",
        avgPrice=dec_str(fill.price),
        leavesQty="0",
        leavesValue="0",
        cumExecQty=dec_str(fill.qty),
        cumExecValue=dec_str(fill.value),
        cumExecFee=dec_str(fill.fee),
    )
    return element


def order_cancel_elements(order: CancelledOrder) -> list[dict[str, Any]]:
    """Two `order` elements: the limit order as placed (New), then Cancelled."""
    common = {
        "order_id": order.order_id,
        "category": order.instrument.category,
        "symbol": order.instrument.symbol,
        "side": order.side,
        "idx": order.idx,
        "order_type": "Limit",
        "price": order.price,
        "qty": order.qty,
        "time_ms": order.time_ms,
    }
    leaves_value = q8(
        order.qty / order.price if order.instrument.inverse else order.qty * order.price
    )
    placed = _order_common(**common)
    placed.update(
        orderStatus="New",
        cancelType="UNKNOWN",
        rejectReason="EC_NoError",
        avgPrice="",
        leavesQty=dec_str(order.qty),
        leavesValue=dec_str(leaves_value),
        cumExecQty="0",
        cumExecValue="0",
        cumExecFee="0",
    )
    cancelled = dict(placed, orderStatus="Cancelled", cancelType="CancelByUser", leavesQty="0")
    cancelled["leavesValue"] = "0"
    return [placed, cancelled]


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
