"""Suite-wide guards: no test may leak a thread or a process."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from harness.processes import become_subreaper, children, wait_for_children

# `cluster`: the simulated and the real API server; `fleet`: the sample fleet with Flux controllers on it;
# `desktop`: Xvfb, a private session bus and a tray host; `sim_fleet`: simulated staging and production clusters
# following one repository at two paths.
pytest_plugins = ["tests.clusters", "tests.fleet", "harness.desktop", "harness.simfleet"]

become_subreaper()


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail any test that leaves a thread running: a stop() that does not join is a bug."""
    before = set(threading.enumerate())
    yield
    leaked = [thread for thread in threading.enumerate() if thread not in before and thread.is_alive()]
    for thread in leaked:
        thread.join(timeout=2)
    still_alive = [thread.name for thread in leaked if thread.is_alive()]
    assert not still_alive, f"test leaked threads: {still_alive}"


@pytest.fixture(autouse=True)
def no_leaked_processes() -> Iterator[None]:
    """Fail any test that leaves a process running; background work a test started must finish or be stopped."""
    before = children()
    yield
    stuck = wait_for_children(timeout=10, ignore=before)
    assert not stuck, f"test leaked processes: {stuck}"
