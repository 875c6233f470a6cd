"""`ingestor.sim`: a Bybit V5 private-stream exchange on loopback, with ground truth and faults.

    async with Exchange(accounts=5, seed=1, duration=2.0) as ex:
        ...connect clients to ex.ws_url / ex.rest_url...
        await ex.wait_market_closed()
        truth = ex.truth()

The truth: `{"positions": [{"account_id", "category", "symbol", "position_idx", "side",
"size", "entry_price"}], "wallets": [{"account_id", "coin", "wallet_balance", "equity"}],
"executions": [{"account_id", "exec_id", "exec_type", "category", "symbol", "side",
"exec_qty", "exec_price", "exec_fee", "exec_time"}], "orders": [{"account_id", "order_id",
"order_status", "cum_exec_qty"}]}`.
Every position ever opened is listed (a flat one has size "0" and side ""); every execution
made (Trade, Funding, BustTrade, AdlTrade; exec_time in ms, the only part of the truth that
differs between runs of one seed), in the order made; every order with its final version
(an order still working at the end is PartiallyFilled). Decimals are plain strings without
exponent (see `market` for the rounding rules and the ledger identity: a coin's
walletBalance moves by execPnl - execFee of each execution and nothing else). The CLI is
`python -m ingestor.sim --help`.
"""

from ingestor.sim.accounts_file import write_accounts_file
from ingestor.sim.exchange import Exchange
from ingestor.sim.faults import FAULT_KINDS, FaultConfig
from ingestor.sim.firehose import FirehoseStats
from ingestor.sim.market import Account

__all__ = [
    "FAULT_KINDS",
    "Account",
    "Exchange",
    "FaultConfig",
    "FirehoseStats",
    "write_accounts_file",
]
