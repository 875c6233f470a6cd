"""What kind of failure a store error is, for the log, the metrics and the retry; and the test
hook that makes a commit fail on purpose."""

from __future__ import annotations

import errno
import os

#: Kinds, as `ingestor_store_errors_total{kind}` labels them.
DISK_FULL = "disk_full"
PERMISSION = "permission"
MISSING = "missing"
IO = "io"
CATALOG = "catalog"
OTHER = "other"

_ERRNOS = {
    errno.ENOSPC: DISK_FULL,
    errno.EDQUOT: DISK_FULL,
    errno.EACCES: PERMISSION,
    errno.EPERM: PERMISSION,
    errno.EROFS: PERMISSION,
    errno.ENOENT: MISSING,
    errno.EIO: IO,
}

# DuckDB reports OS errors as text inside its own exceptions.
_WORDS = (
    (("no space left", "disk is full", "disk full", "quota exceeded"), DISK_FULL),
    (("permission denied", "read-only file system", "readonly database"), PERMISSION),
    (("no such file or directory", "does not exist"), MISSING),
    (("input/output error", "i/o error", "io error"), IO),
    (("catalog", "connection refused", "could not connect", "server closed"), CATALOG),
)


def kind_of(error: BaseException) -> str:
    if isinstance(error, OSError) and error.errno in _ERRNOS:
        return _ERRNOS[error.errno]
    text = str(error).lower()
    for words, kind in _WORDS:
        if any(word in text for word in words):
            return kind
    if isinstance(error, OSError):
        return IO
    return OTHER


#: A test hook: the first N commits of each writer process raise inside their transaction.
FAIL_COMMITS_ENV = "INGESTOR_TEST_FAIL_COMMITS"


class InjectedFault(RuntimeError):
    """Raised by `maybe_fail` when the test hook asks for it."""


_failed = 0


def maybe_fail() -> None:
    """Called inside every commit; raises while the test hook's count lasts."""
    global _failed
    wanted = os.environ.get(FAIL_COMMITS_ENV)
    if wanted and _failed < int(wanted):
        _failed += 1
        raise InjectedFault(f"commit failed on purpose ({_failed} of {wanted}, {FAIL_COMMITS_ENV})")
