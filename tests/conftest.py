"""Fixtures every test module may use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.service_helpers import Run


@pytest.fixture
def stop_at_end() -> Iterator[list[Run]]:
    """Runs (simulator and service) to kill when the test ends: a failed assertion must not
    leave processes behind."""
    runs: list[Run] = []
    yield runs
    for run in runs:
        for process in (run.service, run.sim):
            if process is not None and process.poll() is None:
                process.kill()
                process.communicate()
