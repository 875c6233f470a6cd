"""The supervisor's children end with it.

Collectors and the writer ignore SIGINT and SIGTERM (the supervisor owns signals and drains
them in order), and their pipes and queues stay open in their siblings, so a supervisor that
is killed (SIGKILL, the OOM killer, a crash) left them running: collectors holding every
account's connection, blocked on a pipe nobody reads, and a writer waiting forever. Without
the supervisor nothing they hold can reach the store, so the kernel ends them at once.
The simulator the service starts for `environment: sim` gets SIGTERM instead, and ends as
it does on Ctrl-C.
"""

from __future__ import annotations

import ctypes
import faulthandler
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

#: prctl(2): the signal this process gets when the thread that forked it ends.
PR_SET_PDEATHSIG = 1
#: prctl(2): the thread's name, what `ps -o comm`, `top` and /proc/PID/comm show (15 bytes).
PR_SET_NAME = 15


def die_with(parent_pid: int, signum: int = signal.SIGKILL) -> None:
    """Send this process `signum` when `parent_pid`, which started it, ends; exit now if it
    already has (it may end before the request is made). Linux only: elsewhere nothing is
    asked."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    if os.getppid() != parent_pid:
        os._exit(1)


def name_this_process(name: str) -> None:
    """Shows `name` (cut to Linux's 15 bytes) for this process in `ps`, `top` and
    /proc/PID/comm, where every forked child would otherwise be one more `python`: an operator
    sees which one is the writer, and the benchmarks count each one's CPU and memory."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def dump_stacks_on_sigusr1() -> None:
    """`kill -USR1 PID` writes every thread's Python stack to stderr: what a process that
    seems to hang is waiting on, without stopping it (the tests send it before they give up
    on a process)."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)


def run_as_child(parent_pid: int, target: Callable[..., None], *args: Any) -> None:
    """A child process's target: `target(*args)`, ending with `parent_pid`, named as its
    multiprocessing process."""
    die_with(parent_pid)
    name_this_process(multiprocessing.current_process().name)
    dump_stacks_on_sigusr1()
    target(*args)
