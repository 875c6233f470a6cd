"""The service's log: every process writes whole lines straight to the stderr they share.

Each record is one `write(2)` of one line. Lines up to PIPE_BUF (4 KiB) are atomic on a pipe
and a terminal, so the lines of several processes never interleave, and nothing is shared
between processes but the file descriptor. multiprocessing-logging, used before, relayed the
children's records through one `multiprocessing.Queue` to a thread of the supervisor: a child
killed while its feeder thread held the queue's write lock (a SIGKILL, the OOM killer) would
have stopped every process's log for good, silently, and the supervisor's last lines waited
behind that thread at exit."""

from __future__ import annotations

import logging
import os
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"


class LineHandler(logging.Handler):
    """Formats a record and writes it, with its newline, in one call to the file."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = (self.format(record) + "\n").encode("utf-8", "replace")
            view = memoryview(line)
            while view:  # a line longer than the pipe takes is written in parts
                view = view[os.write(self.fd, view) :]
        except Exception:
            self.handleError(record)


def setup(level: str) -> None:
    handler = LineHandler(sys.stderr.fileno())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
