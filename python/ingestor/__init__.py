"""Capture Bybit V5 private streams of many accounts into Arrow and SQL stores."""

from ingestor._core import __version__
from ingestor.decode import TABLES, decode, schemas

__all__ = ["TABLES", "__version__", "decode", "schemas"]
